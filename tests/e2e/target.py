"""Which xiu installation the issue-7 steps (7a-7h) act on, and the clients they share.

The real run (``make e2e``) targets the lab's installation (namespace ``xiu``, from build/lab/endpoints.json).
While developing, the same steps run against a second installation of the collection in its own namespace,
selected by environment variables, so the shared ``xiu`` namespace is never touched:

    E2E_XIU_NAMESPACE=xiu-faults E2E_XIU_INSTANCE=xiu-faults E2E_XIU_INGEST_IP=172.31.250.207 \
    E2E_XIU_RTMP_IP=172.31.250.208 E2E_XIU_DOMAIN=faults.xiu.lab.test E2E_XIU_INVENTORY=/work/main/inventories/lab \
    python -m tests.e2e --endpoints /work/main/build/lab/endpoints.json --only 7a

Every playbook the steps run gets the matching ``-e`` overrides.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from tests.e2e import media
from tests.e2e.cluster import Cluster, Run, run_playbook

ENV = {
    "namespace": "E2E_XIU_NAMESPACE",
    "instance": "E2E_XIU_INSTANCE",
    "ingest_ip": "E2E_XIU_INGEST_IP",
    "rtmp_ip": "E2E_XIU_RTMP_IP",
    "domain": "E2E_XIU_DOMAIN",
    "inventory": "E2E_XIU_INVENTORY",
}
FLV_PORT = 8081
HLS_PORT = 8080
AGENT_PORT = 9000


def overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The E2E_XIU_* variables that are set (non-empty), by their short name."""
    return {key: environ[var] for key, var in ENV.items() if environ.get(var)}


def playbook_args(over: Mapping[str, str]) -> list[str]:
    """`-e` arguments that point the collection's playbooks at the overridden installation."""
    names = {
        "namespace": "xiu_namespace",
        "instance": "xiu_instance",
        "ingest_ip": "xiu_ingest_load_balancer_ip",
        "rtmp_ip": "xiu_rtmp_load_balancer_ip",
        "domain": "xiu_cluster_domain",
    }
    return [arg for key, var in names.items() if key in over for arg in ("-e", f"{var}={over[key]}")]


class Instance(Cluster):
    """The lead's Cluster client, with the object names of one xiu instance (`<instance>-edge`, ...)."""

    def __init__(self, kubeconfig: str, namespace: str, instance: str) -> None:
        super().__init__(kubeconfig, namespace)
        self.instance = instance
        self.kubeconfig = kubeconfig

    def name(self, what: str) -> str:
        return f"{self.instance}-{what}"

    def edge_deployment(self) -> Any:
        return self.apps.read_namespaced_deployment(self.name("edge"), self.ns)

    def hpa(self) -> Any:
        return self.autoscaling.read_namespaced_horizontal_pod_autoscaler(self.name("edge"), self.ns)

    def all_xiu_pods(self) -> list[Any]:
        items: list[Any] = self.core.list_namespaced_pod(
            self.ns, label_selector=f"app.kubernetes.io/name=xiu,app.kubernetes.io/instance={self.instance}").items
        return items

    def restart_total(self) -> dict[str, int]:
        """Per live xiu pod: restarts of all its containers."""
        return {p.metadata.name: sum(s.restart_count for s in (p.status.container_statuses or []))
                for p in self.all_xiu_pods() if p.metadata.deletion_timestamp is None}

    def flv_from_pod(self, pod: str, stream: str, token: str, seconds: float = 2.0, timeout: float = 8.0) -> str:
        """Play `stream` over HTTP-FLV from one given edge (API server pod proxy). "" when it plays, else why not.

        Plays = the first video tag is a keyframe and video keeps arriving in real time for `seconds`.
        """
        _, url, headers, _, _ = self.api.param_serialize(
            "GET", f"/api/v1/namespaces/{self.ns}/pods/{pod}:{FLV_PORT}/proxy/{stream}.flv",
            query_params=[("token", token)], auth_settings=["BearerToken"])
        started = time.monotonic()
        try:
            resp = self.api.rest_client.pool_manager.request(
                "GET", url, headers=headers, preload_content=False, timeout=timeout, retries=False)
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            return f"{type(exc).__name__}"
        try:
            if resp.status != 200:
                return f"HTTP {resp.status}"
            parser = media.FlvParser()
            first: media.FlvTag | None = None
            for chunk in resp.stream(16384):
                for tag in parser.feed(chunk):
                    if tag.kind != 9:
                        continue
                    first = first or tag
                    if not first.keyframe:
                        return "first video tag not a keyframe"
                    if (tag.timestamp_ms - first.timestamp_ms >= seconds * 1000
                            and time.monotonic() - started >= seconds):
                        return ""
                if time.monotonic() - started > timeout:
                    return "too slow"
            return "closed"
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}"
        finally:
            resp.release_conn()


@dataclass
class Target:
    """The installation under test: clients, tokens, the -e overrides for its playbooks."""

    lab: media.Lab
    cluster: Instance
    inventory: str
    extra: list[str]
    clip: Path
    logs: Path
    endpoints: dict[str, Any] = field(default_factory=dict)

    def playbook(self, playbook: str, *args: str) -> Run:
        return run_playbook(playbook, self.inventory, *self.extra, *args)

    @property
    def node_ips(self) -> list[str]:
        return [n["ip"] for n in self.endpoints.get("nodes", [])]


def make_target(lab: media.Lab, kubeconfig: str, namespace: str, inventory: str, clip: Path, logs: Path,
                endpoints: dict[str, Any], environ: Mapping[str, str] | None = None) -> Target:
    over = overrides(os.environ if environ is None else environ)
    if "domain" in over:
        lab = replace(lab, hls_host=f"hls.{over['domain']}", flv_host=f"flv.{over['domain']}")
    if "ingest_ip" in over:
        lab = replace(lab, ingest_ip=over["ingest_ip"])
    if "rtmp_ip" in over:
        lab = replace(lab, rtmp_ip=over["rtmp_ip"])
    ns = over.get("namespace", namespace)
    instance = over.get("instance", "xiu" if ns == namespace else ns)
    return Target(lab, Instance(kubeconfig, ns, instance), over.get("inventory", inventory), playbook_args(over), clip,
                  logs, endpoints)


# --------------------------------------------------------------------------------------------- publishers


class LoopPublisher:
    """A publisher that behaves like a real encoder: when its connection ends it reconnects (after 1 s).

    ffmpeg gives up on the first error, so this loop restarts it. `-rw_timeout` makes a write that hangs on a
    vanished peer (a pod killed without closing its sockets) fail after 5 s instead of the TCP timeout.
    """

    def __init__(self, clip: Path, url: str, log: Path, retry_seconds: float = 1.0) -> None:
        self.clip, self.url, self.retry = clip, url, retry_seconds
        self._out: IO[bytes] = log.open("ab")
        self._stop = threading.Event()
        self.starts: list[float] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.starts.append(time.monotonic())
            self.proc = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "warning", "-re", "-stream_loop", "-1", "-i", str(self.clip),
                 "-c", "copy", "-rw_timeout", "5000000", "-f", "flv", self.url],
                stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self.proc.wait()
            self._stop.wait(self.retry)

    @property
    def reconnects(self) -> int:
        return max(0, len(self.starts) - 1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + 15
        while self._thread.is_alive() and time.monotonic() < deadline:
            proc = self.proc
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            self._thread.join(timeout=1)
        self._out.close()
