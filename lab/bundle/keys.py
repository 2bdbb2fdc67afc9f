"""Cache keys: short hashes of canonical JSON of what determines an output."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from lab.bundle import BUNDLE_FORMAT
from lab.bundle.spec import Plan, Step

KEY_LENGTH = 16


def canonical(value: Any) -> Any:
    """JSON-ready form of dataclasses, tuples, bytes (hashed) and plain values; dataclasses keep their type."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__type__": type(value).__name__, **fields}
    if isinstance(value, (bytes, bytearray)):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot key a {type(value).__name__}")


def digest(value: Any) -> str:
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def step_key(step: Step, toolchain: str) -> str:
    """Key of one step's output: its spec, the toolchain that builds it, and the bundle format."""
    return digest({"format": BUNDLE_FORMAT, "toolchain": toolchain, "step": step})


def bundle_key(plan: Plan, toolchains: dict[str, str]) -> str:
    """Key of a whole bundle: every pin, step, bin/ file, image layout and the toolchains."""
    return digest({"format": BUNDLE_FORMAT, "toolchains": toolchains, "plan": plan})
