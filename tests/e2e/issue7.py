"""Issue 7 steps (7a-7h) of the end-to-end driver: faults, bad input, hostile requests, access, check mode.

Called by tests/e2e/run.py after its own steps (``make e2e``), or alone with ``--only 7`` / ``--only 7a,7f``:

    7a kill a viewer pod          7e bad input changes nothing   7g access (tokens, ports, NetworkPolicy)
    7b kill the ingest pod        7f hostile requests            7h --check of every playbook
    7c restart by config change   7d stop a node (E2E_NODE_FAULT=1 only; =plan: only say which)

Run alone, the steps publish their own three streams. The installation under test is the lab's, unless the
E2E_XIU_* variables (tests/e2e/target.py) point them at another one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tests.e2e import faults, hostile, media, ops
from tests.e2e.report import Report
from tests.e2e.target import make_target

ORDER: list[tuple[str, Callable[[faults.Section], None]]] = [
    ("7g", hostile.step_publish_refused),
    ("7g", hostile.step_origin_play_refused),
    ("7g", hostile.step_ports),
    ("7g", hostile.step_network_policy),
    ("7f", hostile.step_malformed),
    ("7f", hostile.step_slow_clients),
    ("7f", hostile.step_half_open),
    ("7e", ops.step_bad_input_live),
    ("7h", ops.step_check_mode),
    ("7a", faults.step_kill_viewer_pod),
    ("7b", faults.step_kill_ingest),
    ("7c", faults.step_config_restart),
    ("7d", faults.step_node_stop),
]


# Steps that need the three streams live (7e and 7h only run playbooks and read objects).
NEED_STREAMS = {"7a", "7b", "7c", "7d", "7f", "7g"}


class Ctx(Protocol):
    lab: media.Lab
    inventory: str
    clip: Path
    logs: Path
    report: Report
    publishers: dict[str, media.Publisher]


def alone(only: set[str]) -> bool:
    """Only issue-7 steps were asked for: skip the other steps (and their scale.yml runs)."""
    return bool(only) and all(n.startswith("7") for n in only)


def selected(step: str, want: Callable[[str], bool]) -> bool:
    if step == "7d" and os.environ.get("E2E_NODE_FAULT") not in ("1", "plan"):
        return False
    return want(step) or want("7")


def run(endpoints: Path, ctx: Ctx, want: Callable[[str], bool]) -> None:
    """The issue-7 steps; the driver's publishers are replaced by reconnecting ones for the duration."""
    ids = [step for step, _ in ORDER if selected(step, want)]
    if not ids:
        return
    ep: dict[str, Any] = json.loads(endpoints.read_text(encoding="utf-8"))
    target = make_target(ctx.lab, ep["kubeconfig"], ep["xiu"]["namespace"], ctx.inventory, ctx.clip, ctx.logs, ep)
    for p in ctx.publishers.values():
        p.stop()
    sec = faults.Section(target, ctx.report)
    try:
        if set(ids) & NEED_STREAMS:
            sec.start_publishers()
            time.sleep(3)
        for step, fn in ORDER:
            if step in ids:
                try:
                    fn(sec)
                except Exception as exc:  # noqa: BLE001 - one broken step must not hide the others
                    ctx.report.add(f"{step} {fn.__name__}", "no error", f"{type(exc).__name__}: {exc}", 0, False)
    finally:
        sec.stop()
    if os.environ.get("E2E_NODE_FAULT") not in ("1", "plan") and want("7d"):
        ctx.report.add("7d stop a node", "skipped unless E2E_NODE_FAULT=1", "skipped", 0, True)
