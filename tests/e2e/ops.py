"""Issue 7, operator mistakes on the live lab: bad input changes nothing (7e); check mode of every playbook (7h)."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from tests.e2e.faults import Section
from tests.e2e.target import Instance

Snapshot = dict[str, tuple[str, int | None]]


def snapshot(inst: Instance) -> Snapshot:
    """kind/name -> (resourceVersion, generation) of every object the xiu role manages, and the add-ons' pools."""
    ns = inst.ns
    net = client.NetworkingV1Api(inst.api)
    lists: dict[str, Any] = {
        "Deployment": inst.apps.list_namespaced_deployment(ns),
        "Service": inst.core.list_namespaced_service(ns),
        "ConfigMap": inst.core.list_namespaced_config_map(ns),
        "Secret": inst.core.list_namespaced_secret(ns),
        "ServiceAccount": inst.core.list_namespaced_service_account(ns),
        "Ingress": net.list_namespaced_ingress(ns),
        "NetworkPolicy": net.list_namespaced_network_policy(ns),
        "HorizontalPodAutoscaler": inst.autoscaling.list_namespaced_horizontal_pod_autoscaler(ns),
    }
    out: Snapshot = {}
    for kind, result in lists.items():
        for o in result.items:
            if kind == "HorizontalPodAutoscaler":
                # No generation, and the controller rewrites its status (and so its resourceVersion) every 15 s.
                spec = json.dumps(inst.api.sanitize_for_serialization(o.spec), sort_keys=True)
                out[f"{kind}/{o.metadata.name}"] = ("spec:" + hashlib.sha256(spec.encode()).hexdigest()[:16], None)
            else:
                out[f"{kind}/{o.metadata.name}"] = (o.metadata.resource_version, o.metadata.generation)
    n: Any = inst.core.read_namespace(ns)
    out[f"Namespace/{ns}"] = (n.metadata.resource_version, None)
    co = client.CustomObjectsApi(inst.api)
    pools: Any = co.list_namespaced_custom_object("metallb.io", "v1beta1", "metallb-system", "ipaddresspools")
    for o in pools["items"]:
        out[f"IPAddressPool/{o['metadata']['name']}"] = (o["metadata"]["resourceVersion"], o["metadata"].get("generation"))
    return out


def identity(entry: tuple[str, int | None] | None) -> str | int | None:
    """What says an object was changed: its generation where it has one (controllers write the status of those
    objects all the time, which moves the resourceVersion but not the generation), else its resourceVersion."""
    if entry is None:
        return None
    rv, gen = entry
    return gen if gen is not None else rv


def diff(before: Snapshot, after: Snapshot) -> list[str]:
    """Objects added, removed or changed between two snapshots."""
    keys = sorted(set(before) | set(after))
    return [k for k in keys if identity(before.get(k)) != identity(after.get(k))]


def compared(snap: Snapshot) -> str:
    gens = sum(1 for _, g in snap.values() if g is not None)
    specs = sum(1 for rv, g in snap.values() if g is None and rv.startswith("spec:"))
    return (f"{len(snap)} objects ({gens} by generation, {len(snap) - gens - specs} by resourceVersion"
            + (f", {specs} by spec" if specs else "") + ")")


@dataclass(frozen=True)
class Bad:
    playbook: str
    args: tuple[str, ...]
    expect: str


