"""Checks of a running lab against its real API server (`make lab-check`).

Asserts exactly the issue's "done" list: every node Ready, CoreDNS resolves, pods on different nodes reach each
other over the pod network, and a second site.yml run changes nothing; plus the cluster_dns role's settings
(CoreDNS replicas on different nodes, short node-failure tolerations, a disruption budget). Needs a lab (`make lab`) and
STREAMOPS_LAB_CHECK=1 (set by `make lab-check`); skipped otherwise, so `make pytest` never needs a cluster.

The test pods run the bundle's busybox-based image (the flannel CNI plugin image has a static busybox with
httpd, wget and nslookup): no image is pulled, pull policy Never.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ROOT / "build" / "lab" / "endpoints.json"

pytestmark = pytest.mark.skipif(
    os.environ.get("STREAMOPS_LAB_CHECK") != "1" or not ENDPOINTS.exists(),
    reason="lab checks run with `make lab-check` against a running lab",
)


@pytest.fixture(scope="module")
def endpoints() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ENDPOINTS.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def api(endpoints: dict[str, Any]) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=endpoints["kubeconfig"])  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def core(api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api)


def busybox_image(endpoints: dict[str, Any]) -> str:
    manifest = json.loads((Path(endpoints["bundle"]) / "manifest.json").read_text(encoding="utf-8"))
    for image in manifest["images"]:
        if image["component"] == "cni_flannel_plugin":
            return str(image["ref"])
    raise AssertionError("the bundle has no busybox-based image (cni_flannel_plugin)")


def exec_in(core: Any, ns: str, pod: str, command: list[str]) -> str:
    from kubernetes.stream import stream

    out = stream(
        core.connect_get_namespaced_pod_exec, pod, ns, command=command,
        stderr=True, stdin=False, stdout=True, tty=False,
    )
    return str(out)


def http_get(url: str) -> list[str]:
    """Command for an HTTP GET inside a test pod. (busybox 1.35's `wget -T` segfaults: time out with `timeout`.)"""
    return ["busybox", "timeout", "10", "busybox", "wget", "-q", "-O", "-", url]


@pytest.fixture(scope="module")
def web_pods(core: Any, endpoints: dict[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
    """One busybox httpd pod per node (pinned with nodeName), each serving its node's name, and a Service."""
    from kubernetes import client

    ns = f"lab-check-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={"app.kubernetes.io/part-of": "lab-check"})))
    image = busybox_image(endpoints)
    pods: dict[str, str] = {}
    try:
        for node in endpoints["nodes"]:
            name = f"web-{node['name']}"
            script = f"mkdir -p /tmp/www && echo {node['name']} > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www"
            core.create_namespaced_pod(ns, client.V1Pod(
                metadata=client.V1ObjectMeta(name=name, labels={"app": "web", "node": node["name"]}),
                spec=client.V1PodSpec(
                    node_name=node["name"],
                    tolerations=[client.V1Toleration(operator="Exists")],
                    termination_grace_period_seconds=1,
                    containers=[client.V1Container(
                        name="web", image=image, image_pull_policy="Never",
                        command=["/bin/sh", "-c", script],
                        ports=[client.V1ContainerPort(container_port=8080)],
                        readiness_probe=client.V1Probe(tcp_socket=client.V1TCPSocketAction(port=8080), period_seconds=1),
                    )],
                ),
            ))
            pods[node["name"]] = name
        core.create_namespaced_service(ns, client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80, target_port=8080)]),
        ))
        deadline = time.monotonic() + 120
        while True:
            items = core.list_namespaced_pod(ns).items
            ready = [
                p for p in items
                if p.status.pod_ip and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ]
            if len(ready) == len(pods):
                break
            assert time.monotonic() < deadline, f"test pods not Ready after 120s: {[(p.metadata.name, p.status.phase) for p in items]}"
            time.sleep(1)
        yield ns, {p.spec.node_name: p.status.pod_ip for p in ready}
    finally:
        core.delete_namespace(ns, grace_period_seconds=0)


