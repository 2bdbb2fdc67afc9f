"""Thin wrapper over the docker CLI, and the label that marks everything the lab creates."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Sequence

# Every container, network, volume and image the lab creates carries this label (value = lab name), and
# `make lab-down` removes exactly the objects that carry it with its lab name.
LABEL = "io.streamops.xiu-lab"

ENSURE_DOCKER = Path(__file__).resolve().parent / "ensure-docker"


class DockerError(RuntimeError):
    """A docker command failed."""


def docker(*args: str, check: bool = True, input_bytes: bytes | None = None) -> str:
    """Run ``docker ARGS`` and return its stdout (text)."""
    proc = subprocess.run(["docker", *args], input=input_bytes, capture_output=True, check=False)
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise DockerError(f"docker {' '.join(args)}: exit {proc.returncode}: {err}")
    return proc.stdout.decode(errors="replace")


def ensure_docker() -> None:
    """Install/start dockerd when needed (lab/ensure-docker is idempotent)."""
    subprocess.run([str(ENSURE_DOCKER)], check=True)


def label_filter(lab: str) -> list[str]:
    return ["--filter", f"label={LABEL}={lab}"]


def ids(kind: str, lab: str) -> list[str]:
    """IDs/names of the lab's objects of one kind: container, network, volume, image."""
    if kind == "container":
        out = docker("ps", "-aq", *label_filter(lab))
    elif kind == "network":
        out = docker("network", "ls", "-q", *label_filter(lab))
    elif kind == "volume":
        out = docker("volume", "ls", "-q", *label_filter(lab))
    elif kind == "image":
        out = docker("images", "-q", *label_filter(lab))
    else:
        raise ValueError(kind)
    return sorted(set(out.split()))


def inspect(obj: str, kind: str = "") -> Any:
    args: Sequence[str] = ("inspect", obj) if not kind else (kind, "inspect", obj)
    data = json.loads(docker(*args))
    return data[0] if isinstance(data, list) and data else data


def exists(kind: str, name: str) -> bool:
    args = ["inspect", name] if kind == "container" else [kind, "inspect", name]
    return subprocess.run(["docker", *args], capture_output=True, check=False).returncode == 0
