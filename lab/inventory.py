"""The lab inventory (inventories/lab) and build/lab/endpoints.json, generated from a LabPlan.

Rendering is pure (tests/lab/test_lab_inventory.py); ``write_*`` put the files in place. Only the files named
here are written: other files in inventories/lab/group_vars/all/ (added by later issues) are left alone."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.nodes.plan import LabPlan

HEADER = "# Written by `make lab` (lab/inventory.py); regenerated on every run: change the generator, not this file.\n"

# Lab DNS domain: .test is reserved for testing (RFC 2606), it can never leak to a real name.
LAB_DOMAIN = "xiu.lab.test"

# Images the bundle builds (lab/bundle/components.py) and every node imports; nothing is pulled in the lab.
LAB_IMAGE_REPOSITORY = "lab.streamops.local"
LAB_AGENT_IMAGE = f"{LAB_IMAGE_REPOSITORY}/python:3-bookworm"

# xiu's namespace and the app name the lab's tests publish under.
XIU_NAMESPACE = "xiu"


def pool_address(metallb_range: str, index: int) -> str:
    """The index-th address (0-based) of a MetalLB range ``a-b`` or CIDR (a CIDR skips its network address)."""
    if "-" in metallb_range:
        bounds = [ipaddress.ip_address(x.strip()) for x in metallb_range.split("-", 1)]
        first, last = int(bounds[0]), int(bounds[1])
    else:
        net = ipaddress.ip_network(metallb_range.strip(), strict=False)
        first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    if first + index > last:
        raise ValueError(f"MetalLB range {metallb_range} has no address number {index}")
    return str(ipaddress.ip_address(first + index))


def fixed_addresses(metallb_range: str) -> dict[str, str]:
    """Fixed LoadBalancer addresses, so endpoints.json is known before anything is deployed.
    The ingress controller takes the first (lab/addons/inventory.py), then the xiu ingest and viewer RTMP."""
    return {
        "ingress": pool_address(metallb_range, 0),
        "xiu_ingest": pool_address(metallb_range, 1),
        "xiu_rtmp": pool_address(metallb_range, 2),
    }


@dataclass(frozen=True)
class LabFiles:
    """Controller-side paths the inventory points at."""

    ssh_key: Path
    known_hosts: Path
    kubeconfig: Path
    bundle: Path


def q(value: str) -> str:
    """A YAML scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def hosts_yml(plan: LabPlan, files: LabFiles) -> str:
    def group(role: str) -> list[str]:
        nodes = [n for n in plan.nodes if n.role == role]
        if not nodes:
            return [f"    {role}:", "      hosts: {}"]
        lines = [f"    {role}:", "      hosts:"]
        for n in nodes:
            lines += [f"        {n.name}:", f"          ansible_host: {n.ip}"]
        return lines

    lines = [
        "---",
        f"# Lab {q(plan.lab)}: node containers on the Docker network {plan.network} ({plan.subnet}).",
        "# Same groups as inventories/prod: server (control plane), agent (workers), both under k8s_cluster.",
        "k8s_cluster:",
        "  children:",
        *group("server"),
        *group("agent"),
        "  vars:",
        "    # Root over SSH with the lab's own key; host keys are pinned per node in known_hosts at boot.",
        "    ansible_user: root",
        f"    ansible_ssh_private_key_file: {q(str(files.ssh_key))}",
        "    ansible_ssh_common_args: >-",
        f"      -o UserKnownHostsFile={files.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        "",
    ]
    return HEADER + "\n".join(lines)


