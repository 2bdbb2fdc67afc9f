"""Static C builds of single source files shipped inside Go modules (the pause container)."""

from __future__ import annotations

import shutil
from pathlib import Path

from lab.bundle import gowrap
from lab.bundle.runner import BuildError, output, run
from lab.bundle.spec import CBuild


def compiler() -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise BuildError("no C compiler (gcc) found; on Debian: apt-get install gcc libc6-dev")
    return cc


def toolchain() -> str:
    """Compiler and libc identity (a static binary embeds the libc)."""
    cc = output([compiler(), "-dumpfullversion"]).strip()
    libc = output(["ldd", "--version"]).splitlines()[0].strip()
    return f"gcc {cc}; {libc}"


def build(step: CBuild, cache: Path, outdir: Path, log: Path) -> None:
    info = gowrap.download(cache, step.module, step.version)
    source = Path(info["Dir"]) / step.source
    if not source.is_file():
        raise BuildError(f"{step.module}@{step.version} has no {step.source}")
    outdir.mkdir(parents=True, exist_ok=True)
    run([compiler(), *step.cflags, "-o", str(outdir / step.output), str(source)], log=log)
