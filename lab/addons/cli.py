"""``python3 -m lab.addons prepare``: charts, Pebble TLS, inventories/lab/group_vars/all/addons.yml."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from lab import paths
from lab.addons import charts, inventory, tls
from lab.bundle.pins import Pins

LAB_DOMAIN = "xiu.lab.test"


def addons_cache() -> Path:
    return paths.cache_root() / "lab-addons"


def prepare_sources(cache: Path | None = None) -> inventory.AddonSources:
    """Chart directories and Pebble's TLS files (made once, reused)."""
    pins = Pins.load()
    root = cache or paths.cache_root()
    out = addons_cache() / "charts"
    metallb = charts.copy_chart(
        root, out, charts.ModuleChart("metallb", "go.universe.tf/metallb", pins["metallb_lab"], "charts/metallb")
    )
    metrics = charts.copy_chart(
        root,
        out,
        charts.ModuleChart(
            "metrics-server", "sigs.k8s.io/metrics-server", pins["metrics_server"], "charts/metrics-server"
        ),
    )
    nginx = charts.copy_chart(
        root,
        out,
        charts.ModuleChart(
            "ingress-nginx", "k8s.io/ingress-nginx", pins["ingress_nginx_lab_module"], "charts/ingress-nginx"
        ),
    )
    cm = charts.cert_manager_chart(root, out, pins["cert_manager_lab"])
    t = tls.pebble_tls(paths.BUILD_DIR / "addons", inventory.pebble_names())
    return inventory.AddonSources(
        metallb_chart=metallb,
        cert_manager_chart=cm,
        metrics_server_chart=metrics,
        ingress_nginx_chart=nginx,
        pebble_ca_cert=t.ca_cert,
        pebble_cert=t.cert,
        pebble_key=t.key,
        root_ca_file=paths.BUILD_DIR / "ca.pem",
    )


def prepare() -> Path:
    """Everything the add-on roles need in the lab; returns the addons.yml path. Needs build/lab/endpoints.json."""
    endpoints = json.loads(paths.ENDPOINTS.read_text(encoding="utf-8"))
    src = prepare_sources()
    target = paths.INVENTORY_DIR / "group_vars" / "all" / "addons.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(inventory.addons_yml(endpoints["metallb_range"], src), encoding="utf-8")
    os.chmod(tmp, 0o644)
    tmp.replace(target)
    endpoints["addons"] = inventory.endpoints_entry(endpoints["metallb_range"], LAB_DOMAIN, src)
    etmp = paths.ENDPOINTS.with_name(paths.ENDPOINTS.name + ".tmp")
    etmp.write_text(json.dumps(endpoints, indent=2) + "\n", encoding="utf-8")
    etmp.replace(paths.ENDPOINTS)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m lab.addons", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="charts, Pebble TLS, inventories/lab/group_vars/all/addons.yml, endpoints.json")
    sub.add_parser("sources", help="only the charts and Pebble TLS; print their paths")
    args = ap.parse_args(argv)
    if args.cmd == "sources":
        print(json.dumps({k: str(v) for k, v in prepare_sources().__dict__.items()}, indent=1))
        return 0
    print(prepare())
    return 0
