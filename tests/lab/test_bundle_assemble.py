"""Assembling a bundle from step outputs, exporting it, and the cache's no-op path (no network, no Go)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from lab.bundle import build as builder
from lab.bundle.keys import bundle_key
from lab.bundle.manifest import verify
from lab.bundle.spec import BinFile, CBuild, Entry, Image, Layer, Plan, StepFile


def _plan() -> Plan:
    return Plan(
        versions=(("demo", "v1.0.0"),),
        steps=(CBuild(name="demo", module="example.com/m", version="v1.0.0", source="demo.c", output="demo"),),
        bins=(BinFile("demo", "demo", StepFile("demo", "demo")), BinFile("demo", "cni/demo", StepFile("demo", "demo"))),
        images=(
            Image(component="demo", repository="registry.k8s.io/demo", tag="v1.0.0",
                  layers=(Layer(entries=(Entry("/usr/local/bin/demo", source=StepFile("demo", "demo")),)),),
                  entrypoint=("/usr/local/bin/demo",)),
        ),
        settings=(("image_repository", "registry.k8s.io"),),
    )


def _outputs(tmp: Path) -> dict[str, Path]:
    out = tmp / "step-out"
    out.mkdir()
    (out / "demo").write_bytes(b"\x7fELF demo")
    return {"demo": out}


def test_assemble_writes_layout_and_manifest(tmp_path: Path) -> None:
    cache = builder.Cache(tmp_path / "cache")
    dest = cache.bundle("0123456789abcdef")
    builder._assemble(_plan(), cache, dest, _outputs(tmp_path), {"cc": "gcc"}, "0123456789abcdef")
    assert (dest / "bin/demo").read_bytes() == b"\x7fELF demo"
    assert (dest / "bin/cni/demo").stat().st_mode & 0o777 == 0o755
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["key"] == "0123456789abcdef"
    assert manifest["components"] == {"demo": "v1.0.0"}
    assert manifest["images"][0]["ref"] == "registry.k8s.io/demo:v1.0.0"
    assert set(manifest["files"]) == {"bin/demo", "bin/cni/demo", "images/demo_v1.0.0.tar"}
    assert not (dest / ".layers").exists()
    with tarfile.open(dest / "images/demo_v1.0.0.tar") as tar:
        assert {"index.json", "manifest.json", "oci-layout"} <= set(tar.getnames())
    assert verify(dest) == []


def test_export_links_and_is_a_noop_when_unchanged(tmp_path: Path) -> None:
    cache = builder.Cache(tmp_path / "cache")
    src = cache.bundle("0123456789abcdef")
    builder._assemble(_plan(), cache, src, _outputs(tmp_path), {"cc": "gcc"}, "0123456789abcdef")
    out = tmp_path / "out"
    builder.export(src, out)
    assert (out / "bin/demo").stat().st_ino == (src / "bin/demo").stat().st_ino
    marker = out / "bin/marker"
    marker.write_text("kept because nothing changed")
    builder.export(src, out)
    assert marker.exists()


def test_build_is_a_noop_when_the_bundle_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = builder.Cache(tmp_path / "cache")
    monkeypatch.setattr(builder, "toolchains", lambda plan, cache: {"cc": "gcc"})
    key = bundle_key(_plan(), {"cc": "gcc"})
    (cache.bundle(key)).mkdir(parents=True)
    (cache.bundle(key) / "manifest.json").write_text("{}")

    def fail(*args: object) -> None:
        raise AssertionError("nothing may be built")

    monkeypatch.setattr(builder, "_run_step", fail)
    report = builder.build(_plan(), cache, say=lambda s: None)
    assert report.reused and report.key == key and report.path == cache.bundle(key)
