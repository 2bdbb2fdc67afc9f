"""Run build commands at low priority with their output in a log file."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence


class BuildError(RuntimeError):
    pass


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run(
    cmd: Sequence[str],
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    nice: bool = True,
) -> None:
    """Run cmd (under ``nice -n 19`` when nice), appending its output to log; raise BuildError on failure."""
    argv = (["nice", "-n", "19"] if nice else []) + list(cmd)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ (cd {cwd or os.getcwd()}) {shlex.join(argv)}\n")
        f.flush()
        proc = subprocess.run(
            argv, cwd=cwd, env=dict(env) if env is not None else None, stdout=f, stderr=subprocess.STDOUT, check=False
        )
        f.write(f"# exit {proc.returncode} after {time.monotonic() - started:.1f}s\n")
    if proc.returncode != 0:
        raise BuildError(f"{shlex.join(argv)} failed (exit {proc.returncode}); see {log}\n{_tail(log)}")


def output(cmd: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """stdout of a quick query command; BuildError with its stderr when it fails."""
    proc = subprocess.run(
        list(cmd), cwd=cwd, env=dict(env) if env is not None else None, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BuildError(f"{shlex.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout
