"""Declarative types for what a bundle holds: build steps, bin/ entries and images.

A *step* produces files in its own cached directory (a Go build, a static C build, a Debian file tree).
Bin entries and image layers only refer to files of steps, so adding a component is one table entry in
components.py: a step, plus the bin/ files or image that use its output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class PatchedMain:
    """A main package copied from a required module into the wrapper with some lines dropped.

    For a main package that imports something the module proxy cannot serve (e.g. flannel's tencentvpc
    backend): build ``./<dest>`` instead of the original import path.
    """

    module: str
    directory: str  # directory of the package inside the module ("" for the module root)
    dest: str  # directory inside the wrapper; also the binary name
    drop: tuple[str, ...]  # regular expressions; matching lines are removed


@dataclass(frozen=True)
class GoBuild:
    """Build main packages from a generated wrapper module (templates/go.mod.tmpl) in one ``go build``."""

    name: str
    # (module path, version) pairs the wrapper requires.
    requires: tuple[tuple[str, str], ...]
    # Main packages; each binary is named like ``go build -o DIR`` names it (last element, /vN skipped).
    packages: tuple[str, ...]
    # Extra ``-X`` etc. linker flags (``-s -w`` is always added).
    ldflags: tuple[str, ...] = ()
    # Module whose ``replace X => ./local/dir`` lines are re-pointed at published ``X <local_replace_version>``
    # (the Kubernetes staging modules), read from that module's go.mod in the module cache.
    local_replaces_of: str = ""
    local_replace_version: str = ""
    # Explicit replace lines (old => new version), for modules whose go.mod points at forks.
    replaces: tuple[tuple[str, str, str], ...] = ()
    # Binary renames after the build: (name go gave it, name wanted).
    renames: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    cgo: bool = False
    # Main packages to copy into the wrapper and patch; list "./<dest>" in packages to build them.
    patched_mains: tuple[PatchedMain, ...] = ()


@dataclass(frozen=True)
class CBuild:
    """Compile one C file found in a module from the module cache into a static binary."""

    name: str
    module: str
    version: str
    source: str  # path inside the module
    output: str
    cflags: tuple[str, ...] = ()


@dataclass(frozen=True)
class DebTree:
    """A file tree unpacked from Debian packages (``apt-get download`` + ``dpkg-deb -x``), no scripts run.

    The dependency closure of ``packages`` is resolved by apt on the build host; ``exclude`` drops
    packages a container never needs (e.g. debconf). ``symlinks`` stand in for maintainer scripts
    (update-alternatives).
    """

    name: str
    packages: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    symlinks: tuple[tuple[str, str], ...] = ()  # (path in tree, link target)
    drop: tuple[str, ...] = ()  # path prefixes removed from the tree (docs, man pages)


@dataclass(frozen=True)
class CargoInstall:
    """``cargo install <crate> --version <version> --locked`` from crates.io; binaries land in ``bin/``."""

    name: str
    crate: str
    version: str
    binaries: tuple[str, ...]
    # Extra environment (e.g. CARGO_PROFILE_RELEASE_LTO) — part of the step key like every other field.
    env: tuple[tuple[str, str], ...] = ()


Step = Union[GoBuild, CBuild, DebTree, CargoInstall]


@dataclass(frozen=True)
class StepFile:
    """A file produced by a step (path relative to that step's output directory)."""

    step: str
    path: str


@dataclass(frozen=True)
class Entry:
    """One path in an image layer."""

    path: str  # absolute path in the image, e.g. /usr/local/bin/kube-apiserver
    source: StepFile | None = None  # regular file copied from a step
    content: bytes | None = None  # or literal content
    symlink: str = ""  # or a symlink to this target
    mode: int = 0o755  # directories and regular files (literal content defaults should pass 0o644)
    uid: int = 0
    gid: int = 0
    # Extended attributes written as PAX SCHILY.xattr records (e.g. security.capability).
    xattrs: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Layer:
    """Entries, plus optionally a whole step output (a DebTree) at the root."""

    entries: tuple[Entry, ...] = ()
    tree: str = ""  # name of a step whose whole output directory becomes the layer's root


@dataclass(frozen=True)
class Image:
    """An image written as ``images/<file>.tar`` (OCI layout + docker-archive manifest in one tar)."""

    component: str
    repository: str  # e.g. registry.k8s.io/kube-apiserver
    tag: str
    layers: tuple[Layer, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = "/"
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def filename(self) -> str:
        base = self.repository.rsplit("/", 1)[-1]
        return f"{base}_{self.tag}.tar"


@dataclass(frozen=True)
class BinFile:
    """A file in ``bin/`` (dest is relative to bin/, e.g. ``cni/bridge``)."""

    component: str
    dest: str
    source: StepFile


@dataclass(frozen=True)
class Plan:
    """Everything one bundle holds, derived from the pins by components.plan()."""

    versions: tuple[tuple[str, str], ...]  # component -> version, for manifest.json
    steps: tuple[Step, ...]
    bins: tuple[BinFile, ...]
    images: tuple[Image, ...]
    settings: tuple[tuple[str, str], ...] = field(default=())

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step named {name!r}")
