"""`cargo install` of a pinned crate from crates.io (the xiu server for the lab's xiu image)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lab.bundle.runner import BuildError, output, run
from lab.bundle.spec import CargoInstall


def toolchain() -> str:
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).exists():
        raise BuildError("cargo not found (install Rust with rustup, or add ~/.cargo/bin to PATH)")
    rustc = str(Path(cargo).with_name("rustc"))
    return f"{output([cargo, '--version']).strip()}; {output([rustc, '--version']).strip()}"


def build(step: CargoInstall, cache: Path, outdir: Path, log: Path) -> None:
    """Build into outdir/bin. The target directory is the one `make xiu` uses, so a warm cache is reused."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    env = {**os.environ, "CARGO_TARGET_DIR": str(cache / "cargo-target"), **dict(step.env)}
    run(
        [cargo, "install", step.crate, "--version", step.version, "--locked",
         "--root", str(outdir)],
        log=log,
        env=env,
    )
    for binary in step.binaries:
        if not (outdir / "bin" / binary).is_file():
            raise BuildError(f"cargo install {step.crate} {step.version} produced no bin/{binary}")
