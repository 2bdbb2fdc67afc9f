"""Render test of the k3s role (the lab cannot run k3s: see lab/README.md). No cluster, no root needed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

INVENTORY = """
k8s_cluster:
  children:
    server:
      hosts:
        s1: {k3s_node_ip: 192.0.2.11}
        s2: {k3s_node_ip: 192.0.2.12}
    agent:
      hosts:
        a1: {k3s_node_ip: 192.0.2.21}
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ansible-playbook") is None:
        pytest.skip("ansible-playbook not on PATH (make venv)")
    tmp = tmp_path_factory.mktemp("k3s")
    (tmp / "hosts.yml").write_text(INVENTORY, encoding="utf-8")
    out = tmp / "out"
    proc = subprocess.run(
        ["ansible-playbook", "tests/lab/playbooks/k3s-render.yml", "-i", str(tmp / "hosts.yml"),
         "-e", f"k3s_render_dir={out}"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return out


def config(rendered: Path, host: str) -> dict[str, Any]:
    data = yaml.safe_load((rendered / host / "config.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_first_server_initialises_embedded_etcd_without_bundled_addons(rendered: Path) -> None:
    cfg = config(rendered, "s1")
    assert cfg["cluster-init"] is True
    assert "server" not in cfg
    assert set(cfg["disable"]) >= {"traefik", "servicelb"}
    assert cfg["flannel-backend"] == "vxlan"
    assert cfg["node-ip"] == "192.0.2.11"
    assert "token-file" not in cfg  # a new cluster without k3s_token: the first server generates the token
    unit = (rendered / "s1" / "k3s.service").read_text(encoding="utf-8")
    assert "ExecStart=/usr/local/bin/k3s server" in unit and "Type=notify" in unit


def test_other_servers_join_the_first(rendered: Path) -> None:
    cfg = config(rendered, "s2")
    assert cfg["server"] == "https://192.0.2.11:6443"
    assert "cluster-init" not in cfg
    assert cfg["token-file"] == "/etc/rancher/k3s/token"
    assert set(cfg["disable"]) >= {"traefik", "servicelb"}


def test_agents_join_the_servers(rendered: Path) -> None:
    cfg = config(rendered, "a1")
    assert cfg["server"] == "https://192.0.2.11:6443"
    assert cfg["node-ip"] == "192.0.2.21"
    assert "disable" not in cfg and "cluster-init" not in cfg
    unit = (rendered / "a1" / "k3s-agent.service").read_text(encoding="utf-8")
    assert "ExecStart=/usr/local/bin/k3s agent" in unit


ENDPOINTS = ROOT / "build" / "lab" / "endpoints.json"


@pytest.mark.skipif(
    os.environ.get("STREAMOPS_LAB_CHECK") != "1" or not ENDPOINTS.exists(),
    reason="check-mode run against the lab's nodes: `make lab-check`",
)
def test_k3s_path_check_mode_on_the_lab_nodes(tmp_path: Path) -> None:
    """site.yml --check with the k3s distribution against the real lab nodes: every task runs in check mode
    without failing, and nothing changes (check mode). An air-gap dir with a stand-in binary keeps it offline."""
    airgap = tmp_path / "airgap"
    (airgap / "bin").mkdir(parents=True)
    (airgap / "images").mkdir()
    (airgap / "bin" / "k3s").write_text("#!/bin/sh\n", encoding="utf-8")
    proc = subprocess.run(
        ["ansible-playbook", "playbooks/site.yml", "-i", "inventories/lab", "--check", "--tags", "nodes",
         "-e", "xiu_cluster_distribution=k3s", "-e", f"k3s_airgap_dir={airgap}"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "TASK [streamops.xiu_cluster.k3s : Write the k3s configuration]" in proc.stdout
