"""The lab side of the benchmark: a separate xiu installation (namespace xiu-bench by default) deployed with the
collection's own playbooks, its pods' CPU from the host's /proc, readiness and stream checks through kubectl."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import REPO

RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@dataclass
class Lab:
    endpoints: dict[str, Any]
    inventory: Path

    @classmethod
    def load(cls, endpoints_file: Path, inventory: Path) -> Lab:
        return cls(json.loads(endpoints_file.read_text()), inventory)

    @property
    def kubeconfig(self) -> str:
        return str(self.endpoints["kubeconfig"])

    @property
    def kubectl_bin(self) -> str:
        bundled = Path(str(self.endpoints.get("bundle", ""))) / "bin" / "kubectl"
        return str(bundled) if bundled.exists() else "kubectl"

    @property
    def ingress_ip(self) -> str:
        return str(self.endpoints.get("addons", {}).get("ingress_ip") or self.endpoints["xiu"]["ingress_ip"])

    @property
    def ca_pem(self) -> str:
        return str(self.endpoints.get("addons", {}).get("ca_pem", ""))

    def allowed(self, ip: str) -> bool:
        """Workplace rule: load goes only to the lab's own addresses (its Docker subnet)."""
        subnet = str(self.endpoints["network"]["subnet"])
        base, bits = subnet.split("/")

        def num(a: str) -> int:
            return int.from_bytes(bytes(int(p) for p in a.split(".")), "big")

        mask = (0xFFFFFFFF << (32 - int(bits))) & 0xFFFFFFFF
        return (num(ip) & mask) == (num(base) & mask)

    def node_trouble(self) -> list[str]:
        """Taints that keep pods off the nodes (disk or memory pressure, unschedulable, not ready)."""
        try:
            nodes = json.loads(self.kubectl("get", "nodes", "-o", "json", timeout=30))
        except (RuntimeError, ValueError, subprocess.SubprocessError) as error:
            return [f"API not answering: {error}"]
        return sorted({f"{n['metadata']['name']}: {t['key']}" for n in nodes["items"]
                       for t in n["spec"].get("taints", []) if t["key"] != "node-role.kubernetes.io/control-plane"})

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        proc = subprocess.run([self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args], capture_output=True,
                              text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()[-400:]}")
        return proc.stdout


