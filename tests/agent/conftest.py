"""Load roles/xiu/files/xiu_agent.py, which ships in a ConfigMap rather than as a package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

AGENT_PATH = Path(__file__).resolve().parents[2] / "roles" / "xiu" / "files" / "xiu_agent.py"


def load_agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xiu_agent", AGENT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["xiu_agent"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def agent_module() -> ModuleType:
    return load_agent()