def main_yml(plan: LabPlan, files: LabFiles) -> str:
    """Cluster-wide settings, as in inventories/prod/group_vars/all/main.yml."""
    addrs = fixed_addresses(plan.metallb_range)
    return HEADER + f"""---
# Cluster-wide settings of the lab (same variables as inventories/prod/group_vars/all/main.yml).
xiu_cluster_distribution: kubeadm
xiu_cluster_ingress_controller: traefik

# Reserved test domain: nothing outside the lab resolves it.
xiu_cluster_domain: {LAB_DOMAIN}

# MetalLB pool inside the lab's own Docker network ({plan.subnet}), outside Docker's address range
# ({plan.ip_range}) and away from the nodes: the workplace network rule keeps every lab address there.
xiu_cluster_metallb_range: {plan.metallb_range}

xiu_cluster_acme_email: ops@{LAB_DOMAIN}

# Admin kubeconfig, fetched by the kubeadm role.
xiu_cluster_kubeconfig: {q(str(files.kubeconfig))}

# Air-gap directory: the bundle `make bundle` built from package registries (binaries, CNI plugins, image
# archives). The node roles install from it; nothing is downloaded or pulled in the lab.
xiu_cluster_airgap_dir: {q(str(files.bundle))}

xiu_kubeconfig: "{{{{ xiu_cluster_kubeconfig }}}}"
xiu_namespace: {XIU_NAMESPACE}
xiu_play_auth_enabled: true

# The bundle's images (preloaded on every node by the kubeadm role); same layout as the upstream ones.
xiu_image: "{LAB_IMAGE_REPOSITORY}/xiu:{{{{ versions_xiu }}}}"
xiu_agent_image: {q(LAB_AGENT_IMAGE)}
xiu_image_pull_policy: Never

# Fixed addresses, so the lab's endpoints.json names them before xiu is deployed.
xiu_ingest_load_balancer_ip: {q(addrs["xiu_ingest"])}
xiu_rtmp_load_balancer_ip: {q(addrs["xiu_rtmp"])}
"""


def nodes_yml(plan: LabPlan) -> str:
    """Node-role settings that differ in the lab, each with the reason. No role has a lab branch."""
    endpoint = ""
    if len(plan.servers) > 1:
        endpoint = f"""
# Several servers need a stable API endpoint. The lab has no load balancer or VIP, so it uses the first
# server's address: the control plane is replicated (stacked etcd) but clients do not fail over.
kubeadm_control_plane_endpoint: "{plan.servers[0].ip}:6443"
"""
    return HEADER + f"""---
# Settings of the node roles that the lab's node containers need (see lab/README.md for the why).

# Containers share the host's clock; systemd-timesyncd refuses to run in a container.
prerequisites_time_sync: false

# The node containers run without CAP_SYS_RESOURCE (the host's bounding set lacks it): containerd must not try
# to lower OOM scores below its own.
prerequisites_containerd_restrict_oom_score_adj: true

# The lab host is cgroup v1; Kubernetes >= 1.35 needs an explicit opt-in there.
kubeadm_kubelet_fail_cgroup_v1: false

# Pods with dnsPolicy Default (CoreDNS) get kubelet's resolvConf. The node's own names Docker's 127.0.0.11,
# which inside a pod is the pod itself (CoreDNS detects the loop and stops): use a file that names the lab
# gateway instead (written into each node by lab/nodes/containers.py; nothing answers there, so external
# names fail and no DNS query leaves the lab network).
kubeadm_kubelet_config_extra:
  resolvConf: /etc/lab/resolv.conf
  # Every node's kubelet sees the host's disk (the node containers share it), so the defaults (evict below
  # 15% free imagefs, image GC above 85% use) would fire on a busy build host and delete the preloaded
  # images, which an air-gapped node can never pull back. The lab evicts only when the disk is really full.
  evictionHard:
    memory.available: 100Mi
    nodefs.available: 2%
    nodefs.inodesFree: 2%
    imagefs.available: 2%
  imageGCHighThresholdPercent: 99
  imageGCLowThresholdPercent: 98

# The conntrack table size and timeouts are not per network namespace: kube-proxy must leave them alone
# (maxPerCore 0 / timeouts 0s = do not set), as kind does.
kubeadm_kube_proxy_config_extra:
  conntrack:
    maxPerCore: 0
    tcpEstablishedTimeout: 0s
    tcpCloseWaitTimeout: 0s

# Preflight checks that cannot pass in a container: kernel configuration and modules are the host's
# (no /lib/modules), and the lab host may have more CPUs/memory busy than kubeadm likes.
kubeadm_ignore_preflight_errors:
  - SystemVerification
{endpoint}"""


