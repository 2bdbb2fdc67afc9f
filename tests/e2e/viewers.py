"""Long-running viewers for the fault steps (FLV through the ingress, RTMP through the viewer LoadBalancer),
the "every stream plays from every replica" sweep, and the pure arithmetic of outages.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tests.e2e import media
from tests.e2e.target import Instance

# ------------------------------------------------------------------------------------------- pure figures


@dataclass(frozen=True)
class Outage:
    """What a set of viewers saw after `since`."""

    viewers: int
    cut: int  # viewers with a gap > threshold
    longest: float  # longest gap of any viewer (s)
    median_cut: float  # median longest gap of the viewers that were cut (s)
    playing_at_end: int  # viewers with video in the last `fresh` seconds at the end
    reconnected: int = 0  # viewers whose connection ended and who got video again on a new one
    longest_recovery: float = 0.0  # longest time from the last video before such a loss to video again (s)

    def text(self, kind: str) -> str:
        moved = (f"{self.reconnected} reconnected (video again within {self.longest_recovery:.1f}s)"
                 if self.reconnected else "none reconnected")
        if not self.cut:
            return (f"{kind}: {self.viewers} viewers, none without video > 1 s, {moved}; {self.playing_at_end} playing "
                    f"at the end")
        return (f"{kind}: {self.cut}/{self.viewers} viewers without video for up to {self.longest:.1f}s "
                f"(median {self.median_cut:.1f}s), {moved}; {self.playing_at_end}/{self.viewers} playing at the end")


def outage(watches: Iterable[media.Watch], since: float, end: float, fresh: float = 3.0) -> Outage:
    """Longest gap of each viewer that was still open at `since` or began later; a gap still open at `end` counts
    to `end`. A gap begins at the last video before it, which is usually just before the fault."""
    ws = list(watches)
    longest: list[float] = []
    for w in ws:
        gaps = [g for start, g in w.gaps if start + g > since]
        if end - w.last_video > 1.0:
            gaps.append(end - w.last_video)
        longest.append(max(gaps, default=0.0))
    cut = sorted(g for g in longest if g > 1.0)
    recoveries = [max((r for start, r in w.recoveries if start >= since - 1.0), default=-1.0) for w in ws]
    back = [r for r in recoveries if r >= 0]
    return Outage(len(ws), len(cut), max(longest, default=0.0), cut[len(cut) // 2] if cut else 0.0,
                  sum(1 for w in ws if end - w.last_video < fresh), len(back), max(back, default=0.0))


def lost_streams(streams: Iterable[str], failures: dict[str, str]) -> list[str]:
    """Streams that fail on at least one replica (failures keyed "pod:app/stream")."""
    return sorted({s for s in streams if any(k.endswith(":" + s) for k in failures)})


# ---------------------------------------------------------------------------------------------- RTMP watch


def watch_rtmp(url: str, watch: media.Watch, stop: threading.Event, procs: list[subprocess.Popen[str]],
               gap_threshold: float = 1.0) -> None:
    """Like media.watch_flv for RTMP: ffmpeg reads the stream; on any end it reconnects at once."""
    watch.last_video = time.monotonic()
    first = True
    while not stop.is_set():
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-rw_timeout", "3000000",
               "-analyzeduration", "500000", "-probesize", "200000", "-i", url, "-map", "0:v", "-c", "copy",
               "-f", "null", "-", "-progress", "pipe:1", "-stats_period", "0.25"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                text=True)
        procs.append(proc)
        reconnected = not first
        if reconnected:
            watch.reconnects += 1
        first = False
        frames = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("frame="):
                continue
            n = int(line.strip().split("=", 1)[1] or 0)
            if n > frames:
                frames = n
                watch.video(time.monotonic(), reconnected, gap_threshold)
                reconnected = False
        proc.wait()
        if not stop.is_set():
            watch.errors.append(f"{time.monotonic():.1f} ffmpeg exit {proc.returncode}")
            stop.wait(0.2)
    watch.end(time.monotonic(), gap_threshold)


class Viewers:
    """FLV viewers through the ingress and RTMP viewers through the viewer LoadBalancer, all reconnecting."""

    def __init__(self, lab: media.Lab, streams: list[str], flv_per_stream: int = 2, rtmp_per_stream: int = 1) -> None:
        self.stop = threading.Event()
        self.procs: list[subprocess.Popen[str]] = []
        self.flv = [media.Watch(s) for s in streams for _ in range(flv_per_stream)]
        self.rtmp = [media.Watch(s) for s in streams for _ in range(rtmp_per_stream)]
        self.threads = [threading.Thread(target=media.watch_flv, args=(lab, w, self.stop), daemon=True)
                        for w in self.flv]
        self.threads += [threading.Thread(target=watch_rtmp, args=(lab.rtmp_url(w.stream), w, self.stop, self.procs),
                                          daemon=True) for w in self.rtmp]
        for t in self.threads:
            t.start()

    @property
    def all(self) -> list[media.Watch]:
        return self.flv + self.rtmp

    def wait_playing(self, seconds: float = 30) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = time.monotonic()
            if all(w.playing(now) for w in self.all):
                return True
            time.sleep(0.2)
        return False

    def finish(self) -> float:
        end = time.monotonic()
        self.stop.set()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for t in self.threads:
            t.join(timeout=15)
        return end


# ------------------------------------------------------------------------------------------ replica sweep


def sweep(inst: Instance, streams: list[str], token: str, replicas: int | None,
          exclude_nodes: frozenset[str] = frozenset()) -> tuple[bool, str, dict[str, str]]:
    """Whether exactly `replicas` edges are ready and every stream plays over FLV from each of them.

    replicas None: as many as the edge Deployment asks for now (the HPA may have added some)."""
    if replicas is None:
        replicas = int(inst.edge_deployment().spec.replicas)
    edges = [p for p in inst.ready_edges() if p.spec.node_name not in exclude_nodes]
    pods = [p for p in inst.pods() if p.spec.node_name not in exclude_nodes]
    if len(edges) != replicas or len(pods) != replicas:
        return False, f"{len(edges)} ready of {len(pods)} edge pods (want {replicas})", {}
    jobs = [(p.metadata.name, s) for p in edges for s in streams]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda j: inst.flv_from_pod(j[0], j[1], token), jobs))
    bad = {f"{pod}:{s}": r for (pod, s), r in zip(jobs, results) if r}
    return not bad, (f"{len(jobs)} plays ok" if not bad else f"failing: {bad}"), bad


@dataclass
class Recovery:
    seconds: float | None  # from the fault until the first fully successful sweep began
    detail: str
    failures: dict[str, str]
    sweeps: int


def wait_recovered(inst: Instance, streams: list[str], token: str, replicas: int | None, since: float, timeout: float,
                   settled: Callable[[], str] = lambda: "",
                   exclude_nodes: Callable[[], frozenset[str]] = frozenset) -> Recovery:
    """Poll until `settled()` says "" (the fault has played out) and a sweep passes. Resolution ~ one sweep."""
    sweeps = 0
    detail = "not checked"
    failures: dict[str, str] = {}
    while time.monotonic() - since < timeout:
        began = time.monotonic()
        why = settled()
        if why:
            detail = why
            time.sleep(0.5)
            continue
        sweeps += 1
        ok, detail, failures = sweep(inst, streams, token, replicas, exclude_nodes())
        if ok:
            return Recovery(began - since, detail, {}, sweeps)
        time.sleep(0.5)
    return Recovery(None, detail, failures, sweeps)
