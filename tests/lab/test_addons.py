"""Cluster add-ons (issue 4): pure checks of the lab preparation, the rendered add-on objects, and the running lab.

* Unit tests (always): lab/addons inventory and chart assembly, the bundle's add-on images.
* Rendered objects (``make lab-check`` or STREAMOPS_ADDONS_RENDER=1; needs the lab's add-on inventory and charts,
  ``python3 -m lab.addons prepare``, and the bundle's helm):
  the lab inventory's add-ons rendered with their charts, ingress-nginx included (it never runs in the lab),
  validated against the pinned schemas and cross-referenced.
* Live lab (``make lab-check``, STREAMOPS_LAB_CHECK=1): MetalLB addresses reachable from the host, HTTPS on the xiu
  hostnames with certificates Pebble issued over ACME HTTP-01 (curl verifies against build/lab/ca.pem), HTTP->HTTPS
  redirect, metrics API / kubectl top, endpoints.json, and a second add-on run with changed=0.
Traffic goes only to the lab's own addresses (endpoints.json), never elsewhere.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ROOT / "build" / "lab" / "endpoints.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab.addons import charts, inventory  # noqa: E402
from lab.bundle.components import plan  # noqa: E402
from lab.bundle.pins import Pins  # noqa: E402

LIVE = os.environ.get("STREAMOPS_LAB_CHECK") == "1" and ENDPOINTS.exists()
live = pytest.mark.skipif(not LIVE, reason="live add-on checks run with `make lab-check` against a running lab")

# Upstream chart properties the generic cross-reference checks flag, accepted on purpose: MetalLB's controller
# creates the memberlist Secret at run time; MetalLB's and ingress-nginx's health probes use ports that are not
# declared containerPorts (ingress-nginx declares 10254 only with metrics on; the kubelet does not need them).
KNOWN_UPSTREAM = (
    re.compile(r"^DaemonSet metallb-system/metallb-speaker: volume 'memberlist' references missing Secret"),
    re.compile(r"^(DaemonSet|Deployment) (metallb-system/metallb|ingress-nginx/ingress-nginx)-[a-z-]+: container "
               r"'[a-z]+' (readiness|liveness)Probe\.httpGet\.port [0-9]+ is not a declared containerPort"),
)


# ------------------------------------------------------------------------------------------------- unit tests


def _sources(tmp: Path) -> inventory.AddonSources:
    return inventory.AddonSources(*(tmp / n for n in ("mc", "cc", "ms", "in", "ca.crt", "t.crt", "t.key", "ca.pem")))


def test_first_address_of_range_and_cidr() -> None:
    assert inventory.first_address("172.31.250.200-172.31.250.250") == "172.31.250.200"
    assert inventory.first_address(" 10.0.0.8 - 10.0.0.9") == "10.0.0.8"
    assert inventory.first_address("192.0.2.240/28") == "192.0.2.241"


def test_addons_yml_points_every_role_at_lab_sources(tmp_path: Path) -> None:
    data = yaml.safe_load(inventory.addons_yml("172.31.250.200-172.31.250.250", _sources(tmp_path)))
    # The workplace network rule: no issuer that would register with a public CA.
    assert data["cert_manager_letsencrypt_enabled"] is False
    assert data["xiu_cluster_issuer"] == data["cert_manager_acme_issuer_name"] == "pebble"
    assert data["cert_manager_acme_server"].startswith("https://pebble.pebble.svc")
    assert data["traefik_load_balancer_ip"] == data["pebble_dns_answer_ipv4"] == "172.31.250.200"
    assert f"--acme-http01-solver-nameservers={inventory.PEBBLE_DNS_CLUSTER_IP}:53" in data[
        "cert_manager_controller_extra_args"
    ]
    assert ipaddress.ip_address(data["pebble_dns_cluster_ip"]) in ipaddress.ip_network("10.96.0.0/12")
    for key in ("metallb_chart_source", "cert_manager_chart_source", "metrics_server_chart_source"):
        assert data[key].startswith(str(tmp_path)) and data[key.replace("source", "sha256")] == ""
    assert data["cert_manager_acme_ca_bundle"] == '{{ lookup("ansible.builtin.file", "' + str(tmp_path / "ca.crt") + '") }}'
    assert all(v.startswith(inventory.LAB_IMAGES + "/") for v in data["cert_manager_image_repositories"].values())


def test_cert_manager_chart_yaml_and_crds_template() -> None:
    tpl = "apiVersion: v1\nname: cert-manager\nversion: v0.1.0\nappVersion: v0.1.0\nannotations:\n" \
          '  artifacthub.io/prerelease: "{{IS_PRERELEASE}}"\n'
    chart = yaml.safe_load(charts.cert_manager_chart_yaml(tpl, "v1.11.5"))
    assert chart["version"] == chart["appVersion"] == "v1.11.5"
    assert chart["annotations"]["artifacthub.io/prerelease"] == "false"
    text = charts.cert_manager_crds_template(["kind: A\n", "---\nkind: B\n"])
    assert text.startswith("{{- if .Values.installCRDs }}\n") and text.endswith("{{- end }}\n")
    assert text.count("kind:") == 2


def test_bundle_builds_every_addon_image() -> None:
    pins = Pins.load()
    p = plan(pins)
    refs = {i.ref for i in p.images}
    lab = inventory.LAB_IMAGES
    expected = {
        f"{lab}/metallb-controller:{pins['metallb_lab']}",
        f"{lab}/metallb-speaker:{pins['metallb_lab']}",
        f"{lab}/traefik:{pins['traefik_lab']}",
        f"{lab}/metrics-server:{pins['metrics_server']}",
        f"{lab}/pebble:{pins['pebble']}",
        f"{lab}/pebble-challtestsrv:{pins['pebble']}",
        *(f"{lab}/cert-manager-{c}:{pins['cert_manager_lab']}" for c in ("controller", "webhook", "cainjector", "acmesolver")),
    }
    assert expected <= refs
    traefik = p.step("traefik")
    assert len(getattr(traefik, "replaces")) == 3
    assert getattr(p.step("cert-manager"), "replaces") == ()


# --------------------------------------------------------------------------------------------- rendered objects


def _lab_render_ready() -> str:
    if os.environ.get("STREAMOPS_LAB_CHECK") != "1" and os.environ.get("STREAMOPS_ADDONS_RENDER") != "1":
        return "renders the lab's add-ons (~2 min): runs with `make lab-check` or STREAMOPS_ADDONS_RENDER=1"
    addons = ROOT / "inventories" / "lab" / "group_vars" / "all" / "addons.yml"
    if not addons.exists() or not ENDPOINTS.exists():
        return "no lab add-on inventory (python3 -m lab.addons prepare)"
    helm = Path(json.loads(ENDPOINTS.read_text(encoding="utf-8")).get("bundle", "/nonexistent")) / "bin" / "helm"
    if not helm.exists() and not shutil.which("helm"):
        return "no helm (the lab bundle's bin/helm)"
    return ""


@pytest.fixture(scope="module")
def lab_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    why = _lab_render_ready()
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp("lab-render")
    cmd = [
        str(Path(sys.executable).with_name("ansible-playbook")), "playbooks/render.yml", "-i", "inventories/lab",
        "-e", f"xiu_cluster_render_dir={out}", "-e", "xiu_cluster_render_charts=true",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    # ingress-nginx: the role the lab cannot run, rendered with the chart of its Go module (a second render with
    # the controller switched; only its ingress_nginx directory is kept).
    other = tmp_path_factory.mktemp("lab-render-nginx")
    nginx = [*cmd[:4], "-e", f"xiu_cluster_render_dir={other}", "-e", "xiu_cluster_render_charts=true",
             "-e", "xiu_cluster_ingress_controller=ingress_nginx", "-e", "ingress_nginx_acknowledge_retirement=true"]
    subprocess.run(nginx, cwd=ROOT, check=True, capture_output=True, timeout=600)
    shutil.copytree(other / "ingress_nginx", out / "ingress_nginx")
    return out


def _docs(root: Path, role: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((root / role).glob("*.yaml"))]


def test_lab_render_has_every_addon(lab_render: Path) -> None:
    for role in ("metallb", "traefik", "cert_manager", "pebble", "metrics_server", "ingress_nginx"):
        assert list((lab_render / role).glob("*.yaml")), f"nothing rendered for {role}"
    kinds = {(d["kind"], d["metadata"]["name"]) for d in _docs(lab_render, "cert_manager")}
    assert ("ClusterIssuer", "pebble") in kinds and ("ClusterIssuer", "letsencrypt-prod") not in kinds


def test_lab_render_validates_and_cross_references(lab_render: Path) -> None:
    from tests.manifests.crossrefs import CHECKS
    from tools.k8s_schemas import load_manifests, load_store

    docs = [d for d in load_manifests(lab_render) if isinstance(d.obj, dict)]
    store = load_store()
    schema_errors = [f"{d.file}: {e}" for d in docs for e in store.validate(d.obj)]
    assert not schema_errors, "\n".join(schema_errors)
    objs = [d.obj for d in docs]
    errors = [e for check in CHECKS.values() for e in check(objs) if not any(rx.match(e) for rx in KNOWN_UPSTREAM)]
    assert not errors, "\n".join(errors)


def test_ingress_nginx_render_is_tuned_for_streams(lab_render: Path) -> None:
    docs = _docs(lab_render, "ingress_nginx")
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-controller"))
    data = config["data"]
    assert data["ssl-redirect"] == "true" and data["allow-snippet-annotations"] == "false"
    assert int(data["proxy-read-timeout"]) >= 3600 and data["proxy-buffering"] == "off"
    assert not any("helm.sh/hook" in (d["metadata"].get("annotations") or {}) for d in docs)
    assert any(d["kind"] == "Certificate" for d in docs), "admission webhook certificate should come from cert-manager"
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert _node_loss_settings(pod) == ("DoNotSchedule", {"node.kubernetes.io/unreachable": 30,
                                                          "node.kubernetes.io/not-ready": 30})


def _node_loss_settings(pod: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """(whenUnsatisfiable of the hostname spread constraint, NoExecute toleration seconds) of a pod spec."""
    spread = next((c["whenUnsatisfiable"] for c in pod.get("topologySpreadConstraints") or []
                   if c["topologyKey"] == "kubernetes.io/hostname"), "")
    waits = {t["key"]: t["tolerationSeconds"] for t in pod.get("tolerations") or [] if t.get("effect") == "NoExecute"}
    return spread, waits


def test_traefik_survives_a_node_loss(lab_render: Path) -> None:
    docs = _docs(lab_render, "traefik")
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert _node_loss_settings(pod) == ("DoNotSchedule", {"node.kubernetes.io/unreachable": 30,
                                                          "node.kubernetes.io/not-ready": 30})
    assert any(d["kind"] == "PodDisruptionBudget" for d in docs)


# ------------------------------------------------------------------------------------------------------ live lab


@pytest.fixture(scope="module")
def endpoints() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ENDPOINTS.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def addons(endpoints: dict[str, Any]) -> dict[str, Any]:
    assert "addons" in endpoints, "endpoints.json has no `addons` entry (python3 -m lab.addons prepare)"
    entry: dict[str, Any] = endpoints["addons"]
    subnet = ipaddress.ip_network(endpoints["network"]["subnet"])
    assert ipaddress.ip_address(entry["ingress_ip"]) in subnet, "the ingress address must lie in the lab network"
    return entry


@pytest.fixture(scope="module")
def api(endpoints: dict[str, Any]) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=endpoints["kubeconfig"])  # type: ignore[no-untyped-call]


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=30)


@live
def test_endpoints_json_lists_the_addons(addons: dict[str, Any]) -> None:
    for key in ("ingress_ip", "hls_host", "flv_host", "ca_pem", "cluster_issuer", "pebble_dns"):
        assert addons.get(key), key


@live
def test_endpoints_json_lists_xiu_and_its_addresses_are_served(api: Any, endpoints: dict[str, Any]) -> None:
    """The xiu entry names the addresses the Services really got, and the token files are private."""
    from kubernetes import client

    xiu = endpoints["xiu"]
    for key in ("rtmp_publish_url", "rtmp_play_url", "hls_url", "flv_url", "publish_token_file", "play_token_file"):
        assert xiu.get(key), key
    for key in ("publish_token_file", "play_token_file"):
        path = Path(xiu[key])
        assert path.is_file() and len(path.read_text().strip()) >= 24, key
        assert path.stat().st_mode & 0o077 == 0, f"{path} must be readable by its owner only"
    core = client.CoreV1Api(api)
    for svc, key in (("xiu-ingest", "ingest_ip"), ("xiu-rtmp", "rtmp_ip"), ("traefik", "ingress_ip")):
        ns = "traefik" if svc == "traefik" else xiu["namespace"]
        ingress = core.read_namespaced_service(svc, ns).status.load_balancer.ingress or []
        assert [i.ip for i in ingress] == [xiu[key]], f"{svc}: {ingress} != {xiu[key]}"
    assert xiu["rtmp_publish_url"].startswith(f"rtmp://{xiu['ingest_ip']}:1935/")


@live
def test_metallb_assigns_reachable_addresses(api: Any, endpoints: dict[str, Any], addons: dict[str, Any]) -> None:
    from kubernetes import client

    subnet = ipaddress.ip_network(endpoints["network"]["subnet"])
    services: list[Any] = client.CoreV1Api(api).list_service_for_all_namespaces().items
    lbs: list[Any] = [s for s in services if s.spec.type == "LoadBalancer"]
    assert lbs, "no LoadBalancer Service"
    for svc in lbs:
        ingress = (svc.status.load_balancer.ingress or []) if svc.status.load_balancer else []
        assert ingress, f"{svc.metadata.namespace}/{svc.metadata.name} has no address"
        assert ipaddress.ip_address(ingress[0].ip) in subnet
    traefik = next(s for s in lbs if s.metadata.name == "traefik")
    assert traefik.status.load_balancer.ingress[0].ip == addons["ingress_ip"]
    with socket.create_connection((addons["ingress_ip"], 443), timeout=5):
        pass


@live
@pytest.mark.parametrize("host_key", ["hls_host", "flv_host"])
def test_https_with_acme_certificate_verified_by_curl(api: Any, addons: dict[str, Any], host_key: str) -> None:
    from kubernetes import client

    host, ip, ca = addons[host_key], addons["ingress_ip"], addons["ca_pem"]
    assert Path(ca).is_file(), f"{ca} missing (written by the pebble role)"
    certs: Any = client.CustomObjectsApi(api).list_namespaced_custom_object("cert-manager.io", "v1", "xiu", "certificates")
    cert = next(c for c in certs["items"] if host in c["spec"]["dnsNames"])
    ready = [c for c in cert.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", f"Certificate {cert['metadata']['name']} not Ready: {cert.get('status')}"
    assert cert["spec"]["issuerRef"]["name"] == addons["cluster_issuer"]
    # Certificate verified (chain to Pebble's root, host name) by curl; any HTTP status from xiu is fine.
    result = _curl("--cacert", ca, "--resolve", f"{host}:443:{ip}", "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}",
                   f"https://{host}/live/nostream.flv" if host.startswith("flv") else f"https://{host}/live/nostream/index.m3u8")
    assert result.returncode == 0, result.stderr
    code, verify = result.stdout.split()
    assert verify == "0" and code.isdigit() and code != "000"
    issuer = subprocess.run(
        ["openssl", "s_client", "-connect", f"{ip}:443", "-servername", host, "-showcerts"],
        input="", capture_output=True, text=True, timeout=30,
    ).stdout
    assert "Pebble" in issuer, "the served certificate should come from Pebble"


@live
def test_plain_http_redirects_to_https(addons: dict[str, Any]) -> None:
    host, ip = addons["hls_host"], addons["ingress_ip"]
    result = _curl("--resolve", f"{host}:80:{ip}", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                   f"http://{host}/live/x/index.m3u8")
    code, location = result.stdout.split()
    assert code in ("301", "308"), result.stdout
    assert location == f"https://{host}/live/x/index.m3u8"


@live
def test_metrics_are_served(api: Any, endpoints: dict[str, Any]) -> None:
    from kubernetes import client

    metrics: Any = client.CustomObjectsApi(api).list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    nodes = metrics["items"]
    assert len(nodes) == len(endpoints["nodes"])
    kubectl = Path(endpoints["bundle"]) / "bin" / "kubectl"
    top = subprocess.run([str(kubectl), "--kubeconfig", endpoints["kubeconfig"], "top", "pods", "-A"],
                         capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and "traefik" in top.stdout, top.stderr


@live
@pytest.mark.skipif(os.environ.get("STREAMOPS_LAB_SKIP_RERUN") == "1", reason="STREAMOPS_LAB_SKIP_RERUN=1")
def test_second_addon_run_changes_nothing() -> None:
    playbook = Path(sys.executable).with_name("ansible-playbook")
    run = subprocess.run([str(playbook), "playbooks/site.yml", "-i", "inventories/lab", "--tags", "addons"],
                         cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:]
    recap = re.search(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)", run.stdout)
    assert recap and recap.group(1) == "0", run.stdout[-3000:]
