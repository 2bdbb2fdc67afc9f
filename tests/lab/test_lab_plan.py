"""Unit tests of the lab's pure parts: address plan, docker arguments, identity files, image key."""

from __future__ import annotations

import io
import ipaddress
import tarfile

import pytest

from lab.nodes import containers, image
from lab.nodes.plan import make_plan, pool_inside_subnet

MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
/dev/vda / ext4 rw 0 0
"""


def test_default_plan_is_three_nodes_one_server() -> None:
    plan = make_plan()
    assert [(n.name, n.role, n.ip) for n in plan.nodes] == [
        ("xiu-lab-server1", "server", "172.31.250.10"),
        ("xiu-lab-agent1", "agent", "172.31.250.11"),
        ("xiu-lab-agent2", "agent", "172.31.250.12"),
    ]
    assert plan.gateway == "172.31.250.1"
    assert plan.metallb_range == "172.31.250.200-172.31.250.250"
    assert plan.network == "xiu-lab-net"


@pytest.mark.parametrize(("nodes", "servers"), [(1, 1), (3, 3), (5, 2), (20, 3)])
def test_pool_stays_inside_the_lab_network_and_away_from_nodes(nodes: int, servers: int) -> None:
    plan = make_plan(nodes, servers, "10.99.0.0/24", "other-lab")
    assert pool_inside_subnet(plan)
    assert len(plan.servers) == servers and len(plan.agents) == nodes - servers
    net = ipaddress.ip_network(plan.subnet)
    docker_range = ipaddress.ip_network(plan.ip_range)
    for node in plan.nodes:
        assert ipaddress.ip_address(node.ip) in docker_range and ipaddress.ip_address(node.ip) in net
    assert ipaddress.ip_address(plan.metallb_first) not in docker_range


@pytest.mark.parametrize(
    ("nodes", "servers", "subnet", "name"),
    [(0, 1, "172.31.250.0/24", "lab"), (2, 3, "172.31.250.0/24", "lab"), (3, 1, "8.8.8.0/24", "lab"),
     (3, 1, "172.31.250.0/25", "lab"), (3, 1, "172.31.250.0/24", "Bad_Name"), (3, 1, "fd00::/64", "lab")],
)
def test_bad_shapes_are_refused(nodes: int, servers: int, subnet: str, name: str) -> None:
    with pytest.raises(ValueError):
        make_plan(nodes, servers, subnet, name)


def test_cgroup_mounts_are_the_controllers_not_the_tmpfs() -> None:
    assert containers.cgroup_mounts(MOUNTS) == [
        "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified",
    ]
    with pytest.raises(RuntimeError):
        containers.cgroup_mounts("/dev/vda / ext4 rw 0 0\n")


def test_run_args_follow_lab_facts() -> None:
    plan = make_plan()
    node = plan.nodes[1]
    args = containers.run_args(plan, node, "img:1", containers.cgroup_mounts(MOUNTS), kmsg=True)
    text = " ".join(args)
    assert "--privileged" not in args
    for flag in ("--cap-add ALL", "--cap-drop SYS_RESOURCE", "--security-opt seccomp=unconfined",
                 "--security-opt apparmor=unconfined", "--security-opt systempaths=unconfined",
                 "--cgroupns=host", "--tmpfs /sys/fs/cgroup:rw,mode=755", "--tmpfs /run", "--tmpfs /tmp",
                 "--stop-signal SIGRTMIN+3", f"--ip {node.ip}", f"--network {plan.network}",
                 f"--dns {plan.gateway}", "--label io.streamops.xiu-lab=xiu-lab",
                 "-v xiu-lab-agent1-containerd:/var/lib/containerd", "--device /dev/kmsg:/dev/kmsg:r"):
        assert flag in text, flag
    assert "--device-cgroup-rule" in args and args[args.index("--device-cgroup-rule") + 1] == "a *:* rwm"
    assert "-v /sys/fs/cgroup/memory:/sys/fs/cgroup/memory:rw" in text
    assert "-v /sys/fs/cgroup:/sys/fs/cgroup" not in text  # never the whole host tree
    assert args[-1] == "img:1"


def test_identity_tar_gives_each_node_its_own_files() -> None:
    plan = make_plan()
    blob = containers.identity_tar(plan.nodes[0], plan, "ssh-ed25519 AAAA lab", machine_id="0123abcd")
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        def read(name: str) -> str:
            f = tar.extractfile(members[name])
            assert f is not None
            return f.read().decode()
        assert read("etc/machine-id") == "0123abcd\n"
        assert read("root/.ssh/authorized_keys") == "ssh-ed25519 AAAA lab\n"
        assert members["root/.ssh/authorized_keys"].mode == 0o600
        assert members["root/.ssh"].mode == 0o700
        assert read("etc/lab/gateway") == "172.31.250.1\n"
        assert read("etc/lab/resolv.conf").startswith("nameserver 172.31.250.1\n")
    other = containers.identity_tar(plan.nodes[0], plan, "k")
    assert other != containers.identity_tar(plan.nodes[0], plan, "k")  # random machine-id each time


def test_image_key_covers_packages_and_customization() -> None:
    base = image.image_key()
    assert base == image.image_key()
    assert image.image_key(packages=image.PACKAGES + ("vim",)) != base
    assert image.image_key(customize="echo changed\n") != base
    assert image.image_key(packages=tuple(reversed(image.PACKAGES))) == base  # order does not matter
    assert image.node_image(base).tag == f"{image.IMAGE_REPO}:{base}"


def test_known_hosts_line() -> None:
    node = make_plan().nodes[0]
    assert containers.known_hosts_line(node, "ssh-ed25519 AAAAkey root@x") == "172.31.250.10 ssh-ed25519 AAAAkey"
