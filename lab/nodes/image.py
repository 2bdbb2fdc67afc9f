"""The lab node image: Debian 12 minbase + systemd + the node packages, built with debootstrap, imported with
``docker import``. The rootfs tarball is cached under ``<cache>/lab/node-image-<key>.tar``; the key covers
the suite, the package list and customize.sh, so changing any of them builds a new image."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lab import docker as dk
from lab.paths import image_cache

SUITE = "bookworm"
# Debian 12 keeps systemd 252, which still boots on this cgroup-v1 host (newer systemd refuses cgroup v1).
MIRROR = os.environ.get("LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CUSTOMIZE = Path(__file__).resolve().parent / "customize.sh"
IMAGE_REPO = "streamops-xiu-lab-node"
# Bump when the way the image is put together changes in a way the inputs do not show.
IMAGE_FORMAT = 1

# What a Kubernetes node needs before the roles run (the roles install nothing from apt when all of these are
# present, so the lab nodes never need a package mirror). containerd/runc are Debian 12's (1.6.20 / 1.1.5).
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",  # kubelet's and runc's systemd cgroup driver talk to systemd over D-Bus
    "openssh-server",
    "sudo",
    "python3",
    "python3-apt",  # ansible.builtin.apt / package_facts
    "containerd",
    "runc",
    "iproute2",
    "iptables",
    "conntrack",
    "ethtool",
    "socat",
    "ca-certificates",
    "kmod",
    "procps",
    "iputils-ping",
    "curl",
)


@dataclass(frozen=True)
class NodeImage:
    key: str
    tag: str
    tarball: Path


def image_key(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE, customize: str | None = None) -> str:
    """Cache key of the node image: suite, sorted package list, customize.sh content, format."""
    script = CUSTOMIZE.read_text(encoding="utf-8") if customize is None else customize
    doc = {"format": IMAGE_FORMAT, "suite": suite, "packages": sorted(packages), "customize": script}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def node_image(key: str | None = None) -> NodeImage:
    k = key or image_key()
    return NodeImage(key=k, tag=f"{IMAGE_REPO}:{k}", tarball=image_cache() / f"node-image-{k}.tar")


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ...: exit {proc.returncode}, see {log}")


def build_rootfs(img: NodeImage, say: Callable[[str], None]) -> float:
    """debootstrap + customize.sh + tar into the cache. Returns seconds spent (0 when cached)."""
    if img.tarball.exists():
        return 0.0
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap not found (apt-get install debootstrap)")
    started = time.monotonic()
    img.tarball.parent.mkdir(parents=True, exist_ok=True)
    log = img.tarball.with_suffix(".log")
    log.write_text("", encoding="utf-8")
    say(f"building node image rootfs {img.key} (debootstrap {SUITE} minbase, about a minute; log {log})")
    with tempfile.TemporaryDirectory(prefix="node-image-", dir=img.tarball.parent) as tmp:
        root = Path(tmp) / "rootfs"
        nice = ["nice", "-n", "10"]
        _run(
            nice
            + [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            log,
        )
        shutil.copy(CUSTOMIZE, root / "tmp" / "customize.sh")
        _run(["chroot", str(root), "/bin/sh", "/tmp/customize.sh"], log)
        (root / "tmp" / "customize.sh").unlink(missing_ok=True)
        partial = img.tarball.with_suffix(".tar.part")
        _run(nice + ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(root), "-cf", str(partial), "."], log)
        partial.rename(img.tarball)
    return time.monotonic() - started


def import_image(img: NodeImage, lab: str) -> float:
    """``docker import`` the cached rootfs unless the tag exists. Returns seconds spent (0 when present)."""
    if dk.exists("image", img.tag):
        return 0.0
    started = time.monotonic()
    dk.docker(
        "import",
        "--change", 'CMD ["/usr/local/sbin/lab-entrypoint"]',
        "--change", "ENV container=docker",
        "--change", f"LABEL {dk.LABEL}={lab}",
        str(img.tarball),
        img.tag,
    )
    return time.monotonic() - started


def ensure_image(lab: str, say: Callable[[str], None]) -> tuple[NodeImage, float, float]:
    """Build (or reuse) the rootfs tarball and import it. Returns the image, build seconds, import seconds."""
    img = node_image()
    built = build_rootfs(img, say)
    imported = import_image(img, lab)
    return img, built, imported
