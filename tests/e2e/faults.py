"""Issue 7, faults while streams play (steps 7a-7d).

For every fault: FLV viewers through the ingress and RTMP viewers through the viewer LoadBalancer keep
watching (reconnecting at once, like players), the publishers reconnect like encoders (LoopPublisher), and
the figure is the time from the fault until every stream plays again over HTTP-FLV from every replica
(each edge asked directly through the API server's pod proxy), plus the streams lost (goal 0) and what the
viewers saw.

7d stops a node container (E2E_NODE_FAULT=1; =plan only says which): the worst single node, the one that
announces the viewer LoadBalancer IP, with an edge on it and the origin moved there first. It disturbs
everything on the lab, so it runs last.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubernetes import client

from tests.e2e.cluster import ORIGIN_SELECTOR
from tests.e2e.report import Report
from tests.e2e.target import LoopPublisher, Target
from tests.e2e.viewers import Recovery, Viewers, lost_streams, outage, wait_recovered

STREAMS = ["live/cam1", "event/stage-2", "news/desk_3"]
RECOVERY_TIMEOUT = 180.0
# Node loss: ~50 s until the node is NotReady, the tolerations (10 s origin, 30 s edges and CoreDNS with the
# roles' defaults), the new pods' start and sync. Measured 77-113 s; Kubernetes' default tolerations (300 s)
# would take 6-7 minutes and fail the step.
NODE_RECOVERY_TIMEOUT = 180.0


class Section:
    """Publishers and figures shared by the fault steps."""

    def __init__(self, target: Target, report: Report) -> None:
        self.t = target
        self.report = report
        self.publishers: dict[str, LoopPublisher] = {}

    @property
    def inst(self) -> Any:
        return self.t.cluster

    def start_publishers(self) -> float:
        """Publish STREAMS with the token; seconds until the origin holds all of them."""
        started = time.monotonic()
        for s in STREAMS:
            self.publishers[s] = LoopPublisher(self.t.clip, self.t.lab.publish_url(s, self.t.lab.publish_token),
                                               self.t.logs / f"7-publish-{s.replace('/', '_')}.log")
        while time.monotonic() - started < 60:
            try:
                if set(STREAMS) <= set(self.inst.streams_on(self.inst.origin_pod())):
                    return time.monotonic() - started
            except Exception:  # noqa: BLE001 - the origin may be restarting
                pass
            time.sleep(0.5)
        raise TimeoutError("the origin did not get the 3 streams within 60 s")

    def stop(self) -> None:
        for p in self.publishers.values():
            p.stop()

    def replicas(self) -> int:
        return int(self.inst.edge_deployment().spec.replicas)

    def baseline(self, replicas: int) -> Recovery:
        return wait_recovered(self.inst, STREAMS, self.t.lab.play_token, replicas, time.monotonic(), 90)

    def reconnects(self) -> int:
        return sum(p.reconnects for p in self.publishers.values())

    def fault(self, step: str, expected: str, replicas: int, act: Callable[[], str],
              settled: Callable[[float], str], exclude: Callable[[], frozenset[str]] = frozenset,
              after: Callable[[], str] = lambda: "", timeout: float = RECOVERY_TIMEOUT) -> None:
        """Viewers on; baseline; act(); wait until settled and every stream plays from every replica."""
        base = self.baseline(replicas)
        viewers = Viewers(self.t.lab, STREAMS)
        playing = viewers.wait_playing(30)
        restarts_before = self.inst.restart_total()
        pub_before = self.reconnects()
        time.sleep(2)
        since = time.monotonic()
        ingest = OriginWatch(self.inst)
        what = act()
        rec = wait_recovered(self.inst, STREAMS, self.t.lab.play_token, None, since, timeout,
                             settled=lambda: settled(since), exclude_nodes=exclude)
        time.sleep(5)  # viewers that reconnect get the chance to show it
        end = viewers.finish()
        ingest_gap = ingest.finish()
        extra = after()
        timeline = {"since": since, "end": end, "viewers": [
            {"kind": kind, "stream": w.stream, "gaps": w.gaps, "recoveries": w.recoveries, "errors": w.errors[-20:]}
            for kind, ws in (("flv", viewers.flv), ("rtmp", viewers.rtmp)) for w in ws]}
        slug = "".join(c if c.isalnum() else "-" for c in step.split(" (")[0])[:60]
        (self.t.logs / f"{slug}.json").write_text(json.dumps(timeline, indent=1), encoding="utf-8")
        flv = outage(viewers.flv, since, end)
        rtmp = outage(viewers.rtmp, since, end)
        lost = lost_streams(STREAMS, rec.failures) if rec.seconds is None else []
        gone = sorted({w.stream for w in viewers.all if end - w.last_video >= 3})
        lost = sorted(set(lost) | set(gone))
        now = self.replicas()
        observed = (f"{what}; every stream played from all {now} replicas"
                    + (f" (the HPA had raised {replicas} to {now})" if now != replicas else "") + " again after "
                    + (f"{rec.seconds:.1f}s" if rec.seconds is not None else f"NEVER ({rec.detail})")
                    + f"; streams lost: {len(lost)}{' ' + str(lost) if lost else ''}; {flv.text('FLV')}; "
                    + f"{rtmp.text('RTMP')}; ingest without all 3 streams for {ingest_gap:.1f}s; publisher "
                    + f"connection attempts: {self.reconnects() - pub_before}"
                    + (f"; {extra}" if extra else ""))
        if base.seconds is None or not playing:
            observed = f"baseline not reached ({base.detail}, viewers playing: {playing}); " + observed
        ok = (base.seconds is not None and playing and rec.seconds is not None and not lost
              and flv.playing_at_end == flv.viewers and rtmp.playing_at_end == rtmp.viewers)
        self.report.add(step, expected, observed, time.monotonic() - since, ok,
                        recovery_s=rec.seconds, streams_lost=lost, ingest_gap_s=ingest_gap, flv=flv.__dict__, rtmp=rtmp.__dict__,
                        restarts_before=restarts_before, restarts_after=self.inst.restart_total())


class OriginWatch:
    """Samples (every 0.5 s) whether a ready origin holds every stream; the longest stretch it did not."""

    def __init__(self, inst: Any) -> None:
        self.inst = inst
        self.samples: list[tuple[float, bool]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _has_all(self) -> bool:
        try:
            pods = [p for p in self.inst.pods(ORIGIN_SELECTOR)
                    if self.inst.ready(p)]
            return any(set(STREAMS) <= set(self.inst.streams_on(p.metadata.name)) for p in pods)
        except Exception:  # noqa: BLE001 - an origin going away is a "no"
            return False

    def _run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.monotonic(), self._has_all()))
            self.done.wait(0.5)

    def finish(self) -> float:
        self.done.set()
        self.thread.join(timeout=10)
        return longest_false(self.samples)


def longest_false(samples: list[tuple[float, bool]]) -> float:
    """Longest time between the first False sample of a run and the next True sample (or the last sample)."""
    longest, began = 0.0, None
    for t, ok in samples:
        if not ok and began is None:
            began = t
        elif ok and began is not None:
            longest, began = max(longest, t - began), None
    if began is not None and samples:
        longest = max(longest, samples[-1][0] - began)
    return longest


def force_delete(inst: Any, pod: str) -> None:
    inst.core.delete_namespaced_pod(pod, inst.ns, body=client.V1DeleteOptions(grace_period_seconds=0))


# ----------------------------------------------------------------------------------------------- 7a


def step_kill_viewer_pod(sec: Section) -> None:
    replicas = sec.replicas()
    victim: dict[str, str] = {}

    def act() -> str:
        counts = {pod: sum(sum(c.values()) for c in streams.values())
                  for pod, streams in sec.inst.counts_by_edge().items()}
        name = max(counts, key=lambda k: counts[k])
        victim["name"] = name
        force_delete(sec.inst, name)
        return f"force-deleted edge {name} (grace 0; {counts[name]} subscribers on it, {counts})"

    def settled(_: float) -> str:
        names = {p.metadata.name for p in sec.inst.pods()}
        return "victim still listed" if victim["name"] in names else ""

    sec.fault("7a kill a viewer pod (force delete, grace 0) while 9 viewers play",
              "its viewers reconnect to the other edge(s); a replacement edge joins; every stream plays from every "
              "replica again; 0 streams lost", replicas, act, settled)


# ----------------------------------------------------------------------------------------------- 7b


def step_kill_ingest(sec: Section) -> None:
    replicas = sec.replicas()
    old: dict[str, Any] = {}
    marks: dict[str, float] = {}

    def act() -> str:
        old["name"] = sec.inst.origin_pod()
        old["reconnects"] = sec.reconnects()
        force_delete(sec.inst, old["name"])
        return f"force-deleted the origin {old['name']} with 3 publishers live"

    def settled(since: float) -> str:
        pods = [p for p in sec.inst.pods(ORIGIN_SELECTOR)
                if p.metadata.name != old["name"]]
        if not pods or not sec.inst.ready(pods[0]):
            return "no new ready origin"
        marks.setdefault("origin_ready", time.monotonic() - since)
        try:
            held = set(sec.inst.streams_on(pods[0].metadata.name))
        except Exception:  # noqa: BLE001
            return "new origin API not answering"
        if not set(STREAMS) <= held:
            return f"new origin holds {sorted(held)}"
        marks.setdefault("origin_streams", time.monotonic() - since)
        return ""

    def after() -> str:
        return (f"new origin ready after {marks.get('origin_ready', -1):.1f}s, holding all 3 republished streams "
                f"after {marks.get('origin_streams', -1):.1f}s")

    sec.fault("7b kill the ingest (origin) pod while publishers are live",
              "publishers reconnect by themselves; edges re-pull every stream without manual action; every stream "
              "plays from every replica again; 0 streams lost", replicas, act, settled, after=after)


# ----------------------------------------------------------------------------------------------- 7c


def rolled_out(dep: Any) -> bool:
    st = dep.status
    want = dep.spec.replicas
    return bool(st.observed_generation == dep.metadata.generation and st.updated_replicas == want
                and st.ready_replicas == want and (st.replicas or 0) == want)


def step_config_restart(sec: Section) -> None:
    """A config change (xiu_log_level) rolls both tiers; then the default is restored (rolls again)."""
    replicas = sec.replicas()
    for label, extra in (("xiu_log_level=error", ["-e", "xiu_log_level=error"]), ("back to the default", [])):
        state: dict[str, Any] = {}

        def act(extra: list[str] = extra) -> str:
            state["uids"] = {p.metadata.uid for p in sec.inst.all_xiu_pods()}
            run: dict[str, Any] = {}
            thread = threading.Thread(target=lambda: run.setdefault("r", sec.t.playbook("playbooks/xiu.yml", *extra)))
            thread.start()
            state["thread"], state["run"] = thread, run
            return f"xiu.yml {' '.join(extra) or '(defaults)'} started"

        def settled(since: float) -> str:
            if state["thread"].is_alive():
                return "playbook running"
            r = state["run"]["r"]
            state.setdefault("playbook_s", time.monotonic() - since)
            if r.rc != 0:
                return f"playbook failed: {r.output[-300:]}"
            deps = [sec.inst.apps.read_namespaced_deployment(sec.inst.name(t), sec.inst.ns) for t in ("origin", "edge")]
            if not all(rolled_out(d) for d in deps):
                return "rollout in progress"
            pods = sec.inst.all_xiu_pods()
            if {p.metadata.uid for p in pods} & state["uids"]:
                return "old pods still present"
            return ""

        def after() -> str:
            r = state["run"].get("r")
            return (f"playbook exit {r.rc if r else '?'}, changed={r.changed if r else '?'}, "
                    f"returned after {state.get('playbook_s', -1):.0f}s; all pods replaced")

        sec.fault(f"7c restart by a config change: xiu.yml -e {label}" if extra else f"7c restore the config ({label})",
                  "both tiers roll (origin Recreate, edges surge 1); publishers and viewers reconnect; every stream "
                  "plays from every replica again; 0 streams lost", replicas, act, settled, after=after)


# ----------------------------------------------------------------------------------------------- 7d


def l2_node(inst: Any, service: str, namespace: str = "") -> str:
    """The node MetalLB (layer 2) announces a Service's IP from (ServiceL2Status), "" if none."""
    co = client.CustomObjectsApi(inst.api)
    found: Any = co.list_namespaced_custom_object(
        "metallb.io", "v1beta1", "metallb-system", "servicel2statuses",
        label_selector=f"metallb.io/service-name={service},metallb.io/service-namespace={namespace or inst.ns}")
    items = found["items"]
    return str(items[0]["status"]["node"]) if items else ""


