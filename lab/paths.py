"""Where the lab keeps things: the repository, the cache, the generated inventory and the run output."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSIONS_FILE = REPO_ROOT / "roles" / "versions" / "defaults" / "main.yml"
INVENTORY_DIR = REPO_ROOT / "inventories" / "lab"
BUILD_DIR = REPO_ROOT / "build" / "lab"
KUBECONFIG = BUILD_DIR / "kubeconfig"
ENDPOINTS = BUILD_DIR / "endpoints.json"
# SSH key pair and known_hosts of the lab (gitignored, recreated by `make lab`, removed by `make lab-down`).
STATE_DIR = REPO_ROOT / "lab" / "state"


def cache_root() -> Path:
    """``${STREAMOPS_CACHE:-$HOME/.cache/streamops-xiu}`` (same rule as the Makefile and lab.bundle)."""
    return Path(os.environ.get("STREAMOPS_CACHE") or Path.home() / ".cache" / "streamops-xiu")


def image_cache() -> Path:
    """Node image rootfs tarballs: ``<cache>/lab/node-image-<key>.tar``."""
    return cache_root() / "lab"
