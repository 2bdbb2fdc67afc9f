"""Pure planning of the lab: node names, roles and addresses on the lab network, the MetalLB pool.

Nothing here touches Docker; tests/lab/test_lab_plan.py covers it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DEFAULT_LAB = "xiu-lab"
# A /24 from the 172.16.0.0/12 private block that Docker's default pools (172.17-172.31 /16s are handed out
# from the bottom) are unlikely to reach. Override with LAB_SUBNET if it clashes.
DEFAULT_SUBNET = "172.31.250.0/24"

# Layout of the lab subnet (offsets from the network address):
#   .1            gateway (the host's side of the bridge)
#   .10 ...       nodes, fixed addresses, node i at .10+i
#   .2 - .127     Docker's --ip-range (the nodes' fixed addresses lie inside it, so Docker accepts them;
#                 nothing else is ever attached to the lab network)
#   .200 - .250   MetalLB pool (outside Docker's range: Docker never hands these out)
GATEWAY_OFFSET = 1
NODE_OFFSET = 10
POOL_FIRST_OFFSET = 200
POOL_LAST_OFFSET = 250


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # "server" (control plane) or "agent" (worker)
    ip: str


@dataclass(frozen=True)
class LabPlan:
    lab: str
    subnet: str
    gateway: str
    ip_range: str
    metallb_first: str
    metallb_last: str
    nodes: tuple[Node, ...] = field(default_factory=tuple)

    @property
    def network(self) -> str:
        return f"{self.lab}-net"

    @property
    def metallb_range(self) -> str:
        return f"{self.metallb_first}-{self.metallb_last}"

    @property
    def servers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "server")

    @property
    def agents(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "agent")


def make_plan(nodes: int = 3, servers: int = 1, subnet: str = DEFAULT_SUBNET, lab: str = DEFAULT_LAB) -> LabPlan:
    """Plan ``nodes`` nodes, the first ``servers`` of them control-plane nodes, on ``subnet``."""
    if nodes < 1:
        raise ValueError("the lab needs at least one node")
    if not 1 <= servers <= nodes:
        raise ValueError(f"servers must be between 1 and the number of nodes ({nodes}), got {servers}")
    if not lab.replace("-", "").isalnum() or not lab[0].isalpha() or lab != lab.lower():
        raise ValueError(f"lab name must be lower-case letters, digits and '-', starting with a letter: {lab!r}")
    net = ipaddress.ip_network(subnet, strict=True)
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 24:
        raise ValueError(f"the lab subnet must be an IPv4 network of /24 or larger, got {subnet}")
    if not net.is_private:
        raise ValueError(f"the lab subnet must be a private network, got {subnet}")
    if NODE_OFFSET + nodes > 127:
        raise ValueError("at most 117 nodes fit the lab layout")
    base = net.network_address
    ip_range = ipaddress.ip_network(f"{base}/25")
    planned = tuple(
        Node(
            name=f"{lab}-{'server' if i < servers else 'agent'}{i + 1 if i < servers else i - servers + 1}",
            role="server" if i < servers else "agent",
            ip=str(base + NODE_OFFSET + i),
        )
        for i in range(nodes)
    )
    return LabPlan(
        lab=lab,
        subnet=str(net),
        gateway=str(base + GATEWAY_OFFSET),
        ip_range=str(ip_range),
        metallb_first=str(base + POOL_FIRST_OFFSET),
        metallb_last=str(base + POOL_LAST_OFFSET),
        nodes=planned,
    )


def pool_inside_subnet(plan: LabPlan) -> bool:
    """The workplace network rule: the MetalLB pool must lie inside the lab's own network."""
    net = ipaddress.IPv4Network(plan.subnet)
    first = ipaddress.IPv4Address(plan.metallb_first)
    last = ipaddress.IPv4Address(plan.metallb_last)
    nodes = {ipaddress.IPv4Address(n.ip) for n in plan.nodes}
    return first in net and last in net and first <= last and not any(first <= ip <= last for ip in nodes)
