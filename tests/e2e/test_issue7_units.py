"""Pure logic of the issue-7 steps (no lab needed)."""

from __future__ import annotations

import pytest

from tests.e2e import hostile, issue7, media, ops, target, viewers
from tests.e2e.faults import longest_false, pick_node


def test_overrides_and_playbook_args() -> None:
    env = {"E2E_XIU_NAMESPACE": "xiu-faults", "E2E_XIU_INSTANCE": "xiu-faults", "E2E_XIU_DOMAIN": "",
           "E2E_XIU_RTMP_IP": "172.31.250.208"}
    over = target.overrides(env)
    assert over == {"namespace": "xiu-faults", "instance": "xiu-faults", "rtmp_ip": "172.31.250.208"}
    assert target.playbook_args(over) == ["-e", "xiu_namespace=xiu-faults", "-e", "xiu_instance=xiu-faults",
                                          "-e", "xiu_rtmp_load_balancer_ip=172.31.250.208"]
    assert target.playbook_args({}) == []


def watch(gaps: list[tuple[float, float]], last: float) -> media.Watch:
    w = media.Watch("live/a", videos=1)
    w.gaps = gaps
    w.last_video = last
    return w


def test_outage_counts_gaps_after_the_fault_and_open_gaps() -> None:
    ws = [watch([(5.0, 3.0)], 99.5),  # gap before the fault: ignored
          watch([(12.0, 4.5), (20.0, 1.5)], 99.8),  # cut, longest 4.5
          watch([], 90.0)]  # no video since 90: open gap of 10 s at end=100
    o = viewers.outage(ws, since=10.0, end=100.0)
    assert (o.viewers, o.cut, o.longest, o.playing_at_end) == (3, 2, 10.0, 2)
    assert o.median_cut == 10.0
    assert "2/3 viewers without video for up to 10.0s" in o.text("FLV")
    assert viewers.outage([watch([], 99.9)], 10.0, 100.0).text("RTMP").startswith("RTMP: 1 viewers, none")
    moved = watch([], 99.9)
    moved.recoveries = [(50.0, 0.4), (3.0, 9.0)]
    o = viewers.outage([moved], 10.0, 100.0)
    assert (o.cut, o.reconnected, o.longest_recovery) == (0, 1, 0.4)
    assert "1 reconnected (video again within 0.4s)" in o.text("FLV")


def test_outage_counts_a_gap_that_began_just_before_the_fault() -> None:
    # The last frame before the outage arrived 0.3 s before the fault was started.
    o = viewers.outage([watch([(9.7, 6.0)], 99.9)], since=10.0, end=100.0)
    assert (o.cut, o.longest) == (1, 6.0)


def test_a_viewer_that_never_got_video_is_not_playing() -> None:
    # The watchers start with last_video = their start time; without a frame that is not "playing".
    never = media.Watch("live/a", last_video=8.0)
    assert not never.playing(8.5)
    o = viewers.outage([never], since=10.0, end=100.0)
    assert (o.cut, o.longest, o.playing_at_end) == (1, 92.0, 0)
    never.video(8.6, reconnected=False, gap_threshold=1.0)
    assert never.playing(9.0) and not never.playing(10.0)


def test_lost_streams() -> None:
    failures = {"edge-a:live/cam1": "HTTP 404", "edge-b:live/cam1": "closed", "edge-b:news/desk_3": "too slow"}
    assert viewers.lost_streams(["live/cam1", "event/stage-2", "news/desk_3"], failures) == ["live/cam1", "news/desk_3"]
    assert viewers.lost_streams(["live/cam1"], {}) == []


def test_status_of() -> None:
    assert hostile.status_of(b"HTTP/1.1 404 Not Found\r\nX: y\r\n") == "404"
    assert hostile.status_of(b"") == "closed"
    assert hostile.status_of(b"SSH-2.0\r\n").startswith("garbage")


@pytest.mark.parametrize(("may_play", "answer", "ok"), [
    (False, "404", True), (False, "414", True), (False, "505", True), (False, "200", False), (False, "502", False),
    (False, "closed", False), (True, "200", True), (True, "404", True), (True, "503", False),
])
def test_acceptable(may_play: bool, answer: str, ok: bool) -> None:
    assert hostile.acceptable(hostile.Probe("x", "hls", "/", may_play=may_play), answer) is ok


def test_probes_cover_the_crash_shapes_and_are_bounded() -> None:
    probes = hostile.hostile_probes()
    targets = {p.target for p in probes}
    assert "/live/x.m3u8" in targets and "/x.flv/a/b.flv" in targets
    assert len({p.name for p in probes}) == len(probes) >= 20
    lab = media.Lab("i", "r", "g", "hls.example", "flv.example", "ca", "pub", "play")
    sni, raw = hostile.build(probes[1], lab)
    assert sni == "hls.example" and b"token=play" in raw and raw.endswith(b"\r\n\r\n")
    assert max(len(hostile.build(p, lab)[1]) for p in probes) < 80_000


def test_snapshot_diff_uses_generation_when_present() -> None:
    before: ops.Snapshot = {"Deployment/a": ("10", 1), "Service/b": ("11", None), "Secret/c": ("12", None)}
    after: ops.Snapshot = {"Deployment/a": ("99", 1), "Service/b": ("11", None), "Secret/c": ("13", None),
                           "ConfigMap/d": ("14", None)}
    assert ops.diff(before, after) == ["ConfigMap/d", "Secret/c"]
    assert ops.compared(before) == "3 objects (1 by generation, 2 by resourceVersion)"
    assert ops.compared({"HorizontalPodAutoscaler/e": ("spec:ab", None)}) == "1 objects (0 by generation, 0 by " \
        "resourceVersion, 1 by spec)"


def test_pick_node_prefers_the_node_announcing_the_viewer_ip() -> None:
    agents = ["a1", "a2"]
    assert pick_node(agents, "a2", {"a1": 2, "a2": 1}) == "a2"
    assert pick_node(agents, "a1", {"a2": 3}) == "a1"  # the origin is moved there first
    assert pick_node(agents, "server1", {"a1": 1, "a2": 2}) == "a2"
    assert pick_node(agents, "server1", {}) == ""


def test_issue7_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert issue7.alone({"7a", "7f"}) and not issue7.alone({"2", "7a"}) and not issue7.alone(set())
    monkeypatch.delenv("E2E_NODE_FAULT", raising=False)
    assert issue7.selected("7a", lambda n: True)
    assert not issue7.selected("7d", lambda n: True)
    assert issue7.selected("7b", lambda n: n == "7")
    monkeypatch.setenv("E2E_NODE_FAULT", "1")
    assert issue7.selected("7d", lambda n: n == "7d")


def test_longest_false() -> None:
    assert longest_false([(0.0, True), (1.0, False), (2.0, False), (4.5, True), (5.0, False), (6.0, True)]) == 3.5
    assert longest_false([(0.0, True), (1.0, False), (3.0, False)]) == 2.0
    assert longest_false([(0.0, True)]) == 0.0 and longest_false([]) == 0.0
