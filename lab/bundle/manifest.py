"""manifest.json: component versions, image references and the sha256 of every file in the bundle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lab.bundle import BUNDLE_FORMAT

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {sha256, size, mode}}`` for every regular file under root except manifest.json."""
    table: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST:
            continue
        table[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size, "mode": f"{path.stat().st_mode & 0o777:04o}"}
    return table


def build_manifest(
    root: Path,
    key: str,
    components: dict[str, str],
    settings: dict[str, str],
    images: list[dict[str, str]],
    toolchains: dict[str, str],
) -> dict[str, Any]:
    return {
        "format": BUNDLE_FORMAT,
        "key": key,
        "components": dict(sorted(components.items())),
        "settings": dict(sorted(settings.items())),
        "toolchains": dict(sorted(toolchains.items())),
        "images": sorted(images, key=lambda i: i["file"]),
        "files": file_table(root),
    }


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Write manifest.json atomically (it is the marker of a complete bundle)."""
    dest = root / MANIFEST
    tmp = root / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(dest)
    return dest


def verify(root: Path) -> list[str]:
    """Problems found comparing the files under root with its manifest.json (empty list: all good)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{root / MANIFEST}: {exc}"]
    expected: dict[str, dict[str, Any]] = manifest.get("files", {})
    actual = file_table(root)
    problems = [f"missing: {p}" for p in sorted(set(expected) - set(actual))]
    problems += [f"unexpected: {p}" for p in sorted(set(actual) - set(expected))]
    problems += [
        f"sha256 mismatch: {p}" for p in sorted(set(expected) & set(actual)) if expected[p]["sha256"] != actual[p]["sha256"]
    ]
    return problems
