"""Cross-reference checks over the whole rendered set (see crossrefs.py for what each one checks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.k8s_schemas import ManifestDoc

from .crossrefs import CHECKS, ref


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_crossrefs(check: str, rendered_set: list[ManifestDoc], manifests_root: Path) -> None:
    if not rendered_set:
        pytest.fail(f"no rendered manifests (*.yaml) under {manifests_root}: run `make render` first")
    files = {ref(d.obj): d.file.as_posix() for d in rendered_set}
    errors = [f"{e}  [{files.get(e.split(': ', 1)[0], '?')}]" for e in CHECKS[check]([d.obj for d in rendered_set])]
    assert not errors, f"{check}: {CHECKS[check].__doc__}\n  " + "\n  ".join(errors)
