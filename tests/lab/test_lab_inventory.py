"""Unit tests of the generated lab inventory and endpoints.json (lab/inventory.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lab import inventory
from lab.nodes.plan import make_plan
from tests.lab.test_cluster import parse_recap

PLAN = make_plan()
FILES = inventory.LabFiles(
    ssh_key=Path("/s/id_ed25519"), known_hosts=Path("/s/known_hosts"), kubeconfig=Path("/b/kubeconfig"),
    bundle=Path("/c/bundle/k"),
)


def test_hosts_yml_has_the_prod_groups() -> None:
    plan = make_plan(4, 2)
    data = yaml.safe_load(inventory.hosts_yml(plan, FILES))
    groups = data["k8s_cluster"]["children"]
    assert list(groups["server"]["hosts"]) == ["xiu-lab-server1", "xiu-lab-server2"]
    assert groups["agent"]["hosts"]["xiu-lab-agent2"]["ansible_host"] == "172.31.250.13"
    v = data["k8s_cluster"]["vars"]
    assert v["ansible_user"] == "root" and v["ansible_ssh_private_key_file"] == "/s/id_ed25519"
    assert "StrictHostKeyChecking=yes" in v["ansible_ssh_common_args"]


def test_single_node_lab_has_an_empty_agent_group() -> None:
    data = yaml.safe_load(inventory.hosts_yml(make_plan(1, 1), FILES))
    assert data["k8s_cluster"]["children"]["agent"]["hosts"] == {}


def test_main_yml_carries_the_cluster_settings() -> None:
    plan = make_plan()
    data = yaml.safe_load(inventory.main_yml(plan, FILES))
    assert data["xiu_cluster_metallb_range"] == plan.metallb_range
    assert data["xiu_cluster_kubeconfig"] == "/b/kubeconfig"
    assert data["xiu_cluster_airgap_dir"] == "/c/bundle/k"
    assert data["xiu_cluster_distribution"] == "kubeadm"
    assert data["xiu_cluster_domain"].endswith(".test")


def test_nodes_yml_sets_the_endpoint_only_for_several_servers() -> None:
    one = yaml.safe_load(inventory.nodes_yml(make_plan(3, 1)))
    three = yaml.safe_load(inventory.nodes_yml(make_plan(3, 3)))
    assert "kubeadm_control_plane_endpoint" not in one
    assert three["kubeadm_control_plane_endpoint"] == "172.31.250.10:6443"
    assert one["kubeadm_kubelet_fail_cgroup_v1"] is False
    assert one["kubeadm_kubelet_config_extra"]["resolvConf"] == "/etc/lab/resolv.conf"
    assert one["kubeadm_kube_proxy_config_extra"]["conntrack"]["maxPerCore"] == 0


def test_secrets_are_kept_across_runs() -> None:
    first = inventory.secrets_yml(None)
    data = yaml.safe_load(first)
    assert len(data["xiu_publish_token"]) >= 24 and data["xiu_publish_token"] != data["xiu_play_token"]
    assert inventory.secrets_yml(first) == first
    assert inventory.secrets_yml("xiu_publish_token: short\n") != "xiu_publish_token: short\n"


def test_endpoints_keep_keys_added_by_others(tmp_path: Path) -> None:
    plan = make_plan()
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"lab": "xiu-lab", "ingress_ip": "172.31.250.200", "nodes": []}), encoding="utf-8")
    data = inventory.write_endpoints(path, plan, FILES, "br-xiu-lab")
    assert data["ingress_ip"] == "172.31.250.200"
    assert [n["ip"] for n in data["nodes"]] == ["172.31.250.10", "172.31.250.11", "172.31.250.12"]
    assert data["network"] == {"name": "xiu-lab-net", "subnet": "172.31.250.0/24", "gateway": "172.31.250.1",
                               "bridge": "br-xiu-lab"}
    assert data["metallb_range"] == plan.metallb_range
    assert json.loads(path.read_text(encoding="utf-8")) == data


def test_write_inventory_leaves_other_files_alone(tmp_path: Path) -> None:
    other = tmp_path / "group_vars" / "all" / "addons.yml"
    other.parent.mkdir(parents=True)
    other.write_text("x: 1\n", encoding="utf-8")
    inventory.write_inventory(tmp_path, make_plan(), FILES)
    assert other.read_text(encoding="utf-8") == "x: 1\n"
    assert (tmp_path / "group_vars" / "all" / "secrets.yml").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "hosts.yml").exists() and (tmp_path / "group_vars" / "all" / "nodes.yml").exists()


def test_parse_recap() -> None:
    out = """PLAY RECAP *********
localhost                  : ok=8    changed=0    unreachable=0    failed=0    skipped=2    rescued=0    ignored=0
xiu-lab-agent1             : ok=36   changed=1    unreachable=0    failed=0    skipped=20   rescued=0    ignored=0
"""
    assert parse_recap(out) == {
        "localhost": {"ok": 8, "changed": 0, "unreachable": 0, "failed": 0},
        "xiu-lab-agent1": {"ok": 36, "changed": 1, "unreachable": 0, "failed": 0},
    }


def test_fixed_addresses_come_from_the_pool_in_order() -> None:
    assert inventory.fixed_addresses("172.31.250.200-172.31.250.250") == {
        "ingress": "172.31.250.200", "xiu_ingest": "172.31.250.201", "xiu_rtmp": "172.31.250.202"}
    assert inventory.pool_address("192.0.2.240/28", 0) == "192.0.2.241"
    with pytest.raises(ValueError, match="no address number 2"):
        inventory.fixed_addresses("10.0.0.8-10.0.0.9")


def test_main_yml_points_xiu_at_the_bundle_images_and_fixed_ips() -> None:
    data = yaml.safe_load(inventory.main_yml(PLAN, FILES))
    assert data["xiu_image"].startswith("lab.streamops.local/xiu:")
    assert data["xiu_agent_image"] == inventory.LAB_AGENT_IMAGE
    assert data["xiu_image_pull_policy"] == "Never"
    addrs = inventory.fixed_addresses(PLAN.metallb_range)
    assert (data["xiu_ingest_load_balancer_ip"], data["xiu_rtmp_load_balancer_ip"]) == (addrs["xiu_ingest"], addrs["xiu_rtmp"])


def test_endpoints_name_the_xiu_urls_and_token_files(tmp_path: Path) -> None:
    data = inventory.write_endpoints(tmp_path / "endpoints.json", PLAN, FILES, "br-x")
    xiu = data["xiu"]
    assert xiu["publish_token_file"] == str(tmp_path / "publish-token")
    url = xiu["rtmp_publish_url"].format(app="live", stream="a", token="t")
    assert url == f"rtmp://{xiu['ingest_ip']}:1935/live/a?token=t"
    assert xiu["hls_url"].startswith("https://hls.xiu.lab.test/")
