"""Go builds through generated wrapper modules (see templates/go.mod.tmpl)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from string import Template
from typing import Any

from lab.bundle.runner import BuildError, output, run
from lab.bundle.spec import GoBuild, PatchedMain

TEMPLATE = Path(__file__).resolve().parent / "templates" / "go.mod.tmpl"
MIN_GO_DIRECTIVE = "1.22"
GO_JOBS = "2"  # at most two compile jobs: the build machines have two cores shared with other work

_LOCAL_REPLACE = re.compile(r"^\s*(?:replace\s+)?(\S+)(?:\s+\S+)?\s+=>\s+(\.\.?/\S*)\s*$")
_GO_DIRECTIVE = re.compile(r"^go\s+(\d+(?:\.\d+){1,2})\s*$", re.MULTILINE)


def go_binary() -> str:
    found = shutil.which("go")
    if found:
        return found
    if Path("/usr/local/go/bin/go").exists():
        return "/usr/local/go/bin/go"
    raise BuildError("no `go` in PATH (nor /usr/local/go/bin/go)")


def go_env(cache: Path, cgo: bool = False) -> dict[str, str]:
    """Environment for every go command: caches under <cache>/go, local toolchain only, module mode."""
    env = dict(os.environ)
    env.update(
        GOCACHE=str(cache / "go" / "build"),
        GOMODCACHE=str(cache / "go" / "mod"),
        GOPATH=str(cache / "go" / "path"),
        GOTOOLCHAIN="local",
        GOFLAGS="-mod=mod -buildvcs=false",
        GOWORK="off",
        GO111MODULE="on",
        CGO_ENABLED="1" if cgo else "0",
    )
    go_dir = str(Path(go_binary()).parent)
    if go_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = go_dir + os.pathsep + env.get("PATH", "")
    return env


def go_version(cache: Path) -> str:
    return output([go_binary(), "env", "GOVERSION"], env=go_env(cache)).strip()


def download(cache: Path, module: str, version: str) -> dict[str, Any]:
    """``go mod download -json`` of one module: Dir, GoMod, Info, ..."""
    text = output([go_binary(), "mod", "download", "-json", f"{module}@{version}"], env=go_env(cache), cwd=cache)
    info: dict[str, Any] = json.loads(text)
    if info.get("Error"):
        raise BuildError(f"go mod download {module}@{version}: {info['Error']}")
    return info


def release_time(info: dict[str, Any]) -> str:
    """The module version's publication time from its .info file, e.g. 2026-04-15T18:01:22Z."""
    data = json.loads(Path(info["Info"]).read_text(encoding="utf-8"))
    return str(data["Time"])


def local_replaces(gomod: str) -> list[str]:
    """Modules a go.mod replaces with local directories (``X => ./staging/src/X``), in file order."""
    found: list[str] = []
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        if line.startswith("replace ("):
            in_block = True
            continue
        if in_block and line.strip() == ")":
            in_block = False
            continue
        if not (in_block or line.startswith("replace ")):
            continue
        m = _LOCAL_REPLACE.match(line)
        if m:
            found.append(m.group(1))
    return found


def go_directive(gomod: str) -> str:
    m = _GO_DIRECTIVE.search(gomod)
    return m.group(1) if m else MIN_GO_DIRECTIVE


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def max_go_directive(directives: list[str]) -> str:
    return max([MIN_GO_DIRECTIVE, *directives], key=_version_tuple)


def render_gomod(step: GoBuild, go: str, replaced: list[str]) -> str:
    """The wrapper go.mod for a step; replaced = modules to re-point at local_replace_version."""
    requires = "\n".join(f"\t{m} {v}" for m, v in step.requires)
    lines = [f"\t{m} => {m} {step.local_replace_version}" for m in replaced]
    lines += [f"\t{old} => {new} {ver}" for old, new, ver in step.replaces]
    replaces = "\nreplace (\n" + "\n".join(lines) + "\n)\n" if lines else ""
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        name=step.name, go=go, requires=requires, replaces=replaces
    )


def drop_lines(text: str, patterns: tuple[str, ...]) -> str:
    """text without the lines matching any of the patterns."""
    rxs = [re.compile(p) for p in patterns]
    return "".join(line for line in text.splitlines(keepends=True) if not any(rx.search(line) for rx in rxs))


def copy_patched_main(patch: PatchedMain, module_dir: Path, workdir: Path) -> None:
    """Copy the package's non-test Go files into workdir/<dest>, dropping matching lines.

    Every pattern must match somewhere: a pattern that stopped matching means upstream changed.
    """
    files = sorted(p for p in (module_dir / patch.directory).glob("*.go") if not p.name.endswith("_test.go"))
    if not files:
        raise BuildError(f"{patch.module}: no Go files in {patch.directory or '.'}")
    texts = {f.name: f.read_text(encoding="utf-8") for f in files}
    unused = [d for d in patch.drop if not any(re.search(d, t, re.MULTILINE) for t in texts.values())]
    if unused:
        raise BuildError(f"{patch.module}/{patch.directory}: patch patterns {unused} matched nothing")
    dest = workdir / patch.dest
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (dest / name).write_text(drop_lines(text, patch.drop), encoding="utf-8")


def ldflags(step: GoBuild, substitutions: dict[str, str]) -> str:
    flags = ["-s", "-w", *step.ldflags]
    return " ".join(f.replace("{release_time}", substitutions.get("release_time", "")) for f in flags)


def build(step: GoBuild, cache: Path, workdir: Path, outdir: Path, log: Path) -> None:
    """Generate the wrapper in workdir and build all of step.packages into outdir with one go build."""
    infos = [download(cache, m, v) for m, v in step.requires]
    gomods = [Path(i["GoMod"]).read_text(encoding="utf-8") for i in infos]
    replaced: list[str] = []
    if step.local_replaces_of:
        idx = [m for m, _ in step.requires].index(step.local_replaces_of)
        replaced = local_replaces(gomods[idx])
        if not replaced:
            raise BuildError(f"{step.local_replaces_of}: no local replace lines found in its go.mod")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "go.mod").write_text(render_gomod(step, max_go_directive([go_directive(t) for t in gomods]), replaced))
    dirs = {m: Path(i["Dir"]) for (m, _), i in zip(step.requires, infos)}
    for patch in step.patched_mains:
        copy_patched_main(patch, dirs[patch.module], workdir)
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [go_binary(), "build", "-p", GO_JOBS, "-trimpath"]
    if step.tags:
        cmd += ["-tags", ",".join(step.tags)]
    cmd += ["-ldflags", ldflags(step, {"release_time": release_time(infos[0])}), "-o", str(outdir) + "/"]
    run([*cmd, *step.packages], log=log, cwd=workdir, env=go_env(cache, step.cgo))
    for old, new in step.renames:
        (outdir / old).replace(outdir / new)
