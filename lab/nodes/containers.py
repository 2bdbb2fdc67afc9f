"""Node containers: systemd as PID 1, flags from /work/shared/LAB-FACTS.md (no --privileged: the host's
bounding set lacks CAP_SYS_RESOURCE), per-node identity (machine-id, SSH host keys), the lab's SSH key."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Callable

from lab import docker as dk
from lab.nodes.plan import LabPlan, Node

ROLE_LABEL = f"{dk.LABEL}.role"


def cgroup_mounts(mounts: str) -> list[str]:
    """Mount points of the host's cgroup v1 controllers and the cgroup2 `unified` mount, from /proc/mounts text.

    Each is bind-mounted into the node at the same path: mounting the whole host /sys/fs/cgroup instead made
    the node's systemd remount the host's cgroup tmpfs read-only (LAB-FACTS)."""
    points: list[str] = []
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] in ("cgroup", "cgroup2") and parts[1].startswith("/sys/fs/cgroup/"):
            points.append(parts[1])
    if not points:
        raise RuntimeError(
            "no cgroup v1 controller mounts under /sys/fs/cgroup/: the lab's node containers are made for this "
            "workplace's cgroup-v1 hosts (see /work/shared/LAB-FACTS.md)"
        )
    return sorted(set(points))


def volume_name(node: Node) -> str:
    return f"{node.name}-containerd"


def run_args(plan: LabPlan, node: Node, image: str, cgroups: list[str], kmsg: bool) -> list[str]:
    """``docker create`` arguments for one node (pure; see tests/lab/test_lab_plan.py)."""
    args = [
        "create",
        "--name", node.name,
        "--hostname", node.name,
        "--label", f"{dk.LABEL}={plan.lab}",
        "--label", f"{ROLE_LABEL}={node.role}",
        "--network", plan.network,
        "--ip", node.ip,
        # The embedded DNS of the (internal) lab network forwards to the lab gateway only, where nothing
        # answers: no node ever sends a DNS query beyond the lab network.
        "--dns", plan.gateway,
        "--cap-add", "ALL",
        "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined",
        "--security-opt", "apparmor=unconfined",
        "--security-opt", "systempaths=unconfined",
        "--device-cgroup-rule", "a *:* rwm",
        "--cgroupns=host",
        "--tmpfs", "/sys/fs/cgroup:rw,mode=755",
    ]
    for point in cgroups:
        args += ["-v", f"{point}:{point}:rw"]
    args += [
        "--tmpfs", "/run",
        "--tmpfs", "/tmp",
        # containerd's overlayfs snapshots cannot live on the container's own overlay root.
        "-v", f"{volume_name(node)}:/var/lib/containerd",
        "--stop-signal", "SIGRTMIN+3",
    ]
    if kmsg:
        # kubelet's OOM watcher reads the kernel log.
        args += ["--device", "/dev/kmsg:/dev/kmsg:r"]
    args.append(image)
    return args


def identity_tar(node: Node, plan: LabPlan, authorized_key: str, machine_id: str | None = None) -> bytes:
    """Files copied into a created node before its first boot: machine-id, root's authorized_keys, gateway,
    resolv.conf for pods."""
    files = {
        "etc/machine-id": ((machine_id or uuid.uuid4().hex) + "\n", 0o444),
        "root/.ssh/authorized_keys": (authorized_key.strip() + "\n", 0o600),
        "etc/lab/gateway": (plan.gateway + "\n", 0o644),
        # kubelet's resolvConf in the lab (inventory: kubeadm_kubelet_config_extra). The node's own
        # /etc/resolv.conf names Docker's 127.0.0.11, which inside a pod is CoreDNS itself (CoreDNS's loop
        # plugin stops it). The gateway answers nothing, so names outside the cluster simply fail, and no
        # query ever leaves the lab network.
        "etc/lab/resolv.conf": (f"nameserver {plan.gateway}\noptions ndots:1\n", 0o644),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("etc", "etc/lab", "root", "root/.ssh"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o700 if d.startswith("root") else 0o755
            tar.addfile(info)
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def bridge_name(plan: LabPlan) -> str:
    """Host-side bridge interface of the lab network (Linux limits interface names to 15 characters)."""
    return f"br-{plan.lab}"[:15]


def ensure_network(plan: LabPlan) -> bool:
    """Create the lab's internal bridge network if missing. Returns True when created."""
    if dk.exists("network", plan.network):
        net = dk.inspect(plan.network, "network")
        labels = net.get("Labels") or {}
        if labels.get(dk.LABEL) != plan.lab:
            raise RuntimeError(f"network {plan.network} exists but was not created by lab {plan.lab}; not touching it")
        subnets = [c.get("Subnet") for c in (net.get("IPAM") or {}).get("Config") or []]
        if plan.subnet not in subnets:
            raise RuntimeError(f"network {plan.network} has subnet {subnets}, the lab wants {plan.subnet}: run make lab-down")
        return False
    dk.docker(
        "network", "create",
        "--driver", "bridge",
        # --internal: no NAT, no route out; the nodes reach each other and the host's bridge address only.
        "--internal",
        "--subnet", plan.subnet,
        "--gateway", plan.gateway,
        "--ip-range", plan.ip_range,
        "--label", f"{dk.LABEL}={plan.lab}",
        "--opt", f"com.docker.network.bridge.name={bridge_name(plan)}",
        plan.network,
    )
    return True


