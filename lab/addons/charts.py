"""Helm charts from Go modules, copied into the cache as plain chart directories."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.bundle.gowrap import download


@dataclass(frozen=True)
class ModuleChart:
    """A chart directory inside a Go module (``path`` relative to the module root)."""

    name: str
    module: str
    version: str
    path: str


def module_dir(cache: Path, module: str, version: str) -> Path:
    """The module's directory in the module cache (``go mod download``: verified against sum.golang.org)."""
    return Path(download(cache, module, version)["Dir"])


def _copy_tree(src: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    for p in [tmp, *tmp.rglob("*")]:  # the module cache is read-only
        p.chmod(0o755 if p.is_dir() else 0o644)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)


def copy_chart(cache: Path, out: Path, chart: ModuleChart) -> Path:
    """``out/<name>-<version>``: the chart directory as it is in the module (a no-op when already there)."""
    dest = out / f"{chart.name}-{chart.version}"
    if (dest / "Chart.yaml").is_file():
        return dest
    out.mkdir(parents=True, exist_ok=True)
    src = module_dir(cache, chart.module, chart.version) / chart.path
    if not (src / "Chart.yaml").is_file():
        raise FileNotFoundError(f"{chart.module}@{chart.version}: no chart at {chart.path}")
    _copy_tree(src, dest)
    return dest


def cert_manager_chart_yaml(template: str, version: str) -> str:
    """Chart.yaml from cert-manager's Chart.template.yaml: version/appVersion set, release-tool markers resolved."""
    text = re.sub(r"(?m)^version: .*$", f"version: {version}", template)
    text = re.sub(r"(?m)^appVersion: .*$", f"appVersion: {version}", text)
    return text.replace("{{IS_PRERELEASE}}", "false")


def cert_manager_crds_template(crd_texts: list[str]) -> str:
    """templates/crds.yaml as cert-manager's release makefile writes it (installCRDs switch around every CRD)."""
    body = "\n---\n".join(t.strip("\n") for t in crd_texts)
    return "{{- if .Values.installCRDs }}\n" + body + "\n{{- end }}\n"


def cert_manager_chart(cache: Path, out: Path, version: str) -> Path:
    """The cert-manager chart of ``version`` (<= 1.11: chart template + CRDs in the root module)."""
    dest = out / f"cert-manager-{version}"
    if (dest / "Chart.yaml").is_file():
        return dest
    root = module_dir(cache, "github.com/cert-manager/cert-manager", version) / "deploy"
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"cert-manager-{version}.build"
    if tmp.exists():
        shutil.rmtree(tmp)
    _copy_tree(root / "charts" / "cert-manager", tmp)
    template = (tmp / "Chart.template.yaml").read_text(encoding="utf-8")
    (tmp / "Chart.yaml").write_text(cert_manager_chart_yaml(template, version), encoding="utf-8")
    for leftover in ("Chart.template.yaml", "README.template.md", "signkey_annotation.txt"):
        (tmp / leftover).unlink(missing_ok=True)
    crds = [p.read_text(encoding="utf-8") for p in sorted((root / "crds").glob("crd-*.yaml"))]
    if not crds:
        raise FileNotFoundError(f"cert-manager {version}: no deploy/crds/crd-*.yaml")
    (tmp / "templates" / "crds.yaml").write_text(cert_manager_crds_template(crds), encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)
    return dest
