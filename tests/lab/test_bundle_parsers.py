"""Pure parsers: go.mod replaces, go directives, wrapper rendering, apt output."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.bundle.debtree import parse_depends, parse_policy
from lab.bundle.gowrap import copy_patched_main, go_directive, ldflags, local_replaces, max_go_directive, render_gomod
from lab.bundle.runner import BuildError
from lab.bundle.spec import GoBuild, PatchedMain

GOMOD = """module k8s.io/kubernetes

go 1.25.0

godebug default=go1.25

require (
	k8s.io/api v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go // comment
	github.com/x/y => github.com/fork/y v1.2.3
)

replace k8s.io/kubectl => ./staging/src/k8s.io/kubectl
replace example.com/z v1.0.0 => ../z
// replace example.com/commented => ./nope
"""


def test_local_replaces_finds_block_and_single_lines() -> None:
    assert local_replaces(GOMOD) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/kubectl", "example.com/z"]


def test_go_directive() -> None:
    assert go_directive(GOMOD) == "1.25.0"
    assert go_directive("module x\n") == "1.22"
    assert max_go_directive(["1.24", "1.26.0", "1.25.0"]) == "1.26.0"
    assert max_go_directive([]) == "1.22"


def test_render_gomod_wrapper() -> None:
    step = GoBuild(
        name="kubernetes",
        requires=(("k8s.io/kubernetes", "v1.35.4"),),
        packages=("k8s.io/kubernetes/cmd/kubeadm",),
        local_replaces_of="k8s.io/kubernetes",
        local_replace_version="v0.35.4",
        replaces=(("github.com/a/b", "github.com/fork/b", "v1.0.1"),),
    )
    text = render_gomod(step, "1.25.0", ["k8s.io/api", "k8s.io/client-go"])
    assert "module streamops.local/bundle/kubernetes" in text
    assert "\ngo 1.25.0\n" in text
    assert "\tk8s.io/kubernetes v1.35.4\n" in text
    assert "\tk8s.io/api => k8s.io/api v0.35.4\n" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.35.4\n" in text
    assert "\tgithub.com/a/b => github.com/fork/b v1.0.1\n" in text


def test_render_gomod_without_replaces_has_no_replace_block() -> None:
    step = GoBuild(name="helm", requires=(("helm.sh/helm/v3", "v3.22.0"),), packages=("helm.sh/helm/v3/cmd/helm",))
    assert "replace" not in render_gomod(step, "1.26.0", []).split("do not edit")[1].split("\n", 2)[2]


def test_ldflags_strip_and_release_time() -> None:
    step = GoBuild(name="k", requires=(), packages=(), ldflags=("-X 'a.buildDate={release_time}'",))
    assert ldflags(step, {"release_time": "2026-04-15T18:01:22Z"}) == "-s -w -X 'a.buildDate=2026-04-15T18:01:22Z'"


DEPENDS = """iptables
  Depends: libc6
  Depends: <libxtables12-virtual>
libc6
  Depends: libgcc-s1
<debconf-2.0>
libgcc-s1
"""

POLICY = """iptables:
  Installed: (none)
  Candidate: 1.8.9-2
  Version table:
     1.8.9-2 500
libc6:
  Installed: 2.36-9+deb12u10
  Candidate: 2.36-9+deb12u13
gone:
  Installed: (none)
  Candidate: (none)
"""


def test_parse_depends_and_policy() -> None:
    assert parse_depends(DEPENDS) == ["iptables", "libc6", "libgcc-s1"]
    assert parse_policy(POLICY) == {"iptables": "1.8.9-2", "libc6": "2.36-9+deb12u13"}


def test_copy_patched_main_drops_lines_and_checks_patterns(tmp_path: Path) -> None:
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "main.go").write_text('package main\n\nimport (\n\t_ "x/backend/a"\n\t_ "x/backend/tencentvpc"\n)\n')
    (mod / "main_test.go").write_text("package main\n")
    patch = PatchedMain(module="x", directory="", dest="flanneld", drop=(r'^\s*_ "x/backend/tencentvpc"\s*$',))
    copy_patched_main(patch, mod, tmp_path / "w")
    assert (tmp_path / "w/flanneld/main.go").read_text() == 'package main\n\nimport (\n\t_ "x/backend/a"\n)\n'
    assert not (tmp_path / "w/flanneld/main_test.go").exists()
    stale = PatchedMain(module="x", directory="", dest="d", drop=("nomatch",))
    with pytest.raises(BuildError, match="matched nothing"):
        copy_patched_main(stale, mod, tmp_path / "w2")
