"""Scan rendered Kubernetes manifests with the pinned checkov, offline, and fail on any finding.

``python -m tools.manifest_scan [PATH ...]`` (default ``build/manifests``; ``make scan`` runs it). Every YAML file
under the paths is scanned with the settings in ``.checkov.yaml`` (framework kubernetes, every built-in check,
nothing skipped globally). The exit status is 0 only when:

* there was something to scan (at least one file, and checkov parsed at least one resource);
* checkov parsed every file;
* no check failed;
* every suppressed check (an accepted finding, ``checkov.io/skip<N>: <ID>=<reason>`` on the object) gives a reason.

Severity mapping (see ``.checkov.yaml``): offline, checkov rates nothing, so every failed check counts as high.

The checkov executable is ``$CHECKOV_BIN``, else ``$STREAMOPS_CACHE/tools/checkov-<versions_checkov>/bin/checkov``
(``make checkov`` installs it). It runs with the vendor platform switched off: no downloads, no version check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / ".checkov.yaml"
VERSIONS_FILE = REPO_ROOT / "roles" / "versions" / "defaults" / "main.yml"
DEFAULT_PATHS = (REPO_ROOT / "build" / "manifests",)
# No policy metadata, no "new version" look-up: the scan must not depend on (or talk to) anything outside.
OFFLINE_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}
# What checkov reports for a `checkov.io/skipN: ID` annotation without `=reason`.
NO_REASON = "No comment provided"


@dataclass(frozen=True)
class Finding:
    check_id: str
    check_name: str
    file: str
    resource: str
    reason: str = ""

    def line(self) -> str:
        text = f"{self.check_id} {self.check_name}: {self.resource} ({self.file})"
        return f"{text}\n    reason: {self.reason}" if self.reason else text


@dataclass
class Report:
    files: list[Path]
    resources: int = 0
    passed: int = 0
    failed: list[Finding] = field(default_factory=list)
    skipped: list[Finding] = field(default_factory=list)
    parsing_errors: list[str] = field(default_factory=list)

    @property
    def unexplained(self) -> list[Finding]:
        return [f for f in self.skipped if not f.reason.strip() or f.reason.strip() == NO_REASON]

    @property
    def problems(self) -> list[str]:
        problems: list[str] = []
        if not self.files:
            problems.append("no YAML file to scan (run 'make render' first?)")
        elif self.resources == 0:
            problems.append(f"checkov found no Kubernetes resource in {len(self.files)} file(s)")
        problems += [f"checkov could not parse {p}" for p in self.parsing_errors]
        problems += [f"failed: {f.line()}" for f in self.failed]
        problems += [f"suppressed without a reason: {f.line()}" for f in self.unexplained]
        return problems

    @property
    def ok(self) -> bool:
        return not self.problems


def pinned_version(key: str = "versions_checkov", versions_file: Path = VERSIONS_FILE) -> str:
    match = re.search(rf"^{re.escape(key)}:\s*[\"']?([^\"'\s#]+)", versions_file.read_text(), re.MULTILINE)
    if not match:
        raise KeyError(f"{key} is not pinned in {versions_file}")
    return match.group(1)


def checkov_bin(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("CHECKOV_BIN"):
        return Path(env["CHECKOV_BIN"])
    cache = Path(env.get("STREAMOPS_CACHE") or Path.home() / ".cache" / "streamops-xiu")
    return cache / "tools" / f"checkov-{pinned_version()}" / "bin" / "checkov"


def yaml_files(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            found.append(path)
    return found


def _finding(item: Mapping[str, Any]) -> Finding:
    return Finding(
        check_id=str(item.get("check_id")),
        check_name=str(item.get("check_name")),
        file=str(item.get("file_abs_path") or item.get("file_path")),
        resource=str(item.get("resource")),
        reason=str((item.get("check_result") or {}).get("suppress_comment") or ""),
    )


def parse(output: str, files: list[Path]) -> Report:
    """Read checkov's `-o json` output (one framework: an object; an empty scan: a bare summary)."""
    data: Any = json.loads(output) if output.strip() else {}
    runs = data if isinstance(data, list) else [data]
    report = Report(files=files)
    for run in runs:
        if not isinstance(run, dict):
            continue
        results = run.get("results") or {}
        summary = run.get("summary", run)
        report.resources += int(summary.get("resource_count", 0))
        report.passed += int(summary.get("passed", 0))
        report.failed += [_finding(i) for i in results.get("failed_checks", [])]
        report.skipped += [_finding(i) for i in results.get("skipped_checks", [])]
        report.parsing_errors += [str(p) for p in results.get("parsing_errors", [])]
    return report


def scan(paths: Sequence[Path], checkov: Path | None = None, config: Path = CONFIG) -> Report:
    files = yaml_files(paths)
    if not files:
        return Report(files=[])
    exe = checkov or checkov_bin()
    if not exe.is_file():
        raise FileNotFoundError(f"checkov not found at {exe}: run 'make checkov'")
    args = [str(exe), "--config-file", str(config), "--output", "json"]
    for path in files:
        args += ["--file", str(path)]
    proc = subprocess.run(  # noqa: S603 - fixed executable, our own file paths
        args, capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV}, check=False
    )
    # 0 = all passed, 1 = some check failed; anything else is checkov itself failing.
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return parse(proc.stdout, files)


def summary(report: Report) -> str:
    lines = [f"checkov: {len(report.files)} file(s), {report.resources} resource(s), {report.passed} passed, "
             f"{len(report.failed)} failed, {len(report.skipped)} accepted (suppressed on the object)"]
    by_check = Counter(f"{f.check_id} {f.check_name}" for f in report.failed)
    lines += [f"  {count} x {check}" for check, count in sorted(by_check.items())]
    if report.skipped:
        lines.append("accepted findings:")
        lines += [f"  {f.line()}" for f in report.skipped]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    paths = [Path(a) for a in (sys.argv[1:] if argv is None else argv)] or list(DEFAULT_PATHS)
    try:
        report = scan(paths)
    except (FileNotFoundError, RuntimeError, KeyError) as error:
        print(f"manifest scan: {error}", file=sys.stderr)
        return 2
    print(summary(report))
    if report.ok:
        print("manifest scan: no finding")
        return 0
    print("manifest scan: FAILED", *report.problems, sep="\n  ", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
