"""inventories/lab/group_vars/all/addons.yml: the add-on roles pointed at the lab's own sources.

No role has a lab branch: everything here is an ordinary role variable (documented in each role's
defaults/main.yml). Rendering is pure (tests/lab/test_addons.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.inventory import pool_address, q

HEADER = "# Written by `python3 -m lab.addons prepare` (lab/addons/inventory.py); change the generator, not this file.\n"
LAB_IMAGES = "lab.streamops.local"
PEBBLE_NAMESPACE = "pebble"
PEBBLE_ISSUER = "pebble"
# Static band of the service CIDR (10.96.0.0/12): kube-apiserver hands out dynamic ClusterIPs above it first.
PEBBLE_DNS_CLUSTER_IP = "10.96.0.53"


@dataclass(frozen=True)
class AddonSources:
    """Controller-side paths of what the lab built or prepared."""

    metallb_chart: Path
    cert_manager_chart: Path
    metrics_server_chart: Path
    ingress_nginx_chart: Path
    pebble_ca_cert: Path
    pebble_cert: Path
    pebble_key: Path
    root_ca_file: Path


def file_lookup(path: Path) -> str:
    """A YAML scalar that reads a controller file when Ansible templates it."""
    return "'{{ lookup(\"ansible.builtin.file\", \"" + str(path) + "\") }}'"


def first_address(metallb_range: str) -> str:
    """The ingress controller's address: the first of the MetalLB range (lab.inventory.fixed_addresses)."""
    return pool_address(metallb_range, 0)


def pebble_names(namespace: str = PEBBLE_NAMESPACE) -> list[str]:
    return [f"pebble.{namespace}.svc.cluster.local", f"pebble.{namespace}.svc", f"pebble.{namespace}", "pebble"]


def addons_yml(metallb_range: str, src: AddonSources) -> str:
    ingress_ip = first_address(metallb_range)
    acme = f"https://{pebble_names()[0]}:14000/dir"
    return HEADER + f"""---
# Add-on settings of the lab (issue 4); docs/addons.md says why each differs from production.

# --- Issuers: the lab's in-cluster Pebble issues the xiu certificates through a real ACME HTTP-01 flow. No Let's
# Encrypt issuers: their ACME accounts would be registered over the internet (workplace network rule).
xiu_cluster_acme_test_server: true
xiu_cluster_issuer: {PEBBLE_ISSUER}
cert_manager_letsencrypt_enabled: false
cert_manager_acme_issuer_name: {PEBBLE_ISSUER}
cert_manager_acme_server: {q(acme)}
cert_manager_acme_ca_bundle: {file_lookup(src.pebble_ca_cert)}
# cert-manager's HTTP-01 self-check resolves hls/flv.<domain> through Pebble's DNS (which answers with the ingress
# address) instead of the cluster DNS, which knows no lab names.
cert_manager_controller_extra_args:
  - --acme-http01-solver-nameservers={PEBBLE_DNS_CLUSTER_IP}:53

pebble_image_repository: {LAB_IMAGES}/pebble
pebble_challtestsrv_image_repository: {LAB_IMAGES}/pebble-challtestsrv
pebble_tls_certificate: {file_lookup(src.pebble_cert)}
pebble_tls_private_key: {file_lookup(src.pebble_key)}
pebble_dns_answer_ipv4: {q(ingress_ip)}
pebble_dns_cluster_ip: {q(PEBBLE_DNS_CLUSTER_IP)}
# The root clients must trust (curl --cacert).
pebble_root_ca_file: {q(str(src.root_ca_file))}

# --- Versions the Go module proxy can build (roles/versions/defaults/main.yml explains each).
metallb_version: "{{{{ versions_metallb_lab }}}}"
traefik_version: "{{{{ versions_traefik_lab }}}}"
cert_manager_version: "{{{{ versions_cert_manager_lab }}}}"

# --- Images: the bundle's builds (preloaded on every node), charts: the Go modules' (checked by go mod download).
metallb_chart_source: {q(str(src.metallb_chart))}
metallb_chart_sha256: ""
metallb_controller_image: {LAB_IMAGES}/metallb-controller
metallb_speaker_image: {LAB_IMAGES}/metallb-speaker

traefik_image_repository: {LAB_IMAGES}/traefik
# A fixed address: Pebble's DNS answers hls/flv.<domain> with it, and tests reach it from the host.
traefik_load_balancer_ip: {q(ingress_ip)}

cert_manager_chart_source: {q(str(src.cert_manager_chart))}
cert_manager_chart_sha256: ""
cert_manager_image_repositories:
  controller: {LAB_IMAGES}/cert-manager-controller
  webhook: {LAB_IMAGES}/cert-manager-webhook
  cainjector: {LAB_IMAGES}/cert-manager-cainjector
  acmesolver: {LAB_IMAGES}/cert-manager-acmesolver
  startupapicheck: {LAB_IMAGES}/cert-manager-startupapicheck

metrics_server_chart_source: {q(str(src.metrics_server_chart))}
metrics_server_chart_sha256: ""
metrics_server_image_repository: {LAB_IMAGES}/metrics-server
# The lab's kubelets serve self-signed certificates (kubeadm's default, no serverTLSBootstrap): metrics-server
# cannot verify them. Production keeps verification on (see roles/metrics_server/defaults/main.yml).
metrics_server_kubelet_insecure_tls: true

# ingress-nginx never runs here (retired; its controller needs nginx modules Debian 12 lacks). Its role's chart
# output is rendered from this chart and validated by tests/lab/test_addons.py.
ingress_nginx_chart_source: {q(str(src.ingress_nginx_chart))}
ingress_nginx_chart_sha256: ""
"""


def endpoints_entry(metallb_range: str, domain: str, src: AddonSources) -> dict[str, Any]:
    ip = first_address(metallb_range)
    return {
        "ingress_ip": ip,
        "hls_host": f"hls.{domain}",
        "flv_host": f"flv.{domain}",
        "ca_pem": str(src.root_ca_file),
        "cluster_issuer": PEBBLE_ISSUER,
        "pebble_dns": f"{PEBBLE_DNS_CLUSTER_IP}:53",
    }
