"""Bad input is refused with a clear message before anything is written.

Each case runs a real playbook (render mode: the last step writes files instead of calling the API) and
checks three things: it fails, the message names the problem, and the render directory stayed empty.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GOOD: dict[str, Any] = {
    "xiu_cluster_domain": "stream.example.com",
    "xiu_publish_token": "publish-token-good-value-0001",
    "xiu_play_token": "play-token-good-value-000002",
    "xiu_play_auth_enabled": True,
}
SITE_GOOD: dict[str, Any] = {
    **GOOD,
    "xiu_cluster_metallb_range": "192.0.2.240-192.0.2.250",
    "xiu_cluster_acme_email": "ops@example.com",
}


@dataclass(frozen=True)
class Case:
    playbook: str
    extra: dict[str, Any]
    expect: str


CASES: dict[str, Case] = {
    "domain missing": Case("xiu.yml", {"xiu_cluster_domain": ""}, "xiu_domain must be a lower-case DNS name"),
    "domain malformed": Case("xiu.yml", {"xiu_cluster_domain": "Stream_Example.com"}, "xiu_domain must be"),
    "domain single label": Case("xiu.yml", {"xiu_cluster_domain": "-bad-.example."}, "xiu_domain must be"),
    "publish token too short": Case("xiu.yml", {"xiu_publish_token": "short"}, "xiu_publish_token must be at least"),
    "publish token not url-safe": Case("xiu.yml", {"xiu_publish_token": "has spaces and &=? in it!!"},
                                       "xiu_publish_token must be at least"),
    "play token equals publish token": Case("xiu.yml", {"xiu_play_token": GOOD["xiu_publish_token"]},
                                            "differ from xiu_publish_token"),
    "play token missing with play auth": Case("xiu.yml", {"xiu_play_token": ""}, "xiu_play_token must be"),
    "replicas negative": Case("xiu.yml", {"xiu_edge_replicas": -1}, "must be whole numbers >= 1"),
    "replicas not a number": Case("xiu.yml", {"xiu_edge_replicas": "abc"}, "xiu_edge_replicas"),
    "replicas above hpa max": Case("xiu.yml", {"xiu_edge_replicas": 20}, "Raise xiu_hpa_max_replicas"),
    "cpu target out of range": Case("xiu.yml", {"xiu_hpa_cpu_utilization": 150}, "a percentage 1-100"),
    "source range malformed": Case("xiu.yml", {"xiu_ingest_source_ranges": ["10.0.0.0/33"]},
                                   "xiu_ingest_source_ranges a"),
    "load balancer ip malformed": Case("xiu.yml", {"xiu_rtmp_load_balancer_ip": "10.0.0.256"},
                                       "plain IP"),
    "duplicate ports": Case("xiu.yml", {"xiu_ports": {"rtmp": 1935, "hls": 8080, "httpflv": 8080,
                                                         "api": 8000, "agent": 9000}}, "distinct port numbers"),
    "shared ip with one port": Case("xiu.yml", {"xiu_shared_ip_key": "xiu", "xiu_rtmp_load_balancer_ip": "192.0.2.241",
                                                   "xiu_ingest_load_balancer_ip": "192.0.2.241"},
                                    "different xiu_ingest_service_port"),
    "grace shorter than prestop": Case("xiu.yml", {"xiu_termination_grace_seconds": 5},
                                       "must exceed xiu_prestop_delay_seconds"),
    "unknown ingress controller": Case("xiu.yml", {"xiu_ingress_controller": "haproxy"}, "xiu_ingress_controller"),
    "unknown traffic policy": Case("xiu.yml", {"xiu_external_traffic_policy": "Random"},
                                   "xiu_external_traffic_policy"),
    "node-failure toleration negative": Case("xiu.yml", {"xiu_origin_node_failure_toleration_seconds": -5},
                                             "must be whole"),
    "scale replicas missing": Case("scale.yml", {}, "scale.yml needs -e replicas=N"),
    "scale replicas negative": Case("scale.yml", {"replicas": "-1"}, "scale.yml needs -e replicas=N"),
    "scale replicas zero": Case("scale.yml", {"replicas": "0"}, "scale.yml needs -e replicas=N"),
    "scale replicas abc": Case("scale.yml", {"replicas": "abc"}, "scale.yml needs -e replicas=N"),
    "scale replicas above hpa max": Case("scale.yml", {"replicas": "11"}, "Raise xiu_hpa_max_replicas"),
    "site metallb range reversed": Case("site.yml", {"xiu_cluster_metallb_range": "192.0.2.250-192.0.2.240"},
                                        "xiu_cluster_metallb_range must be"),
    "site metallb cidr malformed": Case("site.yml", {"xiu_cluster_metallb_range": "192.0.2.0/40"},
                                        "xiu_cluster_metallb_range must be"),
    "site acme email malformed": Case("site.yml", {"xiu_cluster_acme_email": "ops-at-example.com"},
                                      "xiu_cluster_acme_email must be"),
    "site distribution unknown": Case("site.yml", {"xiu_cluster_distribution": "minikube"},
                                      "xiu_cluster_distribution must be"),
}


def run_case(case: Case, workdir: Path) -> tuple[int, str, list[Path]]:
    render_dir = workdir / "render"
    inventory = workdir / "hosts.yml"
    # A syntactically complete inventory whose host is never contacted: validation must stop first.
    inventory.write_text(json.dumps({"all": {"children": {"k8s_cluster": {"children": {
        "server": {"hosts": {"node-never-contacted": {"ansible_host": "127.0.0.254"}}}}}}}}))
    base = SITE_GOOD if case.playbook == "site.yml" else GOOD
    values = {**base, "xiu_cluster_render_dir": str(render_dir), **case.extra}
    vars_file = workdir / "vars.json"
    vars_file.write_text(json.dumps(values))
    command = [str(Path(sys.executable).with_name("ansible-playbook")), f"playbooks/{case.playbook}",
               "-i", str(inventory), "-e", f"@{vars_file}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
    written = sorted(p for p in render_dir.rglob("*") if p.is_file()) if render_dir.exists() else []
    return result.returncode, result.stdout + result.stderr, written


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, list[Path]]]:
    def one(name: str) -> tuple[str, tuple[int, str, list[Path]]]:
        return name, run_case(CASES[name], tmp_path_factory.mktemp(name.replace(" ", "-")))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, CASES))


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_before_any_change(name: str, outcomes: dict[str, tuple[int, str, list[Path]]]) -> None:
    code, output, written = outcomes[name]
    assert code != 0, f"{name}: accepted\n{output[-3000:]}"
    assert CASES[name].expect in output, f"{name}: message missing '{CASES[name].expect}'\n{output[-3000:]}"
    assert written == [], f"{name}: files written before the failure: {written}"
    # Nothing beyond validation ran against the nodes either.
    assert "PLAY [Prepare every node]" not in output, f"{name}: site.yml went past validation"


def test_good_input_renders(tmp_path: Path) -> None:
    """The control case: the same harness with valid input succeeds, so the failures above mean something."""
    code, output, written = run_case(Case("xiu.yml", {}, ""), tmp_path)
    assert code == 0, output[-3000:]
    assert len(written) > 10