def pods_per_node(pods: list[Any]) -> dict[str, int]:
    """How many of `pods` run on each node."""
    return dict(Counter(p.spec.node_name for p in pods))


def pick_node(agents: list[str], rtmp_node: str, hosting: dict[str, int]) -> str:
    """The agent node to stop: the one announcing the viewer IP, else the agent with the most xiu pods."""
    if rtmp_node in agents:
        return rtmp_node
    busy = sorted((n for n in agents if hosting.get(n, 0) > 0), key=lambda n: -hosting[n])
    return busy[0] if busy else ""


def colocate_origin(inst: Any, node: str, agents: list[str], timeout: float = 120) -> str:
    """Move the origin onto `node` (the other agents cordoned while it is recreated there), so that stopping
    `node` loses the origin, an edge and the LoadBalancer IPs at once: the worst single node. "" when done."""
    if any(p.spec.node_name == node for p in inst.pods(ORIGIN_SELECTOR)):
        return ""
    others = [n for n in agents if n != node]
    for n in others:
        inst.core.patch_node(n, {"spec": {"unschedulable": True}})
    try:
        for p in inst.pods(ORIGIN_SELECTOR):
            inst.core.delete_namespaced_pod(p.metadata.name, inst.ns)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = inst.pods(ORIGIN_SELECTOR)
            if pods and all(p.spec.node_name == node and inst.ready(p) for p in pods):
                return ""
            time.sleep(1)
        return f"the origin was not ready on {node} within {timeout:.0f}s"
    finally:
        for n in others:
            inst.core.patch_node(n, {"spec": {"unschedulable": None}})


