"""Pure logic of the benchmark: quality threshold, step verdicts, medians and spread, A/B order, ramp."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Threshold:
    """When a player counts as OK and when a load step passes.

    A player is OK if it received at least `min_frames_ratio` of the video frames the publisher sent during
    the measurement window (at 25 fps and 0.95: at most one frame in twenty missing, about 0.5 s of picture
    in a 10 s window) and its lag behind live never reached `max_lag_s` (2 s is about the buffer a live
    RTMP/FLV player keeps; beyond it players rebuffer or skip). A step passes if at least `min_ok_share` of
    its players were OK: one or two connection failures in a few hundred do not end the ramp, a systematic
    loss does.
    """

    min_frames_ratio: float = 0.95
    max_lag_s: float = 2.0
    min_ok_share: float = 0.99

    def player_ok(self, frames: int, expected_frames: float, lag_max_s: float, connected: bool = True) -> bool:
        return connected and frames >= self.min_frames_ratio * expected_frames and lag_max_s < self.max_lag_s

    def step_passes(self, ok: int, players: int) -> bool:
        return players > 0 and ok >= self.min_ok_share * players


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Median, min, max and count: what every quoted number carries."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values)),
            "n": len(values)}


def rotation(targets: Sequence[T], index: int) -> list[T]:
    """Order of the targets for run `index`: each target takes each position in turn (alternating A/B)."""
    if not targets:
        return []
    k = index % len(targets)
    return [*targets[k:], *targets[:k]]


def max_passed(steps: Sequence[int], passed: dict[int, bool]) -> int:
    """Largest step reached without a failed step below it (0 if the first step failed or none ran)."""
    best = 0
    for step in sorted(steps):
        if step not in passed:
            break
        if not passed[step]:
            break
        best = step
    return best


@dataclass
class Ramp:
    """Which targets still climb: a target leaves the ramp at the first step whose median verdict fails."""

    steps: list[int]
    repeats: int
    threshold: Threshold

    def step_verdict(self, oks: Sequence[tuple[int, int]]) -> bool:
        """Median verdict of the repeats of one step: passes if most repeats pass."""
        votes = [self.threshold.step_passes(ok, players) for ok, players in oks]
        return bool(votes) and sum(votes) * 2 > len(votes)

    def summarize(self, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Max players of one series (one target and protocol) from its runs.

        runs: dicts with step, repeat, ok, players. Quoted: the median over repeats of each repeat's own max
        (largest step that repeat passed with every lower step passed too); spread: min and max of those.
        """
        by_step: dict[int, list[tuple[int, int]]] = {}
        by_repeat: dict[int, dict[int, bool]] = {}
        for run in runs:
            by_step.setdefault(int(run["step"]), []).append((int(run["ok"]), int(run["players"])))
            by_repeat.setdefault(int(run["repeat"]), {})[int(run["step"])] = self.threshold.step_passes(
                int(run["ok"]), int(run["players"]))
        step_ok = {step: self.step_verdict(oks) for step, oks in by_step.items()}
        per_repeat = [max_passed(self.steps, verdicts) for _, verdicts in sorted(by_repeat.items())]
        top = max(self.steps) if self.steps else 0
        return {
            "max_players_by_step_median": max_passed(self.steps, step_ok),
            "max_players_per_repeat": per_repeat,
            "max_players": spread([float(v) for v in per_repeat]),
            # The ramp's top step passed: the real limit is higher than anything measured.
            "capped_by_ramp": bool(step_ok.get(top, False)),
            "step_verdicts": {str(k): v for k, v in sorted(step_ok.items())},
        }


def cpu_per_player_millicores(cpu_cores: float, idle_cores: float, players: int) -> dict[str, float | None]:
    """Server CPU per player: total (all server CPU divided by players) and marginal (above idle)."""
    if players <= 0:
        return {"total": None, "marginal": None}
    return {"total": 1000.0 * cpu_cores / players, "marginal": 1000.0 * max(cpu_cores - idle_cores, 0.0) / players}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b
