"""Pins, versions and cache keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.bundle.components import plan
from lab.bundle.keys import bundle_key, canonical, digest, step_key
from lab.bundle.pins import Pins, SemVer, go_version, staging_version
from lab.bundle.spec import CBuild


def test_semver_parse_and_derived_versions() -> None:
    assert SemVer.parse("v1.35.4") == SemVer(1, 35, 4)
    assert SemVer.parse("3.6.6-0") == SemVer(3, 6, 6)
    assert go_version("3.6.6-0") == "v3.6.6"
    assert go_version("v1.13.1") == "v1.13.1"
    assert staging_version("v1.35.4") == "v0.35.4"
    with pytest.raises(ValueError):
        SemVer.parse("latest")


def test_pins_load_reads_versions_keys(tmp_path: Path) -> None:
    f = tmp_path / "main.yml"
    f.write_text("---\nversions_kubernetes: v1.35.4\nversions_pause: '3.10.1'\nother: x\n")
    pins = Pins.load(f)
    assert pins["kubernetes"] == "v1.35.4"
    assert pins["pause"] == "3.10.1"
    assert "other" not in pins.as_dict()
    with pytest.raises(KeyError, match="versions_helm"):
        pins["helm"]


def test_repository_versions_file_pins_every_component() -> None:
    p = plan(Pins.load())
    assert dict(p.versions)["kubernetes"].startswith("v1.")


def _pins(**over: str) -> Pins:
    values = Pins.load().as_dict()
    values.update(over)
    return Pins(values)


TOOLS = {"go": "go1.26.8", "cc": "gcc 12", "deb:debian-iptables": "iptables=1.8.9-2"}


def test_bundle_key_is_stable_and_follows_pins_and_toolchains() -> None:
    a = bundle_key(plan(_pins()), TOOLS)
    assert a == bundle_key(plan(_pins()), dict(TOOLS))
    assert len(a) == 16 and int(a, 16) >= 0
    assert bundle_key(plan(_pins(helm="v3.21.4")), TOOLS) != a
    assert bundle_key(plan(_pins()), {**TOOLS, "go": "go1.26.9"}) != a
    assert bundle_key(plan(_pins(), image_repository="registry.lab:5000"), TOOLS) != a


def test_step_key_depends_on_spec_and_toolchain() -> None:
    s = CBuild(name="pause", module="k8s.io/kubernetes", version="v1.35.4", source="a.c", output="pause")
    assert step_key(s, "gcc 12") == step_key(s, "gcc 12")
    assert step_key(s, "gcc 12") != step_key(s, "gcc 13")
    assert step_key(s, "gcc 12") != step_key(CBuild("pause", "k8s.io/kubernetes", "v1.35.5", "a.c", "pause"), "gcc 12")


def test_canonical_hashes_bytes_and_types() -> None:
    assert canonical(b"abc") == {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    assert canonical((1, "a")) == [1, "a"]
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})
    with pytest.raises(TypeError):
        canonical(object())
