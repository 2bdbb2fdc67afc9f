"""Fixtures for the manifest tests.

The rendered set is read from ``--manifests-dir`` (honoured when pytest is started on ``tests/manifests``),
else ``$STREAMOPS_MANIFESTS_DIR``, else ``<repo>/build/manifests``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.k8s_schemas import ManifestDoc, SchemaStore, load_documents, load_manifests, load_store  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--manifests-dir",
        default=None,
        help="directory of rendered manifests to test (default: $STREAMOPS_MANIFESTS_DIR or build/manifests)",
    )


def manifests_dir(config: pytest.Config) -> Path:
    chosen = config.getoption("manifests_dir", default=None) or os.environ.get("STREAMOPS_MANIFESTS_DIR")
    return Path(chosen).resolve() if chosen else REPO_ROOT / "build" / "manifests"


def rendered_docs(config: pytest.Config) -> list[ManifestDoc]:
    root = manifests_dir(config)
    return load_manifests(root) if root.is_dir() else []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per rendered object (``manifest_doc``); a single failing placeholder when none."""
    if "manifest_doc" in metafunc.fixturenames:
        docs: list[ManifestDoc | None] = [*rendered_docs(metafunc.config)]
        ids = [d.label for d in docs if d is not None] or ["no-rendered-manifests"]
        metafunc.parametrize("manifest_doc", docs or [None], ids=ids)


@pytest.fixture(scope="session")
def manifests_root(pytestconfig: pytest.Config) -> Path:
    return manifests_dir(pytestconfig)


@pytest.fixture(scope="session")
def rendered_set(pytestconfig: pytest.Config) -> list[ManifestDoc]:
    """Every rendered document holding an object (unparseable ones are reported by test_schema)."""
    return [d for d in rendered_docs(pytestconfig) if isinstance(d.obj, dict)]


@pytest.fixture(scope="session")
def schema_store() -> SchemaStore:
    """Pinned Kubernetes/MetalLB/cert-manager schemas (downloaded once into the cache)."""
    return load_store()


@pytest.fixture
def fixture_docs() -> Callable[[str], list[dict[str, Any]]]:
    """Loader of tests/manifests/fixtures/<name> (every document)."""

    def load(name: str) -> list[dict[str, Any]]:
        return load_documents((FIXTURES / name).read_text(encoding="utf-8"))

    return load
