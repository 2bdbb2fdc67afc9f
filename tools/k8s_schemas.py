"""Strict schema validation of rendered Kubernetes manifests against pinned upstream schemas.

Nothing here is committed schema data: every schema is fetched at test time from the Go module proxy
(``$GOPROXY``, first http(s)/file entry, default https://proxy.golang.org) at the versions pinned in
``roles/versions/defaults/main.yml`` and cached outside the checkout under
``${STREAMOPS_CACHE:-$HOME/.cache/streamops-xiu}/schemas/<name>-<version>/``:

* ``kubernetes-<versions_kubernetes>/api/openapi-spec/swagger.json`` from module ``k8s.io/kubernetes``;
* ``metallb-<versions_metallb>/config/crd/bases/*.yaml`` from module ``go.universe.tf/metallb``
  (falls back to the helm-templated ``charts/metallb/charts/crds/templates/crds.yaml``);
* ``cert-manager-<versions_cert_manager>/deploy/crds/*.yaml`` from ``github.com/cert-manager/cert-manager``.

Download: ``GET $GOPROXY/<module>/@v/<version>.zip`` (module path escaped as Go does), its ``h1:`` dirhash
is checked against the checksum database record fetched through the same proxy
(``$GOPROXY/sumdb/sum.golang.org/lookup/<module>@<version>``; ``GOSUMDB=off`` skips the check; the
record's tree signature itself is not verified). Only the files needed are extracted; the zip is dropped.
This is faster and leaner than ``go mod download`` (which unpacks ~130 MB for k8s.io/kubernetes) and
needs no Go toolchain.

cert-manager: ``versions_cert_manager`` (v1.21.2) is used. Its root module zip ships
``deploy/crds/*.yaml``: plain controller-gen output, no helm templating, with the same
``openAPIV3Schema`` as the chart's ``templates/crd-*.yaml`` (those are wrapped in ``{{ }}`` lines). As
a safety net for future bumps, the chart templates are read with template lines stripped, and only if
neither yields CRDs is ``versions_cert_manager_lab`` (plain ``deploy/crds/crd-*.yaml``) used;
``SchemaStore.sources`` says which one was loaded.

Strictness (like ``kubeconform -strict``): object schemas that declare ``properties`` and no
``additionalProperties`` get ``additionalProperties: false`` (not under ``x-kubernetes-preserve-unknown-fields``
nor inside ``anyOf``/``allOf``/``oneOf``/``not``, which in structural schemas only restate fields);
``required`` is enforced; ``IntOrString``/``x-kubernetes-int-or-string`` accept integer or string only;
``Quantity`` accepts a number or a string in Kubernetes quantity syntax; nulls only where ``nullable`` (and
``metadata.creationTimestamp: null``, which generated manifests carry);
an unknown apiVersion/kind is an error; CR ``metadata`` is checked against the real ObjectMeta;
``metadata.name`` is required; duplicate YAML keys are errors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSIONS_FILE = REPO_ROOT / "roles" / "versions" / "defaults" / "main.yml"

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
# resource.ParseQuantity: signed decimal, then a binary/decimal SI suffix or a decimal exponent.
QUANTITY_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
_INT_OR_STRING: list[dict[str, Any]] = [{"type": "integer"}, {"type": "string"}]
_TEMPLATE_LINE = re.compile(r"^\s*\{\{.*\}\}\s*$")
_TEMPLATE_INLINE = re.compile(r"\{\{.*?\}\}")


class SchemaError(RuntimeError):
    """Schemas could not be obtained or loaded."""


# --------------------------------------------------------------------------------------------- fetch


def cache_root() -> Path:
    base = os.environ.get("STREAMOPS_CACHE") or str(Path.home() / ".cache" / "streamops-xiu")
    return Path(base) / "schemas"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: not a mapping")
    return {str(k): str(v) for k, v in data.items()}


def _proxy() -> str:
    for entry in re.split(r"[,|]", os.environ.get("GOPROXY") or "https://proxy.golang.org"):
        entry = entry.strip()
        if entry.startswith(("https://", "http://", "file://")):
            return entry.rstrip("/")
    raise SchemaError("GOPROXY names no proxy URL (need https://..., e.g. https://proxy.golang.org)")


def _escape(path: str) -> str:
    """Go module path/version escaping: upper-case letters become '!' + lower-case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group().lower(), path)


def _open(url: str) -> Any:
    for attempt in range(3):
        try:
            return urllib.request.urlopen(url, timeout=120)
        except OSError as exc:
            if attempt == 2 or getattr(exc, "code", 500) in (404, 410):
                raise SchemaError(f"cannot fetch {url}: {exc}") from exc
            time.sleep(2 * (attempt + 1))
    raise AssertionError("unreachable")


def _sumdb_h1(proxy: str, module: str, version: str) -> str | None:
    gosumdb = os.environ.get("GOSUMDB") or "sum.golang.org"
    if gosumdb == "off":
        return None
    name = gosumdb.split()[0].split("+")[0]
    url = f"{proxy}/sumdb/{name}/lookup/{_escape(module)}@{_escape(version)}"
    with _open(url) as resp:
        text: str = resp.read().decode("utf-8")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[:2] == [module, version]:
            return parts[2]
    raise SchemaError(f"{url}: no h1 record for {module}@{version}")


