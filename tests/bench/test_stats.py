"""Pure logic of `make bench`: threshold, step verdicts, ramp summaries, order, CPU per player."""

from __future__ import annotations

from typing import Any

from bench.stats import Ramp, Threshold, cpu_per_player_millicores, max_passed, median, ratio, rotation, spread

TH = Threshold()


def test_player_threshold() -> None:
    assert TH.player_ok(frames=190, expected_frames=200, lag_max_s=0.3)
    assert not TH.player_ok(frames=189, expected_frames=200, lag_max_s=0.3)  # 94.5% of the frames
    assert not TH.player_ok(frames=200, expected_frames=200, lag_max_s=2.0)  # lag must stay below 2 s
    assert not TH.player_ok(frames=200, expected_frames=200, lag_max_s=0.1, connected=False)


def test_step_passes_at_99_percent() -> None:
    assert TH.step_passes(99, 100)
    assert not TH.step_passes(98, 100)
    assert TH.step_passes(594, 600)
    assert not TH.step_passes(0, 0)


def test_rotation_puts_every_target_first_in_turn() -> None:
    targets = ["a", "b", "c"]
    firsts = [rotation(targets, i)[0] for i in range(3)]
    assert sorted(firsts) == targets
    assert rotation(targets, 4) == ["b", "c", "a"]
    assert rotation([], 3) == []


def test_max_passed_stops_at_first_failure() -> None:
    steps = [100, 200, 400, 800]
    assert max_passed(steps, {100: True, 200: True, 400: False, 800: True}) == 200
    assert max_passed(steps, {100: False}) == 0
    assert max_passed(steps, {100: True, 200: True}) == 200  # the ramp left before 400
    assert max_passed(steps, {}) == 0


def runs(table: dict[int, list[int]], players_scale: int = 1) -> list[dict[str, Any]]:
    return [{"step": step, "repeat": rep, "ok": ok, "players": step}
            for step, oks in table.items() for rep, ok in enumerate(oks)]


def test_ramp_summary_medians_and_spread() -> None:
    ramp = Ramp([100, 200, 400], 3, TH)
    summary = ramp.summarize(runs({100: [100, 100, 100], 200: [200, 150, 199], 400: [300, 390, 100]}))
    # repeat 0 passes 200, repeat 1 fails it, repeat 2 passes 200 (199/200 = 99.5%)
    assert summary["max_players_per_repeat"] == [200, 100, 200]
    assert summary["max_players"] == {"median": 200.0, "min": 100.0, "max": 200.0, "n": 3}
    assert summary["max_players_by_step_median"] == 200
    assert summary["step_verdicts"] == {"100": True, "200": True, "400": False}
    assert not summary["capped_by_ramp"]


def test_ramp_capped_when_top_step_passes() -> None:
    ramp = Ramp([100, 200], 1, TH)
    summary = ramp.summarize(runs({100: [100], 200: [200]}))
    assert summary["capped_by_ramp"]
    assert summary["max_players"]["median"] == 200.0


def test_step_verdict_is_majority_of_repeats() -> None:
    ramp = Ramp([100], 3, TH)
    assert ramp.step_verdict([(100, 100), (100, 100), (10, 100)])
    assert not ramp.step_verdict([(100, 100), (10, 100), (10, 100)])
    assert not ramp.step_verdict([])


def test_spread_median_ratio_cpu() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert spread([]) == {"median": None, "min": None, "max": None, "n": 0}
    assert median([1.0, 2.0, 3.0, 10.0]) == 2.5
    assert ratio(90.0, 100.0) == 0.9
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None
    cpu = cpu_per_player_millicores(cpu_cores=0.5, idle_cores=0.1, players=200)
    assert cpu["total"] == 2.5 and abs((cpu["marginal"] or 0) - 2.0) < 1e-9
    assert cpu_per_player_millicores(0.5, 0.0, 0) == {"total": None, "marginal": None}
