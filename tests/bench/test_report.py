"""Report and helpers of `make bench` that need no network: markdown tables, HLS playlist parsing, lab guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.hls import first_segment
from bench.labctl import Instance, Lab
from bench.report import markdown


def test_first_segment() -> None:
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:4.0,\n0.ts\n#EXTINF:4.0,\n1.ts\n"
    assert first_segment(playlist) == "0.ts"
    assert first_segment("#EXTM3U\n#EXT-X-TARGETDURATION:5\n") is None


def lab(tmp_path: Path) -> Lab:
    endpoints = {"network": {"subnet": "172.31.250.0/24"}, "kubeconfig": "/nonexistent",
                 "xiu": {"namespace": "xiu", "ingress_ip": "172.31.250.200"}}
    (tmp_path / "endpoints.json").write_text(json.dumps(endpoints))
    return Lab.load(tmp_path / "endpoints.json", tmp_path)


def test_instance_guards(tmp_path: Path) -> None:
    the_lab = lab(tmp_path)
    assert the_lab.allowed("172.31.250.205") and not the_lab.allowed("172.31.251.5")
    with pytest.raises(ValueError, match="own xiu namespace"):
        Instance(the_lab, tmp_path, namespace="xiu")
    with pytest.raises(ValueError, match="outside the lab network"):
        Instance(the_lab, tmp_path, rtmp_ip="10.0.0.1")
    inst = Instance(the_lab, tmp_path)
    assert inst.extra_vars()["xiu_namespace"] == "xiu-bench"
    assert inst.rtmp_play("live/a").startswith("rtmp://172.31.250.206:1935/live/a?token=play-")


def test_markdown_tables() -> None:
    spread = {"median": 400.0, "min": 300.0, "max": 400.0, "n": 3}
    results = {
        "environment": {"cpu_model": "cpu", "cores": 2, "config": {"steps": [100, 400], "repeats": 3}},
        "capacity": {
            "threshold": {"min_frames_ratio": 0.95, "max_lag_s": 2.0, "min_ok_share": 0.99},
            "summary": {"xiu-direct/rtmp": {"max_players": spread, "capped_by_ramp": False,
                                            "ok_share_by_step": {"100": {"median": 1.0, "min": 1.0, "max": 1.0,
                                                                         "n": 3}}}},
            "ratio_public_direct": {"rtmp": {"median_of_max": 0.95, "capped": False}},
        },
        "ttfp": {"summary": {"xiu-public/rtmp": {"median": 0.7, "min": 0.6, "max": 0.9, "n": 3, "failed": 0}}},
        "ops": {"xiu_yml_noop": {"seconds": 30.0, "changed": 0}, "make_lab_warm": "not measured"},
        "skipped": {"lab": "no lab"}, "errors": [],
    }
    text = markdown(results, "2026-01-01")
    assert "| xiu-direct/rtmp | 400 (300-400, n=3) | no |" in text
    assert "Ratio public path / direct (rtmp): 0.95" in text
    assert "| xiu-public/rtmp | 0.70 (0.60-0.90, n=3) | 0 |" in text
    assert "| xiu_yml_noop | 30.0 s (changed=0) |" in text
    assert "- skipped lab: no lab" in text


def test_changed_of_sums_the_play_recap() -> None:
    from bench.report import changed_of

    recap = ["localhost : ok=138  changed=0    unreachable=0", "xiu-lab-agent1 : ok=36   changed=2    unreachable=0"]
    assert changed_of({"seconds": 1.0, "recap": recap}) == 2
    assert changed_of({"seconds": 1.0, "changed": 3}) == 3
    assert changed_of({"seconds": 1.0}) is None
