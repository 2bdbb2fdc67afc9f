"""The agent stops at once on SIGTERM (the kubelet's stop signal), not after the pod's grace period."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tests.agent.conftest import AGENT_PATH


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_stops_the_agent_cleanly_within_two_seconds() -> None:
    env = {**os.environ, "XIU_AGENT_TIER": "origin", "XIU_AGENT_LISTEN_PORT": str(free_port()),
           "XIU_AGENT_LOCAL_API": "http://127.0.0.1:9", "XIU_AGENT_POLL_SECONDS": "1"}
    proc = subprocess.Popen([sys.executable, "-u", str(AGENT_PATH)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "xiu-agent started" not in proc.stdout.readline():
            pass
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        # 0 = handled like Ctrl-C; without the handler SIGTERM kills it (-15), and as PID 1 it is ignored.
        assert rc == 0
        assert time.monotonic() - sent < 2
    finally:
        if proc.poll() is None:
            proc.kill()