def zip_h1(zf: zipfile.ZipFile) -> str:
    """Go's dirhash.HashZip ("h1:"): sha256 over sorted '<sha256 hex>  <name>\\n' lines."""
    summary = hashlib.sha256()
    for name in sorted(zf.namelist()):
        summary.update(f"{hashlib.sha256(zf.read(name)).hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def fetch_module(name: str, module: str, version: str, wanted: Callable[[str], bool]) -> Path:
    """Cache dir holding the files of ``module@version`` (paths relative to the module root) that
    ``wanted`` selects; downloaded and checked once, then reused."""
    dest = cache_root() / f"{name}-{version}"
    marker = dest / ".source.json"
    if marker.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    proxy = _proxy()
    url = f"{proxy}/{_escape(module)}/@v/{_escape(version)}.zip"
    expected = _sumdb_h1(proxy, module, version)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        zpath = tmp / "module.zip"
        with _open(url) as resp, zpath.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
        prefix = f"{module}@{version}/"
        root = tmp / "tree"
        files: list[str] = []
        with zipfile.ZipFile(zpath) as zf:
            got = zip_h1(zf)
            if expected is not None and got != expected:
                raise SchemaError(f"{url}: checksum mismatch, got {got}, sum database says {expected}")
            for member in zf.namelist():
                rel = member[len(prefix) :] if member.startswith(prefix) else ""
                if rel and ".." not in rel.split("/") and wanted(rel):
                    target = root / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(member))
                    files.append(rel)
        if not files:
            raise SchemaError(f"{url}: none of the wanted files are in the module")
        info = {"module": module, "version": version, "url": url, "h1": got, "files": sorted(files)}
        (root / ".source.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        if marker.is_file():  # a concurrent run finished first
            return dest
        if dest.exists():  # leftover of an interrupted run (no marker): replace it
            shutil.rmtree(dest)
        try:
            os.replace(root, dest)
        except OSError:
            if not marker.is_file():  # not a concurrent winner: real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ---------------------------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and keeps timestamps as strings (as JSON would)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_documents(text: str) -> list[Any]:
    """All non-empty YAML documents of a manifest file (duplicate keys raise yaml.YAMLError)."""
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]


def _strip_templates(text: str) -> str:
    lines = [ln for ln in text.splitlines() if not _TEMPLATE_LINE.match(ln)]
    return "\n".join(_TEMPLATE_INLINE.sub("templated", ln) for ln in lines) + "\n"


