"""PNG plots of a results file. Runs in the bench venv (matplotlib, bench/requirements.txt):
python -m bench.plots bench/results/<date>.json"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main(path: Path) -> list[Path]:
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    results: dict[str, Any] = json.loads(path.read_text())
    written: list[Path] = []
    cap = results.get("capacity", {})
    runs = cap.get("runs", []) + results.get("scaling", {}).get("runs", [])
    series: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        label = f"{run['target']}/{run['protocol']}"
        if run.get("stage", "capacity") != "capacity":
            label += f" x{run.get('replicas')}"
        series.setdefault(label, []).append(run)

    fig, ax = plt.subplots(figsize=(8, 5))
    top = 0
    for label, mine in sorted(series.items()):
        steps = sorted({int(r["step"]) for r in mine})
        med, lo, hi = [], [], []
        for step in steps:
            oks = sorted(int(r["ok"]) for r in mine if r["step"] == step)
            med.append(oks[len(oks) // 2])
            lo.append(med[-1] - oks[0])
            hi.append(oks[-1] - med[-1])
        top = max(top, *steps)
        ax.errorbar(steps, med, yerr=[lo, hi], marker="o", capsize=3, label=label)
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="all OK")
    ax.set_xlabel("offered players")
    ax.set_ylabel("OK players (median, min-max over repeats)")
    ax.set_title("Viewer capacity")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    out = path.with_name(path.stem + "-capacity.png")
    fig.savefig(out, dpi=100, bbox_inches="tight")
    written.append(out)

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, mine in sorted(series.items()):
        # No point for a run whose server restarted inside the window (negative or missing CPU delta).
        pts = sorted((int(r["step"]), float(r["cpu_per_player_millicores"]["total"])) for r in mine
                     if (r.get("cpu_per_player_millicores") or {}).get("total") is not None
                     and float(r["cpu_per_player_millicores"]["total"]) >= 0)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", linestyle="", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("offered players")
    ax.set_ylabel("server CPU per player (millicores)")
    ax.set_title("Server CPU per player (every run)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    out = path.with_name(path.stem + "-cpu.png")
    fig.savefig(out, dpi=100, bbox_inches="tight")
    written.append(out)
    return written


if __name__ == "__main__":
    for written_path in main(Path(sys.argv[1])):
        print(written_path)
