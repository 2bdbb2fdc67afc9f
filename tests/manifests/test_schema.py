"""Every rendered object validates strictly against the pinned Kubernetes / CRD schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.k8s_schemas import ManifestDoc, SchemaStore


def test_object_matches_schema(
    manifest_doc: ManifestDoc | None, schema_store: SchemaStore, manifests_root: Path
) -> None:
    if manifest_doc is None:
        pytest.fail(f"no rendered manifests (*.yaml) under {manifests_root}: run `make render` first")
    if manifest_doc.error:
        pytest.fail(f"{manifest_doc.label}: {manifest_doc.error}")
    errors = schema_store.validate(manifest_doc.obj)
    assert not errors, f"{manifests_root / manifest_doc.file} {manifest_doc.label}:\n  " + "\n  ".join(errors)
