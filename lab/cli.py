"""``python3 -m lab up|down|inventory|status``: the local lab (see lab/README.md). `make lab` runs ``up``."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from lab import docker as dk
from lab import inventory, paths
from lab.addons.cli import prepare as prepare_addons
from lab.nodes import containers, image
from lab.nodes.plan import DEFAULT_LAB, DEFAULT_SUBNET, LabPlan, make_plan, pool_inside_subnet


def say(text: str) -> None:
    print(f"lab: {text}", flush=True)


class Timer:
    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    def run(self, what: str, fn: Callable[[], None]) -> None:
        started = time.monotonic()
        fn()
        self.steps.append((what, time.monotonic() - started))

    def report(self) -> str:
        return "\n".join(f"  {what:<28} {seconds:7.1f}s" for what, seconds in self.steps)


def ensure_bundle() -> Path:
    """The air-gap bundle for the current pins (built by lab.bundle; a no-op when it is in the cache)."""
    from lab.bundle import build as builder
    from lab.bundle.components import DEFAULT_IMAGE_REPOSITORY, plan
    from lab.bundle.pins import Pins

    report = builder.build(plan(Pins.load(), DEFAULT_IMAGE_REPOSITORY), builder.Cache(builder.default_cache()), say=say)
    assert report.path is not None
    return report.path


def files_for(plan: LabPlan, bundle: Path) -> inventory.LabFiles:
    state = paths.STATE_DIR / plan.lab
    return inventory.LabFiles(
        ssh_key=state / "id_ed25519",
        known_hosts=state / "known_hosts",
        kubeconfig=paths.KUBECONFIG,
        bundle=bundle,
    )


def start_nodes(plan: LabPlan, files: inventory.LabFiles, tag: str) -> None:
    containers.ensure_network(plan)
    key, pub = containers.ensure_ssh_key(files.ssh_key.parent)
    for node in plan.nodes:
        say(f"{node.name} ({node.role}, {node.ip}): {containers.ensure_node(plan, node, tag, pub)}")
    lines = [containers.known_hosts_line(n, containers.wait_booted(n)) for n in plan.nodes]
    files.known_hosts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for node in plan.nodes:
        containers.check_ssh(node, key, files.known_hosts)


def write_inventory(plan: LabPlan, files: inventory.LabFiles) -> None:
    inventory.write_inventory(paths.INVENTORY_DIR, plan, files)
    inventory.write_endpoints(paths.ENDPOINTS, plan, files, containers.bridge_name(plan))
    inventory.write_token_files(paths.INVENTORY_DIR, paths.ENDPOINTS.parent)


def run_playbook(playbook: str, extra: list[str]) -> int:
    cmd = ["ansible-playbook", playbook, "-i", str(paths.INVENTORY_DIR), *extra]
    say("running " + " ".join(cmd))
    return subprocess.run(cmd, cwd=paths.REPO_ROOT, check=False).returncode


def summary(plan: LabPlan, files: inventory.LabFiles) -> str:
    kubectl = files.bundle / "bin" / "kubectl"
    nodes = ""
    if kubectl.exists() and files.kubeconfig.exists():
        proc = subprocess.run(
            [str(kubectl), "--kubeconfig", str(files.kubeconfig), "get", "nodes", "-o", "wide"],
            capture_output=True, text=True, check=False,
        )
        nodes = proc.stdout if proc.returncode == 0 else proc.stderr
    return (
        f"lab {plan.lab}: {len(plan.servers)} server(s), {len(plan.agents)} agent(s) on {plan.network} {plan.subnet}\n"
        f"  kubeconfig   {files.kubeconfig}\n"
        f"  API server   https://{plan.servers[0].ip}:6443\n"
        f"  MetalLB pool {plan.metallb_range}\n"
        f"  endpoints    {paths.ENDPOINTS}\n"
        f"  kubectl      {kubectl} --kubeconfig {files.kubeconfig} get nodes\n"
        f"{nodes}"
    )


def cmd_up(args: argparse.Namespace) -> int:
    plan = make_plan(args.nodes, args.servers, args.subnet, args.name)
    if not pool_inside_subnet(plan):
        raise SystemExit("lab: the MetalLB pool must lie inside the lab network (workplace network rule)")
    timer = Timer()
    total = time.monotonic()
    timer.run("docker daemon", dk.ensure_docker)
    bundle: list[Path] = []
    if args.bundle:
        bundle.append(Path(args.bundle).resolve())
        if not (bundle[0] / "manifest.json").exists():
            raise RuntimeError(f"{bundle[0]} is not a finished bundle (no manifest.json)")
    else:
        timer.run("air-gap bundle", lambda: bundle.append(ensure_bundle()))
    files = files_for(plan, bundle[0])
    node_img: list[image.NodeImage] = []

    def _image() -> None:
        img, built, imported = image.ensure_image(plan.lab, say)
        say(f"node image {img.tag}: rootfs {'built in %.0fs' % built if built else 'cached'}, "
            f"{'imported in %.1fs' % imported if imported else 'already imported'}")
        node_img.append(img)

    timer.run("node image", _image)
    timer.run("node containers + ssh", lambda: start_nodes(plan, files, node_img[0].tag))

    timer.run("inventory + endpoints.json", lambda: write_inventory(plan, files))
    timer.run("add-on sources (charts, TLS)", lambda: say(f"wrote {prepare_addons().relative_to(paths.REPO_ROOT)}"))
    rc = 0
    if not args.no_provision:
        started = time.monotonic()
        rc = run_playbook(args.playbook, args.ansible_args)
        timer.steps.append((f"ansible-playbook {Path(args.playbook).name}", time.monotonic() - started))
    print()
    print(summary(plan, files))
    print(f"timings (total {time.monotonic() - total:.1f}s):\n{timer.report()}")
    if rc != 0:
        say(f"ansible-playbook failed (exit {rc}); the nodes stay up: fix and rerun `make lab`, or `make lab-down`")
    return rc


def cmd_down(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if shutil.which("docker") is not None and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        containers.remove_lab(args.name, args.keep_image, say)
    else:
        say("no docker daemon answers: no containers to remove")
    for path in (paths.STATE_DIR / args.name, paths.BUILD_DIR):
        if path.exists():
            shutil.rmtree(path)
            say(f"removed {path.relative_to(paths.REPO_ROOT)}")
    for path in sorted(paths.INVENTORY_DIR.iterdir()) if paths.INVENTORY_DIR.exists() else []:
        if path.name == "README.md":
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        say(f"removed {path.relative_to(paths.REPO_ROOT)}")
    say(f"lab {args.name} removed in {time.monotonic() - started:.1f}s")
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    plan = make_plan(args.nodes, args.servers, args.subnet, args.name)
    files = files_for(plan, Path(args.bundle) if args.bundle else ensure_bundle())
    write_inventory(plan, files)
    prepare_addons()
    say(f"wrote {paths.INVENTORY_DIR} and {paths.ENDPOINTS}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m lab", description=__doc__)
    p.add_argument("--name", default=os.environ.get("LAB_NAME", DEFAULT_LAB), help="lab name (label value, name prefix)")
    sub = p.add_subparsers(dest="command", required=True)

    def shape(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--nodes", type=int, default=int(os.environ.get("LAB_NODES", "3")))
        sp.add_argument("--servers", type=int, default=int(os.environ.get("LAB_SERVERS", "1")))
        sp.add_argument("--subnet", default=os.environ.get("LAB_SUBNET", DEFAULT_SUBNET))

    up = sub.add_parser("up", help="start the node containers, write the inventory, run site.yml")
    shape(up)
    up.add_argument("--no-provision", action="store_true", help="stop before ansible-playbook")
    up.add_argument(
        "--bundle", default=os.environ.get("LAB_BUNDLE", ""),
        help="use this finished bundle directory instead of building/finding the one for the current pins",
    )
    up.add_argument("--playbook", default="playbooks/site.yml")
    up.add_argument("ansible_args", nargs="*", help="extra ansible-playbook arguments (after --)")
    down = sub.add_parser("down", help="remove everything the lab created (labelled objects, inventory, build/lab)")
    down.add_argument("--keep-image", action="store_true", help="keep the imported node image")
    inv = sub.add_parser("inventory", help="only (re)write inventories/lab and build/lab/endpoints.json")
    shape(inv)
    inv.add_argument("--bundle", default=os.environ.get("LAB_BUNDLE", ""), help="air-gap directory (default: build/find the bundle)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handlers = {"up": cmd_up, "down": cmd_down, "inventory": cmd_inventory}
    try:
        return handlers[args.command](args)
    except (RuntimeError, ValueError) as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