def test_every_node_ready(core: Any, endpoints: dict[str, Any]) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert sorted(nodes) == sorted(n["name"] for n in endpoints["nodes"])
    for name, node in nodes.items():
        ready = [c.status for c in node.status.conditions if c.type == "Ready"]
        assert ready == ["True"], f"{name} is not Ready: {ready}"
        ips = [a.address for a in node.status.addresses if a.type == "InternalIP"]
        expected = next(n["ip"] for n in endpoints["nodes"] if n["name"] == name)
        assert ips == [expected], f"{name} has InternalIP {ips}, the lab gave it {expected}"


def test_pods_on_different_nodes_reach_each_other(core: Any, web_pods: tuple[str, dict[str, str]]) -> None:
    ns, ips = web_pods
    assert len(set(ips.values())) == len(ips), "pod IPs are not unique"
    for src in ips:
        for dst, ip in ips.items():
            if dst == src:
                continue
            out = exec_in(core, ns, f"web-{src}", http_get(f"http://{ip}:8080/"))
            assert out.strip() == dst, f"pod on {src} -> pod on {dst} ({ip}): got {out!r}"


def test_coredns_resolves(core: Any, web_pods: tuple[str, dict[str, str]]) -> None:
    ns, ips = web_pods
    kubernetes_ip = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    web_ip = core.read_namespaced_service("web", ns).spec.cluster_ip
    for node in ips:
        pod = f"web-{node}"
        out = exec_in(core, ns, pod, ["busybox", "nslookup", "kubernetes.default.svc.cluster.local"])
        assert re.search(rf"Address:\s*{re.escape(kubernetes_ip)}\b", out), f"from {node}: {out!r}"
        out = exec_in(core, ns, pod, ["busybox", "nslookup", f"web.{ns}.svc.cluster.local"])
        assert re.search(rf"Address:\s*{re.escape(web_ip)}\b", out), f"from {node}: {out!r}"
    # And the name leads somewhere: DNS + kube-proxy + the pod network in one request.
    out = exec_in(core, ns, f"web-{next(iter(ips))}", http_get("http://web/"))
    assert out.strip() in ips, f"http://web/ answered {out!r}"


def test_coredns_survives_a_node_loss(api: Any, core: Any) -> None:
    """The cluster_dns role: replicas on different nodes, evicted 30 s after their node fails, a budget."""
    from kubernetes import client

    dep = client.AppsV1Api(api).read_namespaced_deployment("coredns", "kube-system")
    pods = [p for p in core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
            if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]
    nodes = [p.spec.node_name for p in pods]
    assert dep.spec.replicas >= 2 and len(nodes) == dep.spec.replicas, nodes
    assert len(set(nodes)) == len(nodes), f"CoreDNS replicas share a node: {nodes}"
    waits = {t.key: t.toleration_seconds for t in dep.spec.template.spec.tolerations or [] if t.effect == "NoExecute"}
    assert waits == {"node.kubernetes.io/unreachable": 30, "node.kubernetes.io/not-ready": 30}, waits
    pdb = client.PolicyV1Api(api).read_namespaced_pod_disruption_budget("coredns", "kube-system")
    assert pdb.spec.max_unavailable == 1 and pdb.spec.selector.match_labels == {"k8s-app": "kube-dns"}


RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines -> host -> counters (ok, changed, unreachable, failed)."""
    text = output[output.rfind("PLAY RECAP"):]
    return {
        m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)), "failed": int(m.group(5))}
        for m in RECAP.finditer(text)
    }


def test_second_site_run_changes_nothing(endpoints: dict[str, Any]) -> None:
    extra = os.environ.get("LAB_SITE_ARGS", "").split()
    started = time.monotonic()
    proc = subprocess.run(
        ["ansible-playbook", "playbooks/site.yml", "-i", endpoints["inventory"], *extra],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    seconds = time.monotonic() - started
    recap = parse_recap(proc.stdout)
    print(f"site.yml {' '.join(extra)}: exit {proc.returncode} in {seconds:.0f}s, recap {recap}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert recap, "no PLAY RECAP in the output"
    changed = {host: c["changed"] for host, c in recap.items() if c["changed"]}
    assert not changed, f"second site.yml run changed something: {changed}\n" + "\n".join(
        line for line in proc.stdout.splitlines() if line.startswith("changed:") or line.startswith("TASK [")
    )[-4000:]
