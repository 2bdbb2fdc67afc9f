"""File trees from Debian packages: resolve the closure with apt, download, unpack with dpkg-deb -x.

No maintainer scripts run; the step's ``symlinks`` stand in for what they would set up. The build host's
apt sources decide the packages (Debian 12 bookworm, like the node images); the resolved name=version
list is part of the cache key, so a security update in the archive rebuilds the tree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from lab.bundle.runner import BuildError, output, run
from lab.bundle.spec import DebTree

_DEPENDS_FLAGS = (
    "--recurse",
    "--no-recommends",
    "--no-suggests",
    "--no-conflicts",
    "--no-breaks",
    "--no-replaces",
    "--no-enhances",
)


def parse_depends(text: str) -> list[str]:
    """Package names from ``apt-cache depends --recurse`` output (top-level lines, virtual ones skipped)."""
    names = {
        line.strip() for line in text.splitlines() if line and not line[0].isspace() and not line.startswith("<")
    }
    return sorted(n for n in names if n)


def parse_policy(text: str) -> dict[str, str]:
    """``{package: candidate version}`` from ``apt-cache policy PKG...`` output."""
    found: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1]
        elif current and line.strip().startswith("Candidate:"):
            candidate = line.split(":", 1)[1].strip()
            if candidate and candidate != "(none)":
                found[current] = candidate
    return found


def resolve(step: DebTree) -> list[tuple[str, str]]:
    """The (package, version) closure of step.packages minus step.exclude, as apt would install it."""
    if shutil.which("apt-cache") is None:
        raise BuildError(f"{step.name}: needs apt (a Debian 12 build host); apt-cache not found")
    names = [n for n in parse_depends(output(["apt-cache", "depends", *_DEPENDS_FLAGS, *step.packages]))
             if n not in step.exclude]
    versions = parse_policy(output(["apt-cache", "policy", *names]))
    missing = [n for n in names if n not in versions]
    if missing:
        raise BuildError(f"{step.name}: no candidate version for {missing}; run apt-get update")
    return [(n, versions[n]) for n in names]


APT_LISTS = Path("/var/lib/apt/lists")


def lists_fingerprint(lists: Path = APT_LISTS) -> str:
    """Changes whenever apt-get update changes the package lists (name, size, mtime of each list file)."""
    h = hashlib.sha256()
    if lists.is_dir():
        for p in sorted(lists.iterdir()):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def toolchain(step: DebTree, memo: Path | None = None) -> str:
    """``name=version ...`` of the closure; memoized in memo per package lists, as apt takes ~1 s."""
    entry = f"{step.packages}|{step.exclude}|{lists_fingerprint()}"
    cached: dict[str, str] = {}
    if memo is not None and memo.exists():
        try:
            cached = json.loads(memo.read_text(encoding="utf-8"))
        except ValueError:
            cached = {}
    if entry in cached:
        return cached[entry]
    value = " ".join(f"{n}={v}" for n, v in resolve(step))
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({**cached, entry: value}, indent=1), encoding="utf-8")
    return value


def build(step: DebTree, debs: Path, outdir: Path, log: Path) -> None:
    """Download the closure into debs/ (kept as a cache) and unpack it into outdir."""
    pins = resolve(step)
    debs.mkdir(parents=True, exist_ok=True)
    wanted = [f"{n}={v}" for n, v in pins]
    missing = [w for w, (n, v) in zip(wanted, pins) if not list(debs.glob(f"{n}_{v.replace(':', '%3a')}_*.deb"))]
    if missing:
        run(["apt-get", "download", *missing], log=log, cwd=debs, nice=False)
    outdir.mkdir(parents=True, exist_ok=True)
    for n, v in pins:
        found = sorted(debs.glob(f"{n}_{v.replace(':', '%3a')}_*.deb"))
        if not found:
            raise BuildError(f"{step.name}: {n}={v} was not downloaded into {debs}")
        run(["dpkg-deb", "-x", str(found[0]), str(outdir)], log=log, nice=False)
    for prefix in step.drop:
        shutil.rmtree(outdir / prefix, ignore_errors=True)
    for path, target in step.symlinks:
        link = outdir / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    (outdir / "var/lib/dpkg").mkdir(parents=True, exist_ok=True)
    (outdir / "var/lib/dpkg/bundle-packages").write_text("".join(f"{n} {v}\n" for n, v in pins))
