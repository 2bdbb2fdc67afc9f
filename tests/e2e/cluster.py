"""The lab cluster as the end-to-end tier sees it: the Kubernetes API (kubernetes client), playbooks, nodes.

Per-replica figures come from each edge's own xiu API, reached through the API server's pod proxy
(``/api/v1/namespaces/<ns>/pods/<pod>:8000/proxy/...``): the xiu API is in no Service and never exposed.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[2]
EDGE_SELECTOR = "app.kubernetes.io/name=xiu,app.kubernetes.io/component=edge"
ORIGIN_SELECTOR = "app.kubernetes.io/name=xiu,app.kubernetes.io/component=origin"
API_PORT = 8000
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass(frozen=True)
class Run:
    rc: int
    seconds: float
    changed: int
    output: str


def run_playbook(playbook: str, inventory: str, *extra: str) -> Run:
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", playbook, "-i", inventory, *extra], cwd=ROOT, capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL)
    text = proc.stdout[proc.stdout.rfind("PLAY RECAP"):]
    changed = sum(int(m.group(3)) for m in RECAP.finditer(text))
    return Run(proc.returncode, time.monotonic() - started, changed, proc.stdout[-3000:] + proc.stderr[-2000:])


def subscriber_counts(payload: dict[str, Any]) -> dict[str, Counter[str]]:
    """query_whole_streams answer -> "app/stream" -> Counter of subscriber types (RtmpPull, ...)."""
    data = payload.get("data")
    out: dict[str, Counter[str]] = {}
    if not isinstance(data, list):
        return out
    for entry in data:
        ident = ((entry.get("publisher") or {}).get("identifier") or {}).get("rtmp")
        if not ident:
            continue
        subs = entry.get("subscribers") or {}
        items = subs.values() if isinstance(subs, dict) else subs
        out[f"{ident['app_name']}/{ident['stream_name']}"] = Counter(str(s.get("sub_type")) for s in items)
    return out


class Cluster:
    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.autoscaling = client.AutoscalingV2Api(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)
        self.ns = namespace

    # ------------------------------------------------------------------------------------------- pods

    def pods(self, selector: str = EDGE_SELECTOR) -> list[Any]:
        items: list[Any] = self.core.list_namespaced_pod(self.ns, label_selector=selector).items
        return [p for p in items if p.metadata.deletion_timestamp is None]

    @staticmethod
    def ready(pod: Any) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))

    @staticmethod
    def restarts(pod: Any, container: str = "xiu") -> int:
        return next((s.restart_count for s in (pod.status.container_statuses or []) if s.name == container), 0)

    def ready_edges(self) -> list[Any]:
        return [p for p in self.pods() if p.status.phase == "Running" and self.ready(p)]

    def edge_deployment(self) -> Any:
        return self.apps.read_namespaced_deployment("xiu-edge", self.ns)

    def hpa(self) -> Any:
        return self.autoscaling.read_namespaced_horizontal_pod_autoscaler("xiu-edge", self.ns)

    def xiu_api(self, pod: str, path: str = "api/query_whole_streams") -> dict[str, Any]:
        resp: Any = self.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{API_PORT}", self.ns, path, _preload_content=False, _request_timeout=5)
        loaded: dict[str, Any] = json.loads(resp.data)
        return loaded

    def streams_on(self, pod: str) -> dict[str, Counter[str]]:
        return subscriber_counts(self.xiu_api(pod))

    def origin_pod(self) -> str:
        pods = [p for p in self.pods(ORIGIN_SELECTOR) if p.status.phase == "Running"]
        if not pods:
            raise RuntimeError("no running origin pod")
        name: str = pods[0].metadata.name
        return name

    def counts_by_edge(self) -> dict[str, dict[str, Counter[str]]]:
        """Per ready edge: stream -> subscriber types. An edge whose API fails maps to {}."""
        out: dict[str, dict[str, Counter[str]]] = {}
        for pod in self.ready_edges():
            try:
                out[pod.metadata.name] = self.streams_on(pod.metadata.name)
            except Exception:  # noqa: BLE001 - a pod going away mid-sample is data, not an error
                out[pod.metadata.name] = {}
        return out

    def endpoint_ready(self, pod_ip: str, service: str = "xiu-rtmp") -> bool | None:
        """Whether the Service's EndpointSlices list pod_ip as ready (None: not listed at all)."""
        slices = self.discovery.list_namespaced_endpoint_slice(
            self.ns, label_selector=f"kubernetes.io/service-name={service}").items
        for s in slices:
            for ep in s.endpoints or []:
                if pod_ip in (ep.addresses or []):
                    return bool(ep.conditions and ep.conditions.ready)
        return None

    def wait_edges(self, replicas: int, streams: list[str], timeout: float) -> float:
        """Until exactly `replicas` edges are ready and every one holds every stream. Returns seconds."""
        started = time.monotonic()
        last = ""
        while time.monotonic() - started < timeout:
            edges = self.ready_edges()
            all_pods = self.pods()
            if len(edges) == replicas and len(all_pods) == replicas:
                held = {p.metadata.name: set(self.streams_on(p.metadata.name)) for p in edges}
                if all(set(streams) <= s for s in held.values()):
                    return time.monotonic() - started
                last = f"streams per edge {held}"
            else:
                last = f"{len(edges)} ready of {len(all_pods)} edge pods"
            time.sleep(1)
        raise TimeoutError(f"{replicas} ready edges with {streams} not reached in {timeout}s: {last}")

    def wait_pods_gone(self, names: set[str], keep: int, timeout: float) -> float:
        """Until only `keep` of the named edge pods still exist (terminating ones count). Returns seconds."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            items: list[Any] = self.core.list_namespaced_pod(self.ns, label_selector=EDGE_SELECTOR).items
            if len({p.metadata.name for p in items} & names) <= keep:
                return time.monotonic() - started
            time.sleep(0.5)
        raise TimeoutError(f"edge pods {names} did not shrink to {keep} in {timeout}s")

    # ------------------------------------------------------------------------------------------ nodes

    def container_pid(self, pod: Any, container: str = "xiu") -> tuple[str, int]:
        """(node container name, host pid) of a pod's container, from the node's containerd (ctr task ls)."""
        status = next(s for s in pod.status.container_statuses if s.name == container)
        cid = status.container_id.split("://", 1)[1]
        node = pod.spec.node_name
        out = subprocess.run(["docker", "exec", node, "ctr", "-n", "k8s.io", "task", "ls"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        for line in out.splitlines():
            fields = line.split()
            if fields and fields[0] == cid:
                return node, int(fields[1])
        raise RuntimeError(f"no containerd task {cid} on {node}")

    @staticmethod
    def signal(node: str, pid: int, sig: str) -> None:
        subprocess.run(["docker", "exec", node, "kill", f"-{sig}", str(pid)], check=True, timeout=30)