@dataclass
class Instance:
    """The benchmark's own xiu installation. Never the lead's namespace: every name comes from here."""

    lab: Lab
    workdir: Path
    namespace: str = "xiu-bench"
    ingest_ip: str = "172.31.250.205"
    rtmp_ip: str = "172.31.250.206"
    domain: str = "bench.xiu.lab.test"
    publish_token: str = field(default_factory=lambda: "pub-" + secrets.token_urlsafe(18))
    play_token: str = field(default_factory=lambda: "play-" + secrets.token_urlsafe(18))

    def __post_init__(self) -> None:
        if self.namespace == str(self.lab.endpoints.get("xiu", {}).get("namespace", "xiu")):
            raise ValueError(f"refusing to benchmark in the lab's own xiu namespace {self.namespace!r}")
        for ip in (self.ingest_ip, self.rtmp_ip):
            if not self.lab.allowed(ip):
                raise ValueError(f"{ip} is outside the lab network {self.lab.endpoints['network']['subnet']}")

    def extra_vars(self, **more: Any) -> dict[str, Any]:
        return {
            "xiu_namespace": self.namespace, "xiu_instance": self.namespace,
            "xiu_ingest_load_balancer_ip": self.ingest_ip, "xiu_rtmp_load_balancer_ip": self.rtmp_ip,
            "xiu_cluster_domain": self.domain, "xiu_publish_token": self.publish_token,
            "xiu_play_token": self.play_token, "xiu_play_auth_enabled": True, **more,
        }

    def playbook(self, name: str, log_name: str, **more: Any) -> dict[str, Any]:
        """Run playbooks/<name> on the lab inventory with this instance's overrides; time it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        vars_file = self.workdir / f"{log_name}.vars.json"
        vars_file.write_text(json.dumps(self.extra_vars(**more)))
        vars_file.chmod(0o600)
        log = self.workdir / f"{log_name}.log"
        playbook = Path(sys.executable).with_name("ansible-playbook")
        start = time.monotonic()
        proc = subprocess.run([str(playbook), f"playbooks/{name}", "-i", str(self.lab.inventory),
                               "-e", f"@{vars_file}"], cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, check=False, timeout=900)
        seconds = time.monotonic() - start
        recap = RECAP.findall(log.read_text())
        result = {"playbook": name, "seconds": round(seconds, 1), "rc": proc.returncode,
                  "changed": int(recap[-1][1]) if recap else None, "log": str(log)}
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed (rc {proc.returncode}), see {log}")
        return result

    def rtmp_play(self, stream: str) -> str:
        return f"rtmp://{self.rtmp_ip}:1935/{stream}?token={self.play_token}"

    def rtmp_publish(self, stream: str) -> str:
        return f"rtmp://{self.ingest_ip}:1935/{stream}?token={self.publish_token}"

    def flv_play(self, stream: str) -> str:
        return f"https://flv.{self.domain}/{stream}.flv?token={self.play_token}"

    def hls_host(self) -> str:
        return f"hls.{self.domain}"

    def https_client_args(self) -> list[str]:
        args = ["-resolve", f"flv.{self.domain}:443={self.lab.ingress_ip}:443"]
        return args + (["-cacert", self.lab.ca_pem] if self.lab.ca_pem and Path(self.lab.ca_pem).exists()
                       else ["-insecure"])

    def edge_pods(self) -> list[dict[str, Any]]:
        out = self.lab.kubectl("-n", self.namespace, "get", "pods", "-l",
                               f"app.kubernetes.io/instance={self.namespace},app.kubernetes.io/component=edge",
                               "-o", "json")
        pods = []
        for item in json.loads(out)["items"]:
            if item["metadata"].get("deletionTimestamp"):
                continue
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in item.get("status", {}).get("conditions", []))
            pods.append({"name": item["metadata"]["name"], "uid": item["metadata"]["uid"], "ready": ready,
                         "node": item["spec"].get("nodeName")})
        return pods

    def edge_xiu_pids(self) -> list[int]:
        """Host pids of the xiu process of every edge pod (nested containers are host processes; the pod's
        cgroup path carries its UID), so pod CPU is read exactly like the loopback servers' CPU."""
        uids = {p["uid"].replace("-", "_") for p in self.edge_pods()}
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")[0]
                if not cmd.endswith(b"xiu"):
                    continue
                cgroup = (proc / "cgroup").read_text()
            except OSError:
                continue
            if any(f"pod{uid}" in cgroup for uid in uids):
                pids.append(int(proc.name))
        return pids

    def edge_streams(self, pod: str) -> list[str]:
        """Streams the edge's own xiu holds with a publisher, asked from inside the pod (its API is in no
        Service)."""
        code = ("import json,urllib.request as u;d=json.load(u.urlopen('http://127.0.0.1:8000/api/"
                "query_whole_streams',timeout=3))['data'] or [];print(json.dumps(sorted("
                "e['publisher']['identifier']['rtmp']['app_name']+'/'+e['publisher']['identifier']['rtmp']"
                "['stream_name'] for e in d if e.get('publisher'))))")
        out = self.lab.kubectl("-n", self.namespace, "exec", pod, "-c", "agent", "--", "python3", "-c", code,
                               timeout=20, check=False)
        try:
            names = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return []
        return [str(n).split("?")[0] for n in names]

    def wait_edges(self, replicas: int, streams: list[str], timeout: float) -> float | None:
        """Seconds until `replicas` edges are Ready and each holds every stream (None on timeout)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            pods = self.edge_pods()
            if len(pods) == replicas and all(p["ready"] for p in pods):
                if all(set(streams) <= set(self.edge_streams(p["name"])) for p in pods):
                    return time.monotonic() - start
            time.sleep(1)
        return None

    def health(self, timeout: float) -> str:
        """Empty when the edges are Ready within timeout, else why not (node taints included: a shared lab
        can be under disk pressure, which evicts every pod and keeps new ones Pending)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.edge_pods()
            if pods and all(p["ready"] for p in pods):
                return ""
            time.sleep(3)
        nodes = json.loads(self.lab.kubectl("get", "nodes", "-o", "json", check=False) or '{"items": []}')
        taints = sorted({t["key"] for n in nodes["items"] for t in n["spec"].get("taints", [])
                         if t["key"] != "node-role.kubernetes.io/control-plane"})
        events = self.lab.kubectl("-n", self.namespace, "get", "events", "--field-selector", "type=Warning",
                                  "-o", "jsonpath={.items[-1:].message}", check=False).strip()
        return (f"edge pods of {self.namespace} not Ready after {timeout:.0f}s"
                + (f"; node taints: {', '.join(taints)}" if taints else "")
                + (f"; last warning: {events[:240]}" if events else ""))

    def hpa(self) -> dict[str, Any]:
        out = self.lab.kubectl("-n", self.namespace, "get", "hpa", f"{self.namespace}-edge", "-o", "json",
                               check=False)
        if not out.strip():
            return {}
        status = json.loads(out).get("status", {})
        cpu = None
        for metric in status.get("currentMetrics") or []:
            cpu = metric.get("resource", {}).get("current", {}).get("averageUtilization")
        return {"desired": status.get("desiredReplicas"), "current": status.get("currentReplicas"), "cpu": cpu}

    def delete(self) -> None:
        self.lab.kubectl("delete", "namespace", self.namespace, "--ignore-not-found", "--wait=true",
                         timeout=180, check=False)


def lab_or_reason(endpoints_file: Path, inventory: Path) -> tuple[Lab | None, str]:
    if os.environ.get("BENCH_LAB", "auto") == "0":
        return None, "BENCH_LAB=0"
    if not endpoints_file.exists():
        return None, f"no lab: {endpoints_file} is missing (run `make lab` first)"
    if not inventory.is_dir():
        return None, f"no lab inventory at {inventory}"
    return Lab.load(endpoints_file, inventory), ""
