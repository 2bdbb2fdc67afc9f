"""Unit tests of the end-to-end tier's parsers and report (no lab needed)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.e2e import media
from tests.e2e.cluster import subscriber_counts
from tests.e2e.report import Report


def flv_tag(kind: int, ts: int, body: bytes) -> bytes:
    head = bytes([kind]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big") + bytes([ts >> 24]) + b"\0\0\0"
    return head + body + struct.pack(">I", 11 + len(body))


FLV_HEADER = b"FLV\x01\x05\x00\x00\x00\x09" + b"\0\0\0\0"


def test_flv_parser_handles_split_input_and_keyframes() -> None:
    data = FLV_HEADER + flv_tag(18, 0, b"meta") + flv_tag(9, 0, b"\x17\x00rest") + flv_tag(9, 40, b"\x27\x01x")
    data += flv_tag(8, 0x1000000 + 5, b"\xaf\x01")
    parser = media.FlvParser()
    tags = [t for i in range(len(data)) for t in parser.feed(data[i:i + 1])]
    assert [(t.kind, t.timestamp_ms, t.keyframe) for t in tags] == [
        (18, 0, False), (9, 0, True), (9, 40, False), (8, 0x1000005, False)]


def test_flv_parser_rejects_other_content() -> None:
    with pytest.raises(ValueError, match="not FLV"):
        media.FlvParser().feed(b"<html><body>404</body></html>")


def test_playlist_parsing() -> None:
    text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:41\n#EXTINF:1.000,\n41.ts\n#EXTINF:2.040,\n42.ts\n"
    assert media.parse_playlist(text) == (41, [(1.0, "41.ts"), (2.04, "42.ts")])
    with pytest.raises(ValueError):
        media.parse_playlist("<html>")


def test_ts_check_needs_whole_packets_and_video() -> None:
    packet = b"\x47" + b"\x00" * 187
    video = bytearray(packet * 12)
    video[200:204] = b"\x00\x00\x01\xe0"
    assert media.ts_video_ok(bytes(video))
    assert not media.ts_video_ok(packet * 12)  # no video PES
    assert not media.ts_video_ok(bytes(video)[:-1])  # not whole packets
    broken = bytearray(video)
    broken[188] = 0
    assert not media.ts_video_ok(bytes(broken))


def test_subscriber_counts_by_type() -> None:
    payload = {"error_code": 0, "data": [
        {"publisher": {"identifier": {"rtmp": {"app_name": "live", "stream_name": "a"}}},
         "subscribers": {"u1": {"sub_type": "RtmpPull"}, "u2": {"sub_type": "RtmpPull"},
                         "u3": {"sub_type": "RtmpRemux2HttpFlv"}}},
        {"publisher": {"identifier": {"webrtc": {}}}, "subscribers": {}},
    ]}
    counts = subscriber_counts(payload)
    assert counts["live/a"]["RtmpPull"] == 2 and counts["live/a"]["RtmpRemux2HttpFlv"] == 1
    assert subscriber_counts({"error_code": 0, "data": {}}) == {}


def test_report_fails_on_any_failed_step_and_on_none(tmp_path: Path) -> None:
    report = Report()
    assert not report.ok
    report.add("a", "x", "y | z", 1.0, True)
    assert report.ok
    report.add("b", "x", "y", 2.0, False, detail=[1])
    assert not report.ok
    report.write(tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert [s["ok"] for s in data["steps"]] == [True, False] and data["passed"] is False
    assert "y \\| z" in (tmp_path / "report.md").read_text()


def test_watch_records_recoveries_and_gaps() -> None:
    w = media.Watch("live/a", last_video=10.0)
    w.video(10.5, reconnected=False, gap_threshold=1.0)
    assert (w.gaps, w.recoveries, w.last_video) == ([], [], 10.5)
    w.video(13.0, reconnected=True, gap_threshold=1.0)
    assert w.recoveries == [(10.5, 2.5)] and w.gaps == [(10.5, 2.5)] and w.last_video == 13.0
    w.video(13.4, reconnected=True, gap_threshold=1.0)  # a quick reconnection: a recovery, not a gap
    assert w.recoveries[-1][0] == 13.0 and w.recoveries[-1][1] == pytest.approx(0.4) and len(w.gaps) == 1
    w.end(13.9, gap_threshold=1.0)  # ends within the threshold: nothing added
    assert len(w.gaps) == 1
    w.end(20.0, gap_threshold=1.0)
    assert w.gaps[-1][0] == 13.4 and w.gaps[-1][1] == pytest.approx(6.6)
