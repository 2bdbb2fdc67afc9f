"""The end-to-end report: one row per step (step, expected, observed, time, verdict) as JSON and Markdown."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Step:
    step: str
    expected: str
    observed: str
    seconds: float
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, step: str, expected: str, observed: str, seconds: float, ok: bool, **data: Any) -> Step:
        row = Step(step, expected, observed, round(seconds, 1), ok, data)
        self.steps.append(row)
        print(f"e2e: [{'PASS' if ok else 'FAIL'}] {step} ({seconds:.1f}s): {observed}", flush=True)
        return row

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "passed": self.ok,
            "steps": [asdict(s) for s in self.steps],
        }

    def to_markdown(self) -> str:
        doc = self.to_json()
        lines = [
            "# End-to-end report (molecule scenario `e2e`, `make e2e`)",
            "",
            f"Started {doc['started']}, {doc['seconds']} s, result: **{'PASS' if self.ok else 'FAIL'}** "
            f"({sum(s.ok for s in self.steps)}/{len(self.steps)} steps passed).",
            "",
            "| # | step | expected | observed | time (s) | result |",
            "|---|---|---|---|---|---|",
        ]
        for i, s in enumerate(self.steps, 1):
            cells = [str(i), s.step, s.expected, s.observed, f"{s.seconds:.1f}", "pass" if s.ok else "**FAIL**"]
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        (directory / "report.md").write_text(self.to_markdown(), encoding="utf-8")