def node_ready(inst: Any, node: str) -> bool:
    n = inst.core.read_node(node)
    return any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])


def step_node_stop(sec: Section) -> None:
    replicas = sec.replicas()
    inst = sec.inst
    agents = [n["name"] for n in sec.t.endpoints.get("nodes", []) if n.get("role") == "agent"]
    pods = inst.all_xiu_pods()
    hosting = pods_per_node(pods)
    # Services whose LoadBalancer IP viewers and publishers use: (name, namespace). The ingress is Traefik's.
    lbs = {"rtmp": (inst.name("rtmp"), inst.ns), "ingest": (inst.name("ingest"), inst.ns),
           "ingress": ("traefik", "traefik")}
    before = {key: l2_node(inst, *svc) for key, svc in lbs.items()}
    node = pick_node(agents, before["rtmp"], hosting)
    if not node:
        sec.report.add("7d stop a node", "an agent node hosting xiu", f"none found: {hosting}", 0, False)
        return
    marks: dict[str, float] = {}
    moved: dict[str, str] = {}
    if os.environ.get("E2E_NODE_FAULT") != "plan":
        problem = colocate_origin(inst, node, agents)
        if problem:
            sec.report.add("7d stop a node: move the origin onto the node to stop", "origin ready there", problem,
                           0, False)
            return
        pods = [p for p in inst.all_xiu_pods() if p.metadata.deletion_timestamp is None]
        hosting = pods_per_node(pods)
    origin_node = next((p.spec.node_name for p in pods if p.metadata.labels.get("app.kubernetes.io/component")
                        == "origin"), "")
    if os.environ.get("E2E_NODE_FAULT") == "plan":
        sec.report.add("7d stop a node: plan only (E2E_NODE_FAULT=plan)", "a node to stop",
                       f"would stop {node}: xiu pods per node {hosting}, origin on {origin_node}, LoadBalancer IPs "
                       f"announced from {before}", 0, True)
        return
    done = threading.Event()

    def monitor(since: float) -> None:
        """Once a second: the node's Ready condition and where MetalLB announces both IPs from."""
        while not done.is_set():
            now = time.monotonic() - since
            try:
                if "not_ready" not in marks and not node_ready(inst, node):
                    marks["not_ready"] = now
                for key, svc in lbs.items():
                    where = l2_node(inst, *svc)
                    if before[key] == node and where and where != node and key not in moved:
                        marks[f"{key}_moved"], moved[key] = now, where
            except Exception:  # noqa: BLE001 - the API server may hiccup; sample again
                pass
            done.wait(1)

    def act() -> str:
        since = time.monotonic()
        subprocess.run(["docker", "stop", node], check=True, capture_output=True, timeout=120)
        threading.Thread(target=monitor, args=(since,), daemon=True).start()
        return (f"docker stop {node} (took {time.monotonic() - since:.0f}s; announced the viewer IP: "
                f"{before['rtmp'] == node}, the ingest IP: {before['ingest'] == node}, the ingress IP: "
                f"{before['ingress'] == node}; origin there: "
                f"{origin_node == node}; xiu pods there: {hosting[node]})")

    def settled(since: float) -> str:
        origin = [p for p in inst.pods(ORIGIN_SELECTOR)
                  if p.spec.node_name != node and inst.ready(p)]
        if not origin:
            return "no ready origin off the stopped node"
        marks.setdefault("origin_ok", time.monotonic() - since)
        return ""

    def after() -> str:
        done.set()

        def at(key: str) -> str:
            return f"{marks[key]:.0f}s" if key in marks else "never"

        ips = "; ".join(f"{key} IP announced by {before[key]}" + (f", moved to {moved.get(key, '-')} after "
                                                                  f"{at(key + '_moved')}" if before[key] == node else "")
                        for key in lbs)
        return f"node NotReady after {at('not_ready')}; {ips}; a ready origin off the node after {at('origin_ok')}"

    try:
        sec.fault(f"7d stop node container {node} (E2E_NODE_FAULT=1)",
                  "the LoadBalancer IPs move to another node; its pods (the origin among them) are replaced; every "
                  f"stream plays from every replica again within {NODE_RECOVERY_TIMEOUT:.0f}s; 0 streams lost",
                  replicas, act, settled,
                  exclude=lambda: frozenset({node}), after=after, timeout=NODE_RECOVERY_TIMEOUT)
    finally:
        started = time.monotonic()
        subprocess.run(["docker", "start", node], check=False, capture_output=True, timeout=120)
        healthy, ready_at, bad = "", "", ["not checked"]
        while time.monotonic() - started < 300:
            try:
                if not ready_at and node_ready(inst, node):
                    ready_at = f"{time.monotonic() - started:.0f}s"
                bad = unhealthy_pods(inst.core.list_pod_for_all_namespaces().items)
            except Exception as exc:  # noqa: BLE001 - the API server may be busy while the node rejoins
                bad = [type(exc).__name__]
            if ready_at and not bad:
                healthy = f"{time.monotonic() - started:.0f}s"
                break
            time.sleep(2)
        sec.report.add(f"7d docker start {node}", "node Ready again and every pod of the cluster healthy",
                       f"node Ready after {ready_at or 'NOT within 300s'}; every pod running and ready (or completed) "
                       f"after {healthy or 'NOT within 300s: ' + str(bad[:10])}",
                       time.monotonic() - started, bool(healthy))


def unhealthy_pods(pods: list[Any]) -> list[str]:
    """namespace/name of pods that are terminating, or neither completed nor running with every container ready."""
    bad = []
    for p in pods:
        if p.status.phase == "Succeeded":
            continue
        ready = p.status.phase == "Running" and all(c.ready for c in p.status.container_statuses or [])
        if p.metadata.deletion_timestamp is not None or not ready:
            bad.append(f"{p.metadata.namespace}/{p.metadata.name}")
    return bad
