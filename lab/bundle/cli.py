"""Command line: ``python3 -m lab.bundle {build,key,plan,verify}``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lab.bundle import build as builder
from lab.bundle.components import DEFAULT_IMAGE_REPOSITORY, plan
from lab.bundle.keys import bundle_key, canonical
from lab.bundle.manifest import verify
from lab.bundle.pins import VERSIONS_FILE, Pins
from lab.bundle.runner import BuildError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m lab.bundle", description=__doc__)
    p.add_argument("--cache", type=Path, default=None, help="cache root (default: $STREAMOPS_CACHE or ~/.cache/streamops-xiu)")
    p.add_argument("--versions", type=Path, default=VERSIONS_FILE, help="versions file (default: %(default)s)")
    p.add_argument(
        "--image-repository",
        default=DEFAULT_IMAGE_REPOSITORY,
        help="repository prefix of the Kubernetes images, as kubeadm's imageRepository (default: %(default)s)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the bundle (a no-op when the cache already holds it)")
    b.add_argument("--out", type=Path, default=None, help="also place the bundle here (hard links into the cache)")
    sub.add_parser("key", help="print the bundle key for the current pins and toolchains")
    sub.add_parser("plan", help="print the plan (steps, bin/ files, images) as JSON")
    sub.add_parser("prune", help="delete cached bundles and step outputs the current pins no longer use")
    v = sub.add_parser("verify", help="check a bundle directory against its manifest.json")
    v.add_argument("dir", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cache = builder.Cache(args.cache or builder.default_cache())
    the_plan = plan(Pins.load(args.versions), args.image_repository)
    try:
        if args.command == "plan":
            print(json.dumps(canonical(the_plan), indent=2))
        elif args.command == "key":
            print(bundle_key(the_plan, builder.toolchains(the_plan, cache)))
        elif args.command == "prune":
            for path in builder.prune(the_plan, cache):
                print(f"removed {path}")
        elif args.command == "verify":
            problems = verify(args.dir)
            for line in problems:
                print(line)
            return 1 if problems else 0
        else:
            started = time.monotonic()
            report = builder.build(the_plan, cache, say=lambda s: print(s, flush=True))
            assert report.path is not None
            for what, seconds, cached in report.timings:
                print(f"  {what}: {seconds:.1f}s{' (cached)' if cached else ''}")
            if args.out is not None:
                builder.export(report.path, args.out)
            state = "up to date" if report.reused else "built"
            print(f"bundle {report.key} {state} in {time.monotonic() - started:.1f}s: {args.out or report.path}")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