def ensure_node(plan: LabPlan, node: Node, image: str, authorized_key: str) -> str:
    """Create and start one node if needed. Returns 'created', 'started' or 'running'."""
    if dk.exists("container", node.name):
        info = dk.inspect(node.name)
        if (info.get("Config", {}).get("Labels") or {}).get(dk.LABEL) != plan.lab:
            raise RuntimeError(f"container {node.name} exists but was not created by lab {plan.lab}; not touching it")
        if info.get("State", {}).get("Running"):
            return "running"
        dk.docker("start", node.name)
        return "started"
    if not dk.exists("volume", volume_name(node)):
        dk.docker("volume", "create", "--label", f"{dk.LABEL}={plan.lab}", volume_name(node))
    mounts = Path("/proc/mounts").read_text(encoding="utf-8")
    dk.docker(*run_args(plan, node, image, cgroup_mounts(mounts), Path("/dev/kmsg").exists()))
    dk.docker("cp", "-", f"{node.name}:/", input_bytes=identity_tar(node, plan, authorized_key))
    dk.docker("start", node.name)
    return "created"


def wait_booted(node: Node, timeout: float = 120.0) -> str:
    """Wait until systemd is up and the SSH host key exists; return the node's ed25519 host public key."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = dk.docker("exec", node.name, "systemctl", "is-system-running", check=False).strip()
        if state in ("running", "degraded"):
            key = dk.docker("exec", node.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", check=False).strip()
            active = dk.docker("exec", node.name, "systemctl", "is-active", "ssh", check=False).strip()
            if key and active == "active":
                return key
        time.sleep(0.5)
    raise RuntimeError(f"{node.name} did not boot within {timeout:.0f}s (systemctl is-system-running: {state!r})")


def ensure_ssh_key(state_dir: Path) -> tuple[Path, str]:
    """The lab's SSH key pair (ed25519, no passphrase) in the state dir. Returns (private key, public key)."""
    key = state_dir / "id_ed25519"
    if not key.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xiu-lab", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub").read_text(encoding="utf-8").strip()


def known_hosts_line(node: Node, host_key: str) -> str:
    kind, blob = host_key.split()[:2]
    return f"{node.ip} {kind} {blob}"


def check_ssh(node: Node, key: Path, known_hosts: Path, timeout: float = 30.0) -> None:
    """Wait until ``ssh root@node true`` succeeds with the lab's key and pinned host key."""
    cmd = [
        "ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", f"root@{node.ip}", "true",
    ]
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"ssh to {node.name} ({node.ip}) failed: {proc.stderr.decode(errors='replace').strip()}")
        time.sleep(1)


def remove_lab(lab: str, keep_image: bool, say: Callable[[str], None]) -> None:
    """Remove the lab's containers, volumes, network (and image): exactly the objects labelled with its name."""
    cids = dk.ids("container", lab)
    if cids:
        # A clean systemd shutdown first (the image's stop signal is SIGRTMIN+3): kubelet's pods and the nested
        # cgroups go away with their units; then remove containers and anonymous volumes.
        dk.docker("stop", "-t", "20", *cids, check=False)
    for cid in cids:
        dk.docker("rm", "-f", "-v", cid)
        say(f"removed container {cid[:12]}")
    for vol in dk.ids("volume", lab):
        dk.docker("volume", "rm", vol)
        say(f"removed volume {vol}")
    for net in dk.ids("network", lab):
        dk.docker("network", "rm", net)
        say(f"removed network {net[:12]}")
    if not keep_image:
        for img in dk.ids("image", lab):
            dk.docker("rmi", "-f", img)
            say(f"removed image {img[:19]}")
