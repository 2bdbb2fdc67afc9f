"""Build a bundle: run (or reuse) every step, then assemble bin/, images/ and manifest.json."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from lab.bundle import cargo, cbuild, debtree, gowrap, imagetar
from lab.bundle.keys import bundle_key, step_key
from lab.bundle.manifest import MANIFEST, build_manifest, write_manifest
from lab.bundle.runner import BuildError
from lab.bundle.spec import CargoInstall, CBuild, DebTree, GoBuild, Plan, Step, StepFile

DONE = ".done"


def default_cache() -> Path:
    return Path(os.environ.get("STREAMOPS_CACHE") or Path.home() / ".cache" / "streamops-xiu")


@dataclass
class Cache:
    """Paths under the cache root: go/{build,mod,path}, bundle/<key>/, bundle/steps/, bundle/logs/."""

    root: Path

    @property
    def bundles(self) -> Path:
        return self.root / "bundle"

    def bundle(self, key: str) -> Path:
        return self.bundles / key

    def step_dir(self, name: str, key: str) -> Path:
        return self.bundles / "steps" / f"{name}-{key}"

    @property
    def debs(self) -> Path:
        return self.bundles / "debs"

    @property
    def logs(self) -> Path:
        return self.bundles / "logs"


@dataclass
class Report:
    key: str = ""
    path: Path | None = None
    reused: bool = False
    timings: list[tuple[str, float, bool]] = field(default_factory=list)  # (what, seconds, cached)
    log: Path | None = None


def toolchains(plan: Plan, cache: Cache) -> dict[str, str]:
    """Identity of every tool whose output lands in the bundle (part of the bundle key)."""
    found: dict[str, str] = {}
    if any(isinstance(s, GoBuild) for s in plan.steps):
        found["go"] = gowrap.go_version(cache.root)
    if any(isinstance(s, CBuild) for s in plan.steps):
        found["cc"] = cbuild.toolchain()
    if any(isinstance(s, CargoInstall) for s in plan.steps):
        found["cargo"] = cargo.toolchain()
    for s in plan.steps:
        if isinstance(s, DebTree):
            found[f"deb:{s.name}"] = debtree.toolchain(s, cache.bundles / "apt-resolved.json")
    return found


def _step_toolchain(step: Step, tools: dict[str, str]) -> str:
    if isinstance(step, GoBuild):
        return tools["go"]
    if isinstance(step, CBuild):
        return tools["cc"]
    if isinstance(step, CargoInstall):
        return tools["cargo"]
    return tools[f"deb:{step.name}"]


_KUBEADM_CONSTANTS = {
    "etcd": re.compile(r'DefaultEtcdVersion\s*=\s*"([^"]+)"'),
    "coredns": re.compile(r'CoreDNSVersion\s*=\s*"([^"]+)"'),
    "pause": re.compile(r'PauseVersion\s*=\s*"([^"]+)"'),
}


def kubeadm_expectations(constants_go: str) -> dict[str, str]:
    """Image tags kubeadm defaults to, from cmd/kubeadm/app/constants/constants.go."""
    found: dict[str, str] = {}
    for name, pattern in _KUBEADM_CONSTANTS.items():
        m = pattern.search(constants_go)
        if m:
            found[name] = m.group(1)
    return found


def check_kubeadm_tags(plan: Plan, cache: Cache) -> None:
    """Fail early when a pinned etcd/CoreDNS/pause tag is not the one kubeadm would ask for."""
    versions = dict(plan.versions)
    info = gowrap.download(cache.root, "k8s.io/kubernetes", versions["kubernetes"])
    text = (Path(info["Dir"]) / "cmd/kubeadm/app/constants/constants.go").read_text(encoding="utf-8")
    wrong = [
        f"versions_{name} is {versions[name]!r} but kubeadm {versions['kubernetes']} expects {want!r}"
        for name, want in kubeadm_expectations(text).items()
        if name in versions and versions[name] != want
    ]
    if wrong:
        raise BuildError("; ".join(wrong) + " (images would not match kubeadm's references and get pulled)")


def _run_step(step: Step, cache: Cache, key: str, log: Path) -> Path:
    final = cache.step_dir(step.name, key)
    out = final / "out"
    if (final / DONE).exists():
        return out
    work = final.with_name(final.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if isinstance(step, GoBuild):
        gowrap.build(step, cache.root, work / "wrapper", work / "out", log)
    elif isinstance(step, CBuild):
        cbuild.build(step, cache.root, work / "out", log)
    elif isinstance(step, CargoInstall):
        cargo.build(step, cache.root, work / "out", log)
    else:
        debtree.build(step, cache.debs, work / "out", log)
    (work / DONE).write_text(key + "\n")
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    return out


@contextmanager
def _locked(cache: Cache) -> Iterator[None]:
    cache.bundles.mkdir(parents=True, exist_ok=True)
    with open(cache.bundles / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(plan: Plan, cache: Cache, say: Callable[[str], None] = print) -> Report:
    report = Report()
    t0 = time.monotonic()
    with _locked(cache):
        tools = toolchains(plan, cache)
        report.key = bundle_key(plan, tools)
        dest = cache.bundle(report.key)
        report.path = dest
        if (dest / MANIFEST).exists():
            report.reused = True
            report.timings.append(("check", time.monotonic() - t0, True))
            return report
        cache.logs.mkdir(parents=True, exist_ok=True)
        log = cache.logs / f"{time.strftime('%Y%m%dT%H%M%S')}-{report.key}.log"
        report.log = log
        say(f"bundle {report.key}: building (log: {log})")
        check_kubeadm_tags(plan, cache)
        outputs: dict[str, Path] = {}
        for step in plan.steps:
            key = step_key(step, _step_toolchain(step, tools))
            cached = (cache.step_dir(step.name, key) / DONE).exists()
            started = time.monotonic()
            say(f"  step {step.name} ({'cached' if cached else 'building'})")
            outputs[step.name] = _run_step(step, cache, key, log)
            report.timings.append((f"step {step.name}", time.monotonic() - started, cached))
        started = time.monotonic()
        _assemble(plan, cache, dest, outputs, tools, report.key)
        report.timings.append(("assemble", time.monotonic() - started, False))
    return report


def _resolver(outputs: dict[str, Path]) -> Callable[[StepFile], Path]:
    def resolve(ref: StepFile) -> Path:
        path = outputs[ref.step] / ref.path
        if not path.is_file():
            raise BuildError(f"step {ref.step} produced no {ref.path}")
        return path

    return resolve


def _assemble(plan: Plan, cache: Cache, dest: Path, outputs: dict[str, Path], tools: dict[str, str], key: str) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    (tmp / "images").mkdir()
    resolve = _resolver(outputs)
    for b in plan.bins:
        target = tmp / "bin" / b.dest
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(str(resolve(b.source)), str(target))
        target.chmod(0o755)
    scratch = tmp / ".layers"
    scratch.mkdir()
    images: list[dict[str, str]] = []
    for image in plan.images:
        blobs = []
        for i, layer in enumerate(image.layers):
            items = imagetar.layer_items(layer, resolve, lambda name: outputs[name])
            blobs.append(imagetar.write_layer(items, scratch / f"layer-{i}.tar"))
        file = tmp / "images" / image.filename
        digest = imagetar.write_image(image, blobs, file)
        images.append(
            {"file": f"images/{image.filename}", "ref": image.ref, "component": image.component, "manifest_digest": digest}
        )
        for blob in blobs:
            blob.path.unlink(missing_ok=True)
    shutil.rmtree(scratch)
    manifest = build_manifest(tmp, key, dict(plan.versions), dict(plan.settings), images, tools)
    write_manifest(tmp, manifest)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def prune(plan: Plan, cache: Cache) -> list[Path]:
    """Remove bundles and step outputs the current plan does not use (Go caches are left alone)."""
    tools = toolchains(plan, cache)
    keep = {cache.bundle(bundle_key(plan, tools))}
    keep |= {cache.step_dir(s.name, step_key(s, _step_toolchain(s, tools))) for s in plan.steps}
    candidates = [p for p in cache.bundles.glob("*") if p.is_dir() and re.fullmatch(r"[0-9a-f]{16}(\.tmp)?", p.name)]
    candidates += [p for p in (cache.bundles / "steps").glob("*") if p.is_dir()]
    removed = sorted(p for p in candidates if p not in keep)
    with _locked(cache):
        for p in removed:
            shutil.rmtree(p)
    return removed


def _link_or_copy(src: str, dest: str) -> str:
    """Hard link (same file system, no extra space) or copy; bundle files are never modified in place."""
    try:
        os.link(src, dest)
        return dest
    except OSError:
        return str(shutil.copy2(src, dest))


def export(src: Path, dest: Path) -> None:
    """Make dest a copy of the bundle at src (hard links where possible); no-op when already the same key."""
    if (dest / MANIFEST).exists() and (dest / MANIFEST).read_bytes() == (src / MANIFEST).read_bytes():
        return
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=_link_or_copy)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
