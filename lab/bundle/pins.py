"""Pinned versions, read from roles/versions/defaults/main.yml (the one place versions live)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "roles" / "versions" / "defaults" / "main.yml"

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")


@dataclass(frozen=True)
class SemVer:
    """The numeric part of a version such as ``v1.35.4`` or ``3.6.6-0``."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        m = _SEMVER.match(text)
        if m is None:
            raise ValueError(f"not a semantic version: {text!r}")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))


class Pins:
    """Read-only view of the ``versions_*`` keys; ``pins["kubernetes"]`` reads ``versions_kubernetes``."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    @classmethod
    def load(cls, path: Path = VERSIONS_FILE) -> Pins:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping")
        values: dict[str, str] = {}
        for key, value in data.items():
            if isinstance(key, str) and key.startswith("versions_") and isinstance(value, (str, int, float)):
                values[key.removeprefix("versions_")] = str(value)
        return cls(values)

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"versions_{name} is not pinned in {VERSIONS_FILE}") from None

    def as_dict(self) -> dict[str, str]:
        return dict(self._values)


def go_version(tag: str) -> str:
    """Module version for an image tag: ``3.6.6-0`` -> ``v3.6.6``, ``v1.13.1`` -> ``v1.13.1``."""
    v = SemVer.parse(tag)
    return f"v{v.major}.{v.minor}.{v.patch}"


def staging_version(kube_version: str) -> str:
    """Published version of a Kubernetes staging module: ``v1.35.4`` -> ``v0.35.4``."""
    v = SemVer.parse(kube_version)
    return f"v0.{v.minor}.{v.patch}"
