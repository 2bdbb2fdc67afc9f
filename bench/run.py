"""`make bench`: every comparison measured side by side in one run (alternating targets), medians quoted.

Stages (BENCH_STAGES, comma separated): capacity, ttfp, scaling, hpa, ops. Lab stages skip with a reason
when the lab is absent. Results: bench/results/<date>.json (raw samples, medians, spread, environment),
<date>.md and PNG plots beside them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import hls, procs, report
from .labctl import Instance, Lab, lab_or_reason
from .stats import Ramp, Threshold, cpu_per_player_millicores, ratio, rotation, spread


def env_list(name: str, default: str) -> list[int]:
    return [int(v) for v in os.environ.get(name, default).split(",") if v.strip()]


@dataclass
class Config:
    steps: list[int] = field(default_factory=lambda: env_list("BENCH_STEPS", "100,300,600,900,1200"))
    scaling_steps: list[int] = field(default_factory=lambda: env_list("BENCH_SCALING_STEPS", "100,200,300,600,900"))
    repeats: int = int(os.environ.get("BENCH_REPEATS", "3"))
    ramp_s: float = float(os.environ.get("BENCH_RAMP_S", "2"))
    warmup_s: float = float(os.environ.get("BENCH_WARMUP_S", "3"))
    window_s: float = float(os.environ.get("BENCH_WINDOW_S", "8"))
    publishers: int = int(os.environ.get("BENCH_PUBLISHERS", "3"))
    ttfp_repeats: int = int(os.environ.get("BENCH_TTFP_REPEATS", "3"))
    hpa_players: int = int(os.environ.get("BENCH_HPA_PLAYERS", "600"))
    hpa_timeout_s: float = float(os.environ.get("BENCH_HPA_TIMEOUT_S", "180"))
    max_minutes: float = float(os.environ.get("BENCH_MAX_MINUTES", "60"))
    stages: list[str] = field(default_factory=lambda: os.environ.get(
        "BENCH_STAGES", "capacity,ttfp,scaling,hpa,ops").split(","))
    ops_lab: bool = os.environ.get("BENCH_OPS", "0") == "1"
    keep: bool = os.environ.get("BENCH_KEEP", "0") == "1"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def environment(cfg: Config, client: Path) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {
        "cpu_model": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "xiu": version([str(procs.xiu_binary()), "--version"]) + f" ({procs.xiu_binary()})",
        "xiu_version_pinned": os.environ.get("XIU_VERSION", ""),
        "nginx": version(["nginx", "-v"]), "ffmpeg": version(["ffmpeg", "-version"]),
        "go": version([shutil.which("go") or "/usr/local/go/bin/go", "version"]),
        "loadclient": client.name, "config": asdict(cfg), "clip": procs.CLIP_SPEC,
        "git_commit": version(["git", "-C", str(procs.REPO), "rev-parse", "HEAD"]),
    }


@dataclass
class Target:
    """One server under test and how to reach it: play URLs per protocol, CPU pids, extra client args."""

    name: str
    where: str
    publish_url: Callable[[str], str]
    play_url: dict[str, Callable[[str], str]]
    pids: Callable[[], list[int]]
    client_args: list[str] = field(default_factory=list)
    hls_url: Callable[[str], str] | None = None
    hls_ip: str | None = None
    hls_ca: str | None = None
    capacity: bool = True  # False: a target for time to first playable only


class Bench:
    def __init__(self, cfg: Config, stack: ExitStack, workdir: Path) -> None:
        self.cfg = cfg
        self.stack = stack
        self.workdir = workdir
        self.threshold = Threshold()
        self.results: dict[str, Any] = {"skipped": {}, "errors": []}
        self.publishers: procs.Publishers | None = None
        self.streams = [f"live/bench{i}" for i in range(cfg.publishers)]
        self.clip = procs.ensure_clip()
        self.client = procs.loadclient_binary()
        self.targets: dict[str, Target] = {}
        self.instance: Instance | None = None
        self.lab: Lab | None = None
        self.replicas = 1  # edge replicas the lab instance should have now

    # ------------------------------------------------------------------ setup

    def start_local(self) -> None:
        xiu = procs.start_xiu(self.workdir / "xiu")
        self.stack.callback(procs.stop, xiu.proc)
        self.targets["xiu-direct"] = Target(
            "xiu-direct", "loopback", xiu.rtmp_url, {"rtmp": xiu.rtmp_url, "flv": lambda s: xiu.flv_url(s) or ""},
            xiu.pids, hls_url=lambda s: f"http://127.0.0.1:{xiu.hls_port}/{s}/{s.split('/')[1]}.m3u8")
        missing = procs.nginx_missing()
        if missing:
            self.results["skipped"]["nginx-rtmp"] = missing
            return
        ngx = procs.start_nginx(self.workdir / "nginx")
        self.stack.callback(procs.stop, ngx.proc, 15)
        self.targets["nginx-rtmp"] = Target("nginx-rtmp", "loopback", ngx.rtmp_url, {"rtmp": ngx.rtmp_url},
                                            ngx.pids)

    def start_lab(self) -> None:
        endpoints = Path(os.environ.get("BENCH_LAB_ENDPOINTS", procs.REPO / "build/lab/endpoints.json"))
        inventory = Path(os.environ.get("BENCH_INVENTORY", procs.REPO / "inventories/lab"))
        lab, reason = lab_or_reason(endpoints, inventory)
        if lab is None:
            self.results["skipped"]["lab"] = reason
            log(f"lab stages skipped: {reason}")
            return
        self.lab = lab
        trouble = lab.node_trouble()
        if trouble:
            self.results["skipped"]["lab"] = f"lab nodes unusable now ({'; '.join(trouble)})"
            log(f"lab stages skipped: {self.results['skipped']['lab']}")
            return
        inst = Instance(lab, self.workdir / "lab",
                        namespace=os.environ.get("BENCH_NAMESPACE", "xiu-bench"),
                        ingest_ip=os.environ.get("BENCH_INGEST_IP", "172.31.250.205"),
                        rtmp_ip=os.environ.get("BENCH_RTMP_IP", "172.31.250.206"),
                        domain=os.environ.get("BENCH_DOMAIN", "bench.xiu.lab.test"))
        if not self.cfg.keep:
            self.stack.callback(self.delete_instance, inst)
        ops: dict[str, Any] = self.results.setdefault("ops", {})
        log(f"deploying {inst.namespace} with playbooks/xiu.yml (1 edge, HPA off)")
        try:
            ops["xiu_yml_install"] = inst.playbook("xiu.yml", "xiu-install", xiu_edge_replicas=1,
                                                   xiu_hpa_enabled=False)
            ops["xiu_yml_noop"] = inst.playbook("xiu.yml", "xiu-noop", xiu_edge_replicas=1, xiu_hpa_enabled=False)
        except (RuntimeError, subprocess.SubprocessError) as error:
            reason = inst.health(5)
            self.results["skipped"]["lab"] = f"deploying {inst.namespace} failed: {error}; {reason}"
            log(f"lab stages skipped: {self.results['skipped']['lab']}")
            return
        self.instance = inst
        log(f"xiu.yml install {ops['xiu_yml_install']['seconds']}s, no-op re-run {ops['xiu_yml_noop']['seconds']}s "
            f"(changed={ops['xiu_yml_noop']['changed']})")
        self.targets["xiu-public"] = Target(
            "xiu-public", "lab", inst.rtmp_publish, {"rtmp": inst.rtmp_play, "flv": inst.flv_play},
            inst.edge_xiu_pids, client_args=inst.https_client_args(),
            hls_url=lambda s: f"https://{inst.hls_host()}/{s}/{s.split('/')[1]}.m3u8?token={inst.play_token}",
            hls_ip=lab.ingress_ip, hls_ca=lab.ca_pem or None)

    def lab_gate(self, stage: str) -> bool:
        """True if the lab instance is usable; otherwise drop its target and record why the stage skips."""
        if self.instance is None:
            return False
        reason = self.instance.health(90)
        if not reason:
            return True
        self.results["skipped"][f"lab {stage}"] = reason
        self.targets.pop("xiu-public", None)
        self.instance = None if stage != "ttfp" else self.instance
        log(f"lab stage {stage} skipped: {reason}")
        return False

    def delete_instance(self, inst: Instance) -> None:
        log(f"deleting namespace {inst.namespace}")
        inst.delete()

    def publish_all(self, seconds: int) -> None:
        self.publishers = procs.Publishers(self.clip, time.monotonic() + seconds, self.workdir)
        self.stack.callback(self.publishers.stop)
        for target in self.targets.values():
            for stream in self.streams:
                self.publishers.add(target.name, target.publish_url(stream))
        self.publishers.start()
        time.sleep(6)
        if self.instance is not None:
            waited = self.instance.wait_edges(1, self.streams, 60)
            log(f"lab edge holds every stream after {waited}s more")

    # ------------------------------------------------------------------ capacity

    def series(self, only_public: bool = False) -> list[tuple[str, str]]:
        out = []
        for name, target in self.targets.items():
            if (only_public and name != "xiu-public") or not target.capacity:
                continue
            out += [(name, proto) for proto in target.play_url]
        return out

    def one_run(self, name: str, proto: str, players: int) -> dict[str, Any]:
        target = self.targets[name]
        urls = [target.play_url[proto](s) for s in self.streams]
        cfg = self.cfg
        settle = None
        if target.where == "lab" and self.instance is not None:
            # An overloaded edge can lose its relays (the agent pulls them again): start from a full edge.
            settle = self.instance.wait_edges(self.replicas, self.streams, 90)
        run = procs.run_load(self.client, urls, players, cfg.ramp_s, cfg.warmup_s, cfg.window_s, target.pids,
                             target.client_args if target.where == "lab" else [])
        s = run.summary
        per_player = s.pop("player_results", [])
        ok = sum(1 for p in per_player if self.threshold.player_ok(int(p["frames"]), float(s["expected_frames"]),
                                                                    float(p["lag_max_s"]), bool(p["connected"])
                                                                    and not p.get("error")))
        idle = self.results.get("idle_cpu_cores", {}).get(name, 0.0)
        return {"target": name, "protocol": proto, "players": players, "ok": ok,
                "ok_share": ok / players, "server_cpu_cores": run.server_cpu_cores,
                "server_system_share": run.server_system_share,
                "machine_busy_cores": run.machine_busy_cores, "client_cpu_s": run.client_cpu_s,
                "cpu_per_player_millicores": (cpu_per_player_millicores(run.server_cpu_cores, idle, players)
                                              if run.server_cpu_cores is not None else
                                              {"total": None, "marginal": None}),
                "frames_ratio": s["frames_ratio"], "lag_max_s": s["lag_max_s"], "kbps": s["kbps"],
                "errors": s["errors"], "connected": s["connected"], "settle_s": settle}

    def idle_cpu(self) -> None:
        idle: dict[str, float] = {}
        for name, target in self.targets.items():
            pids = target.pids()
            c0, t0 = procs.proc_cpu_seconds(pids), time.monotonic()
            time.sleep(5)
            idle[name] = (procs.proc_cpu_seconds(pids) - c0) / (time.monotonic() - t0)
        self.results["idle_cpu_cores"] = idle
        log(f"idle server CPU with {len(self.streams)} publishers: {idle}")

    def ramp(self, series: list[tuple[str, str]], steps: list[int], label: str, deadline: float) -> list[dict[str, Any]]:
        """Alternating ramp: at each step every repeat runs every still-climbing series, in rotated order."""
        ramp = Ramp(steps, self.cfg.repeats, self.threshold)
        runs: list[dict[str, Any]] = []
        active = list(series)
        for si, step in enumerate(steps):
            if not active:
                break
            if time.monotonic() > deadline:
                self.results["errors"].append(f"{label}: time bound reached before step {step}")
                break
            step_runs: dict[tuple[str, str], list[tuple[int, int]]] = {s: [] for s in active}
            for rep in range(self.cfg.repeats):
                for name, proto in rotation(active, si * self.cfg.repeats + rep):
                    try:
                        run = self.one_run(name, proto, step)
                    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as error:
                        run = {"target": name, "protocol": proto, "players": step, "ok": 0, "ok_share": 0.0,
                               "error": str(error)[:300]}
                    run.update(step=step, repeat=rep, stage=label)
                    runs.append(run)
                    step_runs[(name, proto)].append((int(run["ok"]), step))
                    log(f"{label} {name}/{proto} step {step} rep {rep}: ok {run['ok']}/{step}, server CPU "
                        f"{run.get('server_cpu_cores') or 0:.2f} cores, machine {run.get('machine_busy_cores', 0):.2f}")
                    time.sleep(2)
            active = [s for s in active if ramp.step_verdict(step_runs[s])]
        return runs

    def summarize(self, runs: list[dict[str, Any]], steps: list[int]) -> dict[str, Any]:
        ramp = Ramp(steps, self.cfg.repeats, self.threshold)
        out: dict[str, Any] = {}
        for key in sorted({(r["target"], r["protocol"]) for r in runs}):
            mine = [r for r in runs if (r["target"], r["protocol"]) == key]
            summary = ramp.summarize(mine)
            top = int(summary["max_players_by_step_median"])
            at_top = [r for r in mine if r["step"] == top and r.get("server_cpu_cores") is not None
                      and r["server_cpu_cores"] >= 0]
            summary["cpu_per_player_millicores_at_max"] = {
                "total": spread([r["cpu_per_player_millicores"]["total"] for r in at_top]),
                "marginal": spread([r["cpu_per_player_millicores"]["marginal"] for r in at_top]),
            }
            summary["server_cpu_cores_at_max"] = spread([r["server_cpu_cores"] for r in at_top])
            summary["server_system_share_at_max"] = spread([r["server_system_share"] for r in at_top
                                                            if r.get("server_system_share") is not None])
            summary["ok_share_by_step"] = {str(s): spread([r["ok_share"] for r in mine if r["step"] == s])
                                           for s in sorted({int(r["step"]) for r in mine})}
            out[f"{key[0]}/{key[1]}"] = summary
        return out

    def capacity(self, deadline: float) -> None:
        self.idle_cpu()
        runs = self.ramp(self.series(), self.cfg.steps, "capacity", deadline)
        summary = self.summarize(runs, self.cfg.steps)
        ratios = {}
        for proto in ("rtmp", "flv"):
            pub, direct = summary.get(f"xiu-public/{proto}"), summary.get(f"xiu-direct/{proto}")
            if pub and direct:
                ratios[proto] = {
                    "median_of_max": ratio(pub["max_players"]["median"], direct["max_players"]["median"]),
                    "capped": bool(pub["capped_by_ramp"] and direct["capped_by_ramp"])}
        self.results["capacity"] = {"runs": runs, "summary": summary, "ratio_public_direct": ratios,
                                    "threshold": asdict(self.threshold)}

    # ------------------------------------------------------------------ time to first playable

    def start_edge_pair(self) -> None:
        """Origin + edge (with the real xiu-agent) on loopback, from the role's own rendered objects (the
        integration tests' harness): the viewer tier's path for a new stream, without a cluster."""
        from tests.integration import xiu_harness as h  # noqa: PLC0415 - only this stage needs ansible

        root = self.workdir / "edge-pair"
        pub, play = "bench-publish-" + secrets.token_hex(8), "bench-play-" + secrets.token_hex(8)
        ports = {tier: dict(zip(h.PORT_KEYS, h.free_ports(len(h.PORT_KEYS)), strict=True))
                 for tier in ("origin", "edge")}
        base = {"xiu_cluster_domain": "bench.example.test", "xiu_publish_token": pub, "xiu_play_token": play,
                "xiu_play_auth_enabled": True}
        jobs = {"origin": h.render(root / "render-origin", h.tier_vars(base, ports["origin"], None)),
                "edge": h.render(root / "render-edge", h.tier_vars(base, ports["edge"], ports["origin"]))}
        for tier, job in jobs.items():
            if job.wait(timeout=300) != 0:
                raise RuntimeError(f"rendering the {tier} tier failed, see {root / f'render-{tier}' / 'render.log'}")
        rendered = {tier: h.load_rendered(root / f"render-{tier}") for tier in jobs}
        origin = h.start_node("origin", root / "origin", rendered["origin"], ports["origin"])
        self.stack.callback(origin.stop)
        edge = h.start_node("edge", root / "edge", rendered["edge"], ports["edge"])
        self.stack.callback(edge.stop)
        o, e = ports["origin"], ports["edge"]

        def name(s: str) -> str:
            return s.split("/")[1]

        self.targets["xiu-edge-loopback"] = Target(
            "xiu-edge-loopback", "loopback", lambda s: f"rtmp://127.0.0.1:{o['rtmp']}/{s}?token={pub}",
            {"rtmp": lambda s: f"rtmp://127.0.0.1:{e['rtmp']}/{s}?token={play}",
             "flv": lambda s: f"http://127.0.0.1:{e['httpflv']}/{s}.flv?token={play}"},
            lambda: [edge.xiu.popen.pid],
            hls_url=lambda s: f"http://127.0.0.1:{e['hls']}/{s}/{name(s)}.m3u8?token={play}", capacity=False)
        time.sleep(3)  # the agent's first poll

    def ttfp(self) -> None:
        try:
            self.start_edge_pair()
        except (RuntimeError, OSError, AssertionError, ImportError, subprocess.SubprocessError) as error:
            self.results["skipped"]["xiu-edge-loopback"] = f"origin + edge on loopback not started: {error}"
        samples: list[dict[str, Any]] = []
        nonce = secrets.token_hex(3)
        order = [(name, proto) for name, t in self.targets.items() for proto in [*t.play_url, *(["hls"] if t.hls_url
                                                                                                 else [])]]
        for rep in range(self.cfg.ttfp_repeats):
            for name, proto in rotation(order, rep):
                target = self.targets[name]
                stream = f"live/ttfp{nonce}{rep}{proto}"
                t0 = time.time()
                pub = procs.publish(self.clip, target.publish_url(stream), 40, self.workdir / "publish-ttfp.log")
                try:
                    if proto == "hls" and target.hls_url is not None:
                        res = hls.ttfp(target.hls_url(stream), t0, 30, target.hls_ip, target.hls_ca)
                    else:
                        res = procs.run_ttfp(self.client, target.play_url[proto](stream), int(t0 * 1000), 30,
                                             target.client_args if target.where == "lab" else [])
                finally:
                    procs.stop(pub, 15)
                res.update(target=name, protocol=proto, repeat=rep)
                samples.append(res)
                log(f"ttfp {name}/{proto} rep {rep}: {res.get('ttfp_s')} s ({res.get('attempts')} attempts)")
                time.sleep(3)  # the agent kicks the ended copy
        summary = {}
        for name, proto in order:
            vals = [float(s["ttfp_s"]) for s in samples if s["target"] == name and s["protocol"] == proto
                    and s.get("ok")]
            fails = sum(1 for s in samples if s["target"] == name and s["protocol"] == proto and not s.get("ok"))
            summary[f"{name}/{proto}"] = {**spread(vals), "failed": fails}
        self.results["ttfp"] = {"samples": samples, "summary": summary}

    # ------------------------------------------------------------------ scaling and ops (lab)

    def scaling(self, deadline: float) -> None:
        inst = self.instance
        assert inst is not None
        ops = self.results.setdefault("ops", {})
        log("scale.yml 1 -> 3")
        start = time.monotonic()
        ops["scale_yml_1_to_3"] = inst.playbook("scale.yml", "scale-3", replicas=3, xiu_hpa_enabled=False)
        waited = inst.wait_edges(3, self.streams, 300)
        ops["scale_1_to_3_until_every_replica_serves_every_stream_s"] = (
            round(time.monotonic() - start, 1) if waited is not None else None)
        log(f"scale 1->3: playbook {ops['scale_yml_1_to_3']['seconds']}s, every replica has every stream after "
            f"{ops['scale_1_to_3_until_every_replica_serves_every_stream_s']}s")
        runs: list[dict[str, Any]] = []
        for replicas in (3, 2):
            self.replicas = replicas
            if replicas == 2:
                ops["scale_yml_3_to_2"] = inst.playbook("scale.yml", "scale-2", replicas=2, xiu_hpa_enabled=False)
                inst.wait_edges(2, self.streams, 300)
                time.sleep(5)
            self.results.setdefault("scaling_pods", {})[str(replicas)] = inst.edge_pods()
            for run in self.ramp([("xiu-public", "rtmp")], self.cfg.scaling_steps, f"scaling-{replicas}", deadline):
                run["replicas"] = replicas
                runs.append(run)
        one = [dict(r, replicas=1) for r in self.results.get("capacity", {}).get("runs", [])
               if r["target"] == "xiu-public" and r["protocol"] == "rtmp"]
        curve = {}
        for replicas, mine, steps in ((1, one, self.cfg.steps), (2, [r for r in runs if r["replicas"] == 2],
                                                                  self.cfg.scaling_steps),
                                      (3, [r for r in runs if r["replicas"] == 3], self.cfg.scaling_steps)):
            if not mine:
                continue
            s = Ramp(steps, self.cfg.repeats, self.threshold).summarize(mine)
            med = s["max_players"]["median"]
            curve[str(replicas)] = {**s, "viewers_per_replica": (med / replicas) if med is not None else None}
        self.results["scaling"] = {"runs": runs, "curve": curve}

    def hpa(self) -> None:
        inst = self.instance
        assert inst is not None
        ops = self.results.setdefault("ops", {})
        self.replicas = 1
        inst.playbook("scale.yml", "scale-1", replicas=1, xiu_hpa_enabled=False)
        inst.wait_edges(1, self.streams, 300)
        ops["xiu_yml_enable_hpa"] = inst.playbook("xiu.yml", "xiu-hpa", xiu_hpa_enabled=True)
        time.sleep(20)  # metrics for the HPA
        before = inst.hpa()
        players = self.cfg.hpa_players
        window = self.cfg.hpa_timeout_s
        urls = [inst.rtmp_play(s) for s in self.streams]
        args = [str(self.client), "-mode", "load", "-n", str(players), "-ramp", "5", "-warmup", "0",
                "-window", str(window)]
        for url in urls:
            args += ["-url", url]
        start = time.monotonic()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        timeline: list[dict[str, Any]] = []
        decided = ready = None
        try:
            while time.monotonic() - start < window:
                state = inst.hpa()
                pods = inst.edge_pods()
                t = round(time.monotonic() - start, 1)
                timeline.append({"t": t, **state, "pods": len(pods), "ready": sum(p["ready"] for p in pods)})
                if decided is None and (state.get("desired") or 0) > 1:
                    decided = t
                if decided is not None and sum(p["ready"] for p in pods) > 1:
                    ready = t
                    break
                time.sleep(2)
        finally:
            procs.stop(proc, 15)
        ops["hpa"] = {"players": players, "before": before, "desired_above_1_after_s": decided,
                      "second_replica_ready_after_s": ready, "timeline": timeline,
                      "settings": {"target_cpu_percent_of_request": 70, "edge_cpu_request": "250m",
                                   "scale_up_stabilization_s": 30}}
        log(f"HPA: desired>1 after {decided}s, 2nd replica Ready after {ready}s")

    def ops_lead_lab(self) -> None:
        """`make lab` warm and site.yml no-op re-run act on the whole lab: only with BENCH_OPS=1."""
        ops = self.results.setdefault("ops", {})
        if not self.cfg.ops_lab:
            ops["make_lab_warm"] = ops["site_yml_noop"] = "not measured: needs BENCH_OPS=1 (acts on the whole lab)"
            return
        for key, cmd in (("make_lab_warm", ["make", "lab"]),
                         ("site_yml_noop", [str(Path(sys.executable).with_name("ansible-playbook")),
                                            "playbooks/site.yml", "-i", "inventories/lab"])):
            start = time.monotonic()
            proc = subprocess.run(cmd, cwd=procs.REPO, capture_output=True, text=True, check=False, timeout=3600)
            recap = [line for line in proc.stdout.splitlines() if "changed=" in line]
            ops[key] = {"seconds": round(time.monotonic() - start, 1), "rc": proc.returncode,
                        "recap": recap[-4:]}
            log(f"{key}: {ops[key]['seconds']}s rc {proc.returncode}")


def remove_media(workdir: Path) -> None:
    """Logs stay in the workdir for a post-mortem; the HLS segments the local xiu processes cut do not."""
    for media in list(workdir.glob("**/live")):
        if media.is_dir():
            shutil.rmtree(media, ignore_errors=True)


def main() -> int:
    # Started in the background, a shell leaves SIGINT ignored; TERM and INT both end the run with cleanup
    # (servers and publishers stopped, the lab namespace deleted).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cfg = Config()
    out_dir = Path(os.environ.get("BENCH_RESULTS", procs.REPO / "bench" / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    date = dt.date.today().isoformat()
    started = time.monotonic()
    deadline = started + cfg.max_minutes * 60
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="xiu-bench-"))
        workdir.chmod(0o755)  # nginx-rtmp runs as nobody and reads its config below it
        stack.callback(remove_media, workdir)
        bench = Bench(cfg, stack, workdir)
        path = out_dir / f"{date}.json"
        if os.environ.get("BENCH_MERGE") == "1" and path.exists():
            # A partial re-run (BENCH_STAGES=...) adds its stages to the day's file and keeps the others.
            earlier = json.loads(path.read_text())
            restarts = earlier.pop("publisher_restarts", None)
            if isinstance(restarts, list):  # older format: every restart
                restarts = {"count": len(restarts), "first": restarts[:30]}
            earlier.setdefault("invocations", []).append(
                {**{k: earlier.get(k) for k in ("started", "elapsed_s", "stages_run", "skipped", "errors")},
                 "publisher_restarts": restarts})
            earlier["errors"], earlier["skipped"] = [], {}
            bench.results = earlier
        bench.results["environment"] = environment(cfg, bench.client)
        bench.results["started"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        log(f"workdir {workdir}; loadclient {bench.client}; clip {bench.clip}")
        try:
            bench.start_local()
            if {"ttfp", "scaling", "hpa"} & set(cfg.stages) or "capacity" in cfg.stages:
                bench.start_lab()
            bench.publish_all(int(cfg.max_minutes * 60) + 600)
            if "capacity" in cfg.stages:
                bench.capacity(deadline)
            if "ttfp" in cfg.stages:
                bench.lab_gate("ttfp")
                bench.ttfp()
            if "scaling" in cfg.stages and bench.lab_gate("scaling"):
                bench.scaling(deadline)
            if "hpa" in cfg.stages and bench.lab_gate("hpa"):
                bench.hpa()
            if "ops" in cfg.stages:
                bench.ops_lead_lab()
        except Exception as error:  # noqa: BLE001 - keep what was measured, say what broke
            bench.results["errors"].append(f"{type(error).__name__}: {error}")
            log(f"ERROR {error}")
        finally:
            bench.results["elapsed_s"] = round(time.monotonic() - started, 1)
            bench.results["stages_run"] = cfg.stages
            if bench.publishers is not None:
                bench.results["publisher_restarts"] = {"count": bench.publishers.restart_count,
                                                       "first": bench.publishers.restarts}
            path.write_text(json.dumps(bench.results, indent=1, sort_keys=True, default=str) + "\n")
            log(f"wrote {path}")
    md = out_dir / f"{date}.md"
    md.write_text(report.markdown(json.loads(path.read_text()), f"{date}"))
    log(f"wrote {md}")
    return 1 if bench.results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