# A selection of tests/playbooks/test_bad_input.py (render mode, 27 cases), here against the live lab.
BAD = {
    "domain malformed": Bad("xiu.yml", ("-e", "xiu_cluster_domain=Stream_Example.com"), "xiu_domain must be"),
    "publish token too short": Bad("xiu.yml", ("-e", "xiu_publish_token=short"), "xiu_publish_token must be at least"),
    "cpu target 150%": Bad("xiu.yml", ("-e", "xiu_hpa_cpu_utilization=150"), "a percentage 1-100"),
    "load balancer IP malformed": Bad("xiu.yml", ("-e", "xiu_rtmp_load_balancer_ip=10.0.0.256"), "plain IP"),
    "scale replicas 0": Bad("scale.yml", ("-e", "replicas=0"), "scale.yml needs -e replicas=N"),
    "scale replicas abc": Bad("scale.yml", ("-e", "replicas=abc"), "scale.yml needs -e replicas=N"),
    "scale above the HPA maximum": Bad("scale.yml", ("-e", "replicas=11"), "Raise xiu_hpa_max_replicas"),
    "site MetalLB range reversed": Bad("site.yml", ("-e", "xiu_cluster_metallb_range=172.31.250.250-172.31.250.200"),
                                       "xiu_cluster_metallb_range must be"),
    "site distribution unknown": Bad("site.yml", ("-e", "xiu_cluster_distribution=minikube"),
                                     "xiu_cluster_distribution must be"),
    "site ACME e-mail malformed": Bad("site.yml", ("-e", "xiu_cluster_acme_email=ops-at-example.com"),
                                      "xiu_cluster_acme_email must be"),
}


def step_bad_input_live(sec: Section) -> None:
    started = time.monotonic()
    before = snapshot(sec.inst)

    def one(case: Bad) -> tuple[int, bool, str]:
        run = sec.t.playbook(f"playbooks/{case.playbook}", *case.args)
        tail = run.output.replace("\n", " ")
        went_on = "PLAY [Prepare every node]" in run.output or "Apply the " in run.output
        return run.rc, case.expect in run.output and not went_on, tail[-200:]

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(BAD, pool.map(one, BAD.values())))
    time.sleep(2)
    after = snapshot(sec.inst)
    changed = diff(before, after)
    rows = {k: f"rc={rc}, message {'found' if found else 'MISSING'}" for k, (rc, found, _) in results.items()}
    ok_cases = all(rc != 0 and found for rc, found, _ in results.values())
    sec.report.add(f"7e {len(BAD)} bad-input runs of site.yml/xiu.yml/scale.yml against the live lab",
                   "each fails with its message before any change; every xiu object (and the MetalLB pools) keeps its "
                   "generation, or its resourceVersion if it has none (the HPA: its spec)",
                   f"{rows}; compared {compared(before)}; changed: {changed or 'none'}",
                   time.monotonic() - started, ok_cases and not changed,
                   details={k: v[2] for k, v in results.items()}, changed=changed)


def step_check_mode(sec: Section) -> None:
    # The count scale.yml recorded is the HPA's floor; the Deployment may be above it while the HPA scales.
    try:
        replicas = int(sec.inst.hpa().spec.min_replicas)
    except client.ApiException:
        replicas = sec.replicas()
    runs = {
        "site.yml": ("playbooks/site.yml",),
        "xiu.yml": ("playbooks/xiu.yml",),
        f"scale.yml -e replicas={replicas}": ("playbooks/scale.yml", "-e", f"replicas={replicas}"),
        "upgrade.yml": ("playbooks/upgrade.yml",),
        "reset.yml (no confirmation)": ("playbooks/reset.yml",),
    }
    for name, args in runs.items():
        before = snapshot(sec.inst)
        run = sec.t.playbook(args[0], *args[1:], "--check")
        changed = diff(before, snapshot(sec.inst))
        if name.startswith("reset"):
            expected = "fails at once: 'Reset not confirmed; nothing was changed.'; no object changed"
            ok = run.rc != 0 and "Reset not confirmed; nothing was changed." in run.output and not changed
        else:
            expected = "exit 0, changed=0; no object changed"
            ok = run.rc == 0 and run.changed == 0 and not changed
        sec.report.add(f"7h --check of {name} on the converged lab", expected,
                       f"exit {run.rc}, changed={run.changed} in {run.seconds:.0f}s; objects changed: {changed or 'none'}"
                       + ("" if ok else f"; {run.output[-600:]}"),
                       run.seconds, ok)
