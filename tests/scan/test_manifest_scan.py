"""The manifest scan (`make scan`) really scans, and really fails: a check that cannot silently pass.

Runs the pinned checkov (``make checkov``; ``$CHECKOV_BIN``) with the repository's ``.checkov.yaml`` on small
fixtures: a privileged pod must fail, a hardened pod must pass, a suppression needs a reason, and an empty
input is a failure, not a pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools import manifest_scan
from tools.manifest_scan import Report, scan

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module", autouse=True)
def checkov_installed() -> None:
    exe = manifest_scan.checkov_bin()
    if not exe.is_file():
        pytest.fail(f"checkov is not installed at {exe}: run 'make checkov' (make pytest does)")


def failed_ids(report: Report) -> set[str]:
    return {f.check_id for f in report.failed}


def test_privileged_container_fails_the_scan() -> None:
    report = scan([FIXTURES / "bad"])
    assert len(report.files) == 1 and report.resources >= 1
    assert "CKV_K8S_16" in failed_ids(report)  # "Container should not be privileged"
    assert not report.ok
    assert manifest_scan.main([str(FIXTURES / "bad")]) == 1


def test_hardened_pod_passes_the_scan() -> None:
    report = scan([FIXTURES / "good"])
    assert report.ok, report.problems
    assert report.files and report.resources >= 2 and report.passed > 0
    assert manifest_scan.main([str(FIXTURES / "good")]) == 0


def test_nothing_to_scan_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a manifest\n")
    report = scan([tmp_path])
    assert not report.ok and "no YAML file" in report.problems[0]
    assert manifest_scan.main([str(tmp_path)]) == 1


def test_yaml_without_kubernetes_objects_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("---\nreplicas: 2\n")
    report = scan([tmp_path])
    assert report.resources == 0 and not report.ok


def test_suppression_needs_a_reason(tmp_path: Path) -> None:
    text = (FIXTURES / "good" / "hardened.yaml").read_text()
    pull = "      imagePullPolicy: Always\n"
    assert pull in text
    annotated = text.replace(pull, "      imagePullPolicy: IfNotPresent\n", 1).replace(
        "  labels:\n    app: hardened\n",
        "  labels:\n    app: hardened\n  annotations:\n    checkov.io/skip1: CKV_K8S_15\n",
        1,
    )
    (tmp_path / "pod.yaml").write_text(annotated)
    report = scan([tmp_path])
    assert [f.check_id for f in report.skipped] == ["CKV_K8S_15"]
    assert [f.check_id for f in report.unexplained] == ["CKV_K8S_15"] and not report.ok

    (tmp_path / "pod.yaml").write_text(annotated.replace("CKV_K8S_15\n", "CKV_K8S_15=images are preloaded\n"))
    report = scan([tmp_path])
    assert report.ok, report.problems
    assert report.skipped[0].reason == "images are preloaded"


def test_missing_scanner_is_an_error(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "good" / "hardened.yaml", tmp_path)
    with pytest.raises(FileNotFoundError, match="make checkov"):
        scan([tmp_path], checkov=tmp_path / "no-checkov")


def test_config_switches_no_check_off() -> None:
    config = manifest_scan.CONFIG.read_text()
    assert "\nskip-check: []\n" in config and "\nframework:\n  - kubernetes\n" in config
