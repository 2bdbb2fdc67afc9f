"""The cross-reference checks pass on the hand-made valid set and catch each broken fixture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tools.k8s_schemas import SchemaStore, load_documents

from .conftest import FIXTURES
from .crossrefs import CHECKS, dns_covers, ref, selector_matches

INVALID = load_documents((FIXTURES / "crossref-invalid.yaml").read_text(encoding="utf-8"))
Loader = Callable[[str], list[dict[str, Any]]]


def _expect(obj: dict[str, Any], what: str) -> str:
    return str(obj["metadata"]["annotations"][f"streamops.test/expect-{what}"])


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_valid_set_passes(check: str, fixture_docs: Loader) -> None:
    assert CHECKS[check](fixture_docs("valid-set.yaml")) == []


@pytest.mark.parametrize("obj", INVALID, ids=[f"{_expect(o, 'check')}:{o['metadata']['name']}" for o in INVALID])
def test_check_catches(obj: dict[str, Any], fixture_docs: Loader) -> None:
    errors = CHECKS[_expect(obj, "check")]([*fixture_docs("valid-set.yaml"), obj])
    assert any(e.startswith(ref(obj) + ": ") and _expect(obj, "error") in e for e in errors), errors


def test_every_check_has_a_failing_fixture() -> None:
    assert {_expect(o, "check") for o in INVALID} == set(CHECKS)


def test_invalid_fixtures_are_schema_valid(schema_store: SchemaStore) -> None:
    """So that they exercise the cross-checks, not the schema."""
    for obj in INVALID:
        assert schema_store.validate(obj) == [], obj["metadata"]["name"]


def test_selector_matches() -> None:
    labels = {"app": "xiu", "tier": "edge"}
    assert selector_matches({}, labels)
    assert selector_matches({"matchLabels": {"app": "xiu"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "xiu-edge"}}, labels)
    assert selector_matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["edge", "x"]}]}, labels)
    assert not selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["edge"]}]}, labels
    )
    assert selector_matches({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, labels)
    assert selector_matches({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, labels)


def test_dns_covers() -> None:
    assert dns_covers("hls.example.org", "hls.example.org")
    assert dns_covers("*.example.org", "hls.example.org")
    assert not dns_covers("*.example.org", "a.hls.example.org")
    assert not dns_covers("*.example.org", "example.org")
    assert not dns_covers("hls.example.org", "flv.example.org")
