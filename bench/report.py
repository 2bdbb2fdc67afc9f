"""Markdown tables from a results file (stdlib only, so the main venv can write them)."""

from __future__ import annotations

import re

from typing import Any


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def med_range(s: dict[str, Any] | None, digits: int = 1) -> str:
    if not s or s.get("median") is None:
        return "n/a"
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}-{fmt(s['max'], digits)}, n={s['n']})"


def markdown(results: dict[str, Any], date: str) -> str:
    env = results.get("environment", {})
    cfg = env.get("config", {})
    lines = [f"# xiu benchmark {date}", "",
             f"Machine: {env.get('cpu_model')} x {env.get('cores')} cores, {env.get('memory_gib')} GiB; "
             f"{env.get('xiu')}; {env.get('nginx')}; commit {env.get('git_commit', '')[:10]}.",
             f"Workload: {cfg.get('publishers')} publishers of a pre-encoded ~1.5 Mb/s clip (-c copy); players "
             f"connect over {cfg.get('ramp_s')} s, {cfg.get('warmup_s')} s warm-up, {cfg.get('window_s')} s window; "
             f"{cfg.get('repeats')} repeats per step, targets alternated. Elapsed {results.get('elapsed_s')} s.", ""]
    cap = results.get("capacity")
    if cap:
        th = cap.get("threshold", {})
        lines += ["## Viewer capacity", "",
                  f"A player is OK with >= {th.get('min_frames_ratio', 0) * 100:.0f}% of the expected video frames in "
                  f"the window and lag behind live < {th.get('max_lag_s')} s; a step passes with >= "
                  f"{th.get('min_ok_share', 0) * 100:.0f}% OK players. Max players: median over repeats (min-max).",
                  "", "| target / protocol | max players | capped by ramp | server CPU at max (cores) | "
                  "CPU per player, total (millicores) | CPU per player, above idle | kernel share of server CPU |",
                  "|---|---|---|---|---|---|---|"]
        for key, s in cap.get("summary", {}).items():
            cpp = s.get("cpu_per_player_millicores_at_max", {})
            lines.append(f"| {key} | {med_range(s.get('max_players'), 0)} | {'yes' if s.get('capped_by_ramp') else 'no'}"
                         f" | {med_range(s.get('server_cpu_cores_at_max'), 2)} | {med_range(cpp.get('total'), 2)} | "
                         f"{med_range(cpp.get('marginal'), 2)} | {med_range(s.get('server_system_share_at_max'), 2)} |")
        for proto, r in cap.get("ratio_public_direct", {}).items():
            lines.append("")
            lines.append(f"Ratio public path / direct ({proto}): {fmt(r.get('median_of_max'), 2)}"
                         f"{' (both capped by the ramp: a lower bound of nothing, see notes)' if r.get('capped') else ''}")
        lines += ["", "OK share per step (median, min-max):", "",
                  "| target / protocol | " + " | ".join(str(s) for s in cfg.get("steps", [])) + " |",
                  "|---|" + "---|" * len(cfg.get("steps", []))]
        for key, s in cap.get("summary", {}).items():
            row = [med_range(s.get("ok_share_by_step", {}).get(str(step)), 3) for step in cfg.get("steps", [])]
            lines.append(f"| {key} | " + " | ".join(row) + " |")
        lines.append("")
    tt = results.get("ttfp")
    if tt:
        lines += ["## Time to first playable (s after the publish starts; median, min-max)", "",
                  "| target / protocol | seconds | failed |", "|---|---|---|"]
        for key, s in tt.get("summary", {}).items():
            lines.append(f"| {key} | {med_range(s, 2)} | {s.get('failed')} |")
        lines.append("")
    sc = results.get("scaling")
    if sc:
        lines += ["## Scaling curve (public path, RTMP)", "", "| replicas | max players | viewers per replica |",
                  "|---|---|---|"]
        for replicas, s in sorted(sc.get("curve", {}).items()):
            lines.append(f"| {replicas} | {med_range(s.get('max_players'), 0)}"
                         f"{' (capped by ramp)' if s.get('capped_by_ramp') else ''} | "
                         f"{fmt(s.get('viewers_per_replica'), 0)} |")
        lines.append("")
    ops = results.get("ops")
    if ops:
        lines += ["## Operations", "", "| operation | result |", "|---|---|"]
        for key, value in ops.items():
            if isinstance(value, dict) and "seconds" in value:
                text = f"{value['seconds']} s (changed={changed_of(value)})"
            elif isinstance(value, dict) and key == "hpa":
                text = (f"{value.get('players')} players: HPA wants >1 replica after "
                        f"{fmt(value.get('desired_above_1_after_s'))} s, 2nd replica Ready after "
                        f"{fmt(value.get('second_replica_ready_after_s'))} s")
            else:
                text = fmt(value)
            lines.append(f"| {key} | {text} |")
        lines.append("")
    for i, inv in enumerate(results.get("invocations") or []):
        lines += [f"Earlier invocation {i + 1} merged into this file: started {inv.get('started')}, stages "
                  f"{', '.join(inv.get('stages_run') or ['not recorded'])}, {inv.get('elapsed_s')} s."]
        lines += [f"- skipped {k}: {v}" for k, v in (inv.get("skipped") or {}).items()]
        lines += [f"- error: {e}" for e in inv.get("errors") or []]
        restarts = inv.get("publisher_restarts") or {}
        if restarts.get("count"):
            lines.append(f"- publisher restarts: {restarts['count']} (first at {restarts['first'][0].get('at')}, "
                         f"{restarts['first'][0].get('url')})")
        lines.append("")
    restarts = results.get("publisher_restarts") or {}
    if isinstance(restarts, dict) and restarts.get("count"):
        lines += [f"Publisher restarts in this invocation: {restarts['count']}.", ""]
    if results.get("skipped") or results.get("errors"):
        lines += ["## Skipped and errors", ""]
        lines += [f"- skipped {k}: {v}" for k, v in results.get("skipped", {}).items()]
        lines += [f"- error: {e}" for e in results.get("errors", [])]
        lines.append("")
    return "\n".join(lines)


def changed_of(run: dict[str, Any]) -> Any:
    """A playbook run's changed count: recorded directly, or summed over the hosts of its PLAY RECAP lines."""
    if run.get("changed") is not None:
        return run["changed"]
    counts = [int(m.group(1)) for line in run.get("recap") or [] if (m := re.search(r"\bchanged=(\d+)", line))]
    return sum(counts) if counts else None
