"""The schema validator accepts the hand-made valid set and catches each broken fixture."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.k8s_schemas import SchemaStore, load_documents, strictify

from .conftest import FIXTURES, REPO_ROOT

EXPECT = "streamops.test/expect-error"
INVALID = load_documents((FIXTURES / "schema-invalid.yaml").read_text(encoding="utf-8"))


def test_valid_set_is_schema_valid(
    schema_store: SchemaStore, fixture_docs: Callable[[str], list[dict[str, Any]]]
) -> None:
    for obj in fixture_docs("valid-set.yaml"):
        assert schema_store.validate(obj) == [], obj["metadata"]["name"]


@pytest.mark.parametrize("obj", INVALID, ids=[o["metadata"].get("name", "no-name") for o in INVALID])
def test_validator_catches(obj: dict[str, Any], schema_store: SchemaStore) -> None:
    errors = schema_store.validate(obj)
    assert any(obj["metadata"]["annotations"][EXPECT] in e for e in errors), errors


def test_preserve_unknown_fields_respected(schema_store: SchemaStore) -> None:
    issuer: dict[str, Any] = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": "webhook", "namespace": "xiu"},
        "spec": {
            "acme": {
                "server": "https://acme.example.org/directory",
                "privateKeySecretRef": {"name": "account"},
                "solvers": [
                    {
                        "dns01": {
                            "webhook": {
                                "groupName": "x.example.org",
                                "solverName": "x",
                                "config": {"any": {"thing": 1}},
                            }
                        }
                    }
                ],
            }
        },
    }
    assert schema_store.validate(issuer) == []
    issuer["spec"]["acme"]["solvers"][0]["dns01"]["webhook"]["confg"] = {}
    assert any("'confg' was unexpected" in e for e in schema_store.validate(issuer))


def test_strictify() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
        "anyOf": [{"properties": {"a": {"properties": {"b": {}}}}}],
    }
    strict = strictify(schema)
    assert strict["additionalProperties"] is False
    assert strict["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in strict["anyOf"][0]  # structural restatement, not a new object
    assert (
        strictify({"properties": {}, "x-kubernetes-preserve-unknown-fields": True}).get("additionalProperties") is None
    )
    assert strictify({"x-kubernetes-int-or-string": True})["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert strictify({"type": "string", "nullable": True}) == {"anyOf": [{"type": "null"}, {"type": "string"}]}


def test_yaml_loader_is_strict() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key 'replicas'"):
        load_documents("spec:\n  replicas: 1\n  replicas: 2\n")
    assert load_documents("---\nv: 2024-01-01\n---\n") == [{"v": "2024-01-01"}]


def _run_schema_test(manifests: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STREAMOPS_MANIFESTS_DIR"}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--manifests-dir",
        str(manifests),
        str(Path(__file__).with_name("test_schema.py")),
    ]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_schema_test_fails_without_rendered_manifests(tmp_path: Path) -> None:
    result = _run_schema_test(tmp_path / "missing")
    assert result.returncode == 1 and "run `make render` first" in result.stdout, result.stdout


def test_schema_test_names_failing_file(tmp_path: Path) -> None:
    (tmp_path / "xiu").mkdir()
    shutil.copy(FIXTURES / "valid-set.yaml", tmp_path / "xiu" / "00-valid.yaml")
    (tmp_path / "xiu" / "10-deployment-typo.yaml").write_text(
        yaml.safe_dump(INVALID[0]) + "---\n" + yaml.safe_dump(INVALID[1]), encoding="utf-8"
    )
    result = _run_schema_test(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "2 failed, 19 passed" in result.stdout, result.stdout
    assert "xiu/10-deployment-typo.yaml#0:Deployment/typo-replica" in result.stdout
    assert "xiu/10-deployment-typo.yaml#1:Service/float-target-port" in result.stdout


def test_fixtures_are_outside_the_rendered_tree() -> None:
    assert not FIXTURES.is_relative_to(REPO_ROOT / "build")