def load_crds(root: Path, prefixes: Sequence[str]) -> tuple[str, list[dict[str, Any]]]:
    """CRDs from the first prefix (relative to root) whose YAML files contain any; helm template
    directives are stripped first. Returns (prefix used, CRDs)."""
    for prefix in prefixes:
        crds: list[dict[str, Any]] = []
        for path in sorted(root.glob(prefix + "*.yaml")):
            try:
                docs = yaml.safe_load_all(_strip_templates(path.read_text(encoding="utf-8")))
                crds += [d for d in docs if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
            except yaml.YAMLError:
                continue
        if crds:
            return prefix, crds
    return "", []


# ------------------------------------------------------------------------------------------- schemas


def strictify(schema: Any, in_combinator: bool = False) -> Any:
    """Strict copy of an OpenAPI (v2 definition or CRD v3) schema node; see module docstring."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, dict):
            out[key] = {k: strictify(v, in_combinator) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = strictify(value, in_combinator)
        elif key == "not":
            out[key] = strictify(value, True)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [strictify(v, True) for v in value]
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string") is True or out.get("format") == "int-or-string":
        out.pop("type", None)
        out.pop("format", None)
        if "anyOf" not in out and "allOf" not in out:
            out["anyOf"] = _INT_OR_STRING
    if (
        "properties" in out
        and "additionalProperties" not in out
        and out.get("x-kubernetes-preserve-unknown-fields") is not True
        and not in_combinator
    ):
        out["additionalProperties"] = False
    if out.pop("nullable", False) is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


def _api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


class SchemaStore:
    """apiVersion/kind -> strict JSON schema, from the Kubernetes OpenAPI definitions plus CRDs."""

    def __init__(self, definitions: Mapping[str, Any], crds: Sequence[Mapping[str, Any]], sources: list[str]):
        self.sources = sources
        defs = {name: strictify(d) for name, d in definitions.items()}
        defs[QUANTITY] = {"anyOf": [{"type": "string", "pattern": QUANTITY_PATTERN}, {"type": "number"}]}
        # generated manifests (kubectl, controller-gen, upstream release YAML) carry creationTimestamp: null
        defs[OBJECT_META]["properties"]["creationTimestamp"] = {"type": ["string", "null"]}
        self._definitions = defs
        self._kinds: dict[tuple[str, str], dict[str, Any]] = {}
        for name, d in definitions.items():
            for gvk in d.get("x-kubernetes-group-version-kind", []):
                key = (_api_version(gvk["group"], gvk["version"]), gvk["kind"])
                self._kinds.setdefault(key, {"$ref": f"#/definitions/{name}"})
        for crd in crds:
            spec = crd["spec"]
            for ver in spec["versions"]:
                if not ver.get("served", True):
                    continue
                schema = strictify(ver["schema"]["openAPIV3Schema"])
                props = schema.setdefault("properties", {})
                meta = props.get("metadata")
                props["metadata"] = {"$ref": f"#/definitions/{OBJECT_META}"}
                if meta and set(meta) - {"type", "description"}:
                    props["metadata"] = {"allOf": [props["metadata"], strictify(meta, True)]}
                self._kinds[(_api_version(spec["group"], ver["name"]), spec["names"]["kind"])] = schema
        self._validators: dict[tuple[str, str], jsonschema.Draft4Validator] = {}

    def kinds(self) -> set[tuple[str, str]]:
        return set(self._kinds)

    def _validator(self, key: tuple[str, str]) -> jsonschema.Draft4Validator:
        if key not in self._validators:
            root = {**self._kinds[key], "definitions": self._definitions}
            self._validators[key] = jsonschema.Draft4Validator(root)
        return self._validators[key]

    def validate(self, obj: Any) -> list[str]:
        """Error messages for one parsed object (empty list: valid)."""
        if not isinstance(obj, dict):
            return [f"document is a {type(obj).__name__}, not a Kubernetes object mapping"]
        api, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api, str) or not isinstance(kind, str):
            return ["apiVersion and kind must be strings"]
        if (api, kind) not in self._kinds:
            return [f"unknown apiVersion/kind {api} {kind} (not in {', '.join(self.sources)})"]
        errors = [
            f"{_path(e.absolute_path)}: {e.message}"
            for e in sorted(self._validator((api, kind)).iter_errors(obj), key=lambda e: list(map(str, e.path)))
        ]
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            errors.append("metadata.name: required")
        return errors


def _path(parts: Iterator[Any] | Sequence[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "<root>"


@cache
def load_store(versions_file: Path = VERSIONS_FILE) -> SchemaStore:
    """Fetch (or reuse from cache) every pinned schema source and build the store."""
    v = read_versions(versions_file)
    k8s = fetch_module(
        "kubernetes", "k8s.io/kubernetes", v["versions_kubernetes"], lambda p: p == "api/openapi-spec/swagger.json"
    )
    swagger = json.loads((k8s / "api/openapi-spec/swagger.json").read_text(encoding="utf-8"))
    sources = [f"kubernetes {v['versions_kubernetes']} swagger.json"]

    metallb_prefixes = ("config/crd/bases/", "charts/metallb/charts/crds/templates/")
    metallb = fetch_module(
        "metallb",
        "go.universe.tf/metallb",
        v["versions_metallb"],
        lambda p: p.endswith(".yaml") and p.startswith(metallb_prefixes),
    )
    used, crds = load_crds(metallb, metallb_prefixes)
    if not crds:
        raise SchemaError(f"no MetalLB CRDs found in go.universe.tf/metallb@{v['versions_metallb']}")
    sources.append(f"metallb {v['versions_metallb']} {used}")

    cm_prefixes = ("deploy/crds/", "deploy/charts/cert-manager/templates/crd-")
    cm_crds: list[dict[str, Any]] = []
    for key in ("versions_cert_manager", "versions_cert_manager_lab"):
        cm = fetch_module(
            "cert-manager",
            "github.com/cert-manager/cert-manager",
            v[key],
            lambda p: p.endswith(".yaml") and p.startswith(cm_prefixes),
        )
        used, cm_crds = load_crds(cm, cm_prefixes)
        if cm_crds:
            sources.append(f"cert-manager {v[key]} {used}")
            break
    if not cm_crds:
        raise SchemaError("no cert-manager CRDs found in the pinned cert-manager modules")
    return SchemaStore(swagger["definitions"], crds + cm_crds, sources)


@dataclass(frozen=True)
class ManifestDoc:
    """One YAML document of a rendered manifest file."""

    file: Path
    index: int
    obj: Any
    error: str | None = None  # set (and obj None) when the file is not valid YAML

    @property
    def label(self) -> str:
        meta = self.obj.get("metadata") if isinstance(self.obj, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        kind = self.obj.get("kind") if isinstance(self.obj, dict) else None
        return f"{self.file.as_posix()}#{self.index}:{kind}/{name}"


def load_manifests(root: Path) -> list[ManifestDoc]:
    """Every document of every ``*.yaml``/``*.yml`` under root (sorted); a file that is not valid
    YAML gives one ManifestDoc carrying the error."""
    docs: list[ManifestDoc] = []
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()):
        rel = path.relative_to(root)
        try:
            objs = load_documents(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            docs.append(ManifestDoc(rel, 0, None, f"invalid YAML: {exc}"))
            continue
        docs.extend(ManifestDoc(rel, index, obj) for index, obj in enumerate(objs))
    return docs