def secrets_yml(existing: str | None) -> str:
    """xiu tokens for the lab: random, kept across runs (regenerated only if the file is missing)."""
    if existing:
        data = yaml.safe_load(existing) or {}
        pub, play = data.get("xiu_publish_token"), data.get("xiu_play_token")
        if isinstance(pub, str) and isinstance(play, str) and len(pub) >= 24 and len(play) >= 24 and pub != play:
            return existing
    return HEADER + f"""---
# Lab-only xiu tokens (random, generated once; this directory is not committed).
xiu_publish_token: {q(secrets.token_urlsafe(32))}
xiu_play_token: {q(secrets.token_urlsafe(32))}
"""


def endpoints(
    plan: LabPlan, files: LabFiles, bridge: str, old: dict[str, Any] | None = None, token_dir: Path = Path("build/lab")
) -> dict[str, Any]:
    """endpoints.json content: what the lab is and where to reach it. Keys other tools added are kept."""
    data: dict[str, Any] = dict(old or {})
    data.update(
        {
            "lab": plan.lab,
            "kubeconfig": str(files.kubeconfig),
            "api_server": f"https://{plan.servers[0].ip}:6443",
            "network": {"name": plan.network, "subnet": plan.subnet, "gateway": plan.gateway, "bridge": bridge},
            "metallb_range": plan.metallb_range,
            "nodes": [{"name": n.name, "role": n.role, "ip": n.ip} for n in plan.nodes],
            "inventory": "inventories/lab",
            "bundle": str(files.bundle),
            "xiu": xiu_endpoints(plan, token_dir),
        }
    )
    return data


def xiu_endpoints(plan: LabPlan, token_dir: Path) -> dict[str, Any]:
    """Where publishers and viewers reach xiu. URL templates: fill {app}, {stream} and the token file's content."""
    addrs = fixed_addresses(plan.metallb_range)
    return {
        "namespace": XIU_NAMESPACE,
        "ingest_ip": addrs["xiu_ingest"],
        "rtmp_ip": addrs["xiu_rtmp"],
        "ingress_ip": addrs["ingress"],
        "rtmp_publish_url": f"rtmp://{addrs['xiu_ingest']}:1935/{{app}}/{{stream}}?token={{token}}",
        "rtmp_play_url": f"rtmp://{addrs['xiu_rtmp']}:1935/{{app}}/{{stream}}?token={{token}}",
        "hls_url": f"https://hls.{LAB_DOMAIN}/{{app}}/{{stream}}/{{stream}}.m3u8?token={{token}}",
        "flv_url": f"https://flv.{LAB_DOMAIN}/{{app}}/{{stream}}.flv?token={{token}}",
        "hls_host": f"hls.{LAB_DOMAIN}",
        "flv_host": f"flv.{LAB_DOMAIN}",
        "publish_token_file": str(token_dir / "publish-token"),
        "play_token_file": str(token_dir / "play-token"),
    }


def write_token_files(inventory_dir: Path, token_dir: Path) -> None:
    """The lab's tokens as plain files (0600) for ffmpeg and the tests: read from the generated secrets.yml."""
    data = yaml.safe_load((inventory_dir / "group_vars" / "all" / "secrets.yml").read_text(encoding="utf-8"))
    _write(token_dir / "publish-token", data["xiu_publish_token"], 0o600)
    _write(token_dir / "play-token", data["xiu_play_token"], 0o600)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    tmp.replace(path)


def write_inventory(inventory_dir: Path, plan: LabPlan, files: LabFiles) -> None:
    gv = inventory_dir / "group_vars" / "all"
    _write(inventory_dir / "hosts.yml", hosts_yml(plan, files))
    _write(gv / "main.yml", main_yml(plan, files))
    _write(gv / "nodes.yml", nodes_yml(plan))
    secrets_file = gv / "secrets.yml"
    old = secrets_file.read_text(encoding="utf-8") if secrets_file.exists() else None
    _write(secrets_file, secrets_yml(old), 0o600)


def write_endpoints(path: Path, plan: LabPlan, files: LabFiles, bridge: str) -> dict[str, Any]:
    old: dict[str, Any] | None = None
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            old = loaded if isinstance(loaded, dict) and loaded.get("lab") == plan.lab else None
        except json.JSONDecodeError:
            old = None
    data = endpoints(plan, files, bridge, old, path.parent)
    _write(path, json.dumps(data, indent=2) + "\n")
    return data
