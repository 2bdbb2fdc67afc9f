"""The agent's health verdicts (/livez, /readyz) and its API calls, against fakes of the xiu API."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any, Iterator

import pytest


class FakeApi:
    def __init__(self, mod: ModuleType, streams: dict[str, Any] | None = None) -> None:
        self.mod = mod
        self.current: dict[str, Any] = streams or {}
        self.fail = False
        self.pulls: list[str] = []
        self.kicks: list[str] = []

    def streams(self) -> dict[str, Any]:
        if self.fail:
            raise OSError("connection refused")
        return dict(self.current)

    def start_pull(self, stream: Any, relay_token: str, origin_address: str) -> None:
        self.pulls.append(stream.key)

    def kick(self, publisher_id: str) -> None:
        self.kicks.append(publisher_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_agent(mod: ModuleType, tier: str = "edge", **overrides: Any) -> tuple[Any, FakeApi, FakeApi, Clock]:
    settings = mod.Settings(
        tier=tier, listen_port=0, local_api="http://x", check_ports=[], origin_api="http://o",
        initial_sync_seconds=30, pull_timeout_polls=2, broken_after_rounds=2, **overrides,
    )
    local, origin, clock = FakeApi(mod), FakeApi(mod), Clock()
    agent = mod.Agent(settings, local, origin if tier == "edge" else None, clock=clock)
    return agent, local, origin, clock


def s(mod: ModuleType, key: str, pid: str = "p") -> Any:
    app, name = key.split("/")
    return mod.Stream(app, name, pid, 0)


def test_edge_is_not_ready_until_it_holds_the_origin_streams(agent_module: ModuleType) -> None:
    agent, local, origin, _ = make_agent(agent_module)
    origin.current = {"live/a": s(agent_module, "live/a")}
    agent.poll_once()
    assert local.pulls == ["live/a"]
    assert agent.ready() == (False, "initial sync with the origin not done")
    local.current = {"live/a": s(agent_module, "live/a", "local")}
    agent.poll_once()
    assert agent.ready() == (True, "ok")
    assert agent.live() == (True, "ok")


def test_initial_sync_gives_up_waiting_after_the_bound(agent_module: ModuleType) -> None:
    agent, _, origin, clock = make_agent(agent_module)
    origin.current = {"live/a": s(agent_module, "live/a")}
    agent.poll_once()
    clock.now += 31
    agent.poll_once()
    assert agent.initial_sync_done


def test_origin_tier_needs_no_sync(agent_module: ModuleType) -> None:
    agent, _, _, _ = make_agent(agent_module, tier="origin")
    agent.poll_once()
    assert agent.ready() == (True, "ok")


def test_wedged_hub_fails_liveness_after_three_polls(agent_module: ModuleType) -> None:
    agent, local, _, _ = make_agent(agent_module)
    agent.poll_once()
    local.fail = True
    agent.poll_once()
    agent.poll_once()
    assert agent.live()[0]  # two failures: still alive
    assert not agent.ready()[0]  # but out of the Service at once
    agent.poll_once()
    assert agent.live() == (False, "xiu API failed 3 times in a row")


def test_dead_pull_client_fails_liveness_and_resets_after_restart(agent_module: ModuleType) -> None:
    agent, local, origin, _ = make_agent(agent_module)
    origin.current = {"live/a": s(agent_module, "live/a")}
    for _ in range(1 + 2 * 2):
        agent.poll_once()
    ok, reason = agent.live()
    assert not ok and "pull client" in reason
    # The kubelet restarts xiu: its API is down for a moment, then answers with no stream.
    local.fail = True
    agent.poll_once()
    local.fail = False
    agent.poll_once()
    assert agent.live() == (True, "ok")


def test_agent_kicks_relays_of_an_unreachable_origin(agent_module: ModuleType) -> None:
    agent, local, origin, _ = make_agent(agent_module)
    origin.current = {"live/a": s(agent_module, "live/a", "o1")}
    local.current = {"live/a": s(agent_module, "live/a", "relay1")}
    agent.poll_once()
    origin.fail = True
    for _ in range(agent_module.ORPHAN_POLLS + 1):
        agent.poll_once()
    assert local.kicks == ["relay1"]
    assert agent.status()["origin_reachable"] is False
    assert agent.live() == (True, "ok")  # the edge itself is fine: no restart


def test_stalled_loop_fails_both_checks(agent_module: ModuleType) -> None:
    agent, _, _, clock = make_agent(agent_module)
    agent.poll_once()
    clock.now += 60
    assert not agent.loop_alive()
    assert agent.live() == (False, "agent loop stalled")


def test_closed_listener_makes_the_pod_unready(agent_module: ModuleType) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    agent, _, _, _ = make_agent(agent_module, tier="origin")
    agent.settings.check_ports = [port]
    agent.poll_once()
    ok, reason = agent.ready()
    assert not ok and str(port) in reason


class _Recorder(BaseHTTPRequestHandler):
    requests: list[tuple[str, Any]] = []
    kick_answer = b"ok"

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Recorder.requests.append((self.path, body))
        if self.path == "/api/kick_off_client":
            self._send_raw(_Recorder.kick_answer)  # xiu 0.13.0 answers this call in plain text
        else:
            self._send({"error_code": 0, "desp": "succ", "data": None})

    def do_GET(self) -> None:  # noqa: N802
        self._send({"error_code": 0, "desp": "succ", "data": {}})

    def _send(self, body: Any) -> None:
        self._send_raw(json.dumps(body).encode())

    def _send_raw(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture()
def recorder() -> Iterator[str]:
    _Recorder.requests = []
    _Recorder.kick_answer = b"ok"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_api_calls_have_the_shape_xiu_expects(agent_module: ModuleType, recorder: str) -> None:
    api = agent_module.XiuApi(recorder)
    assert api.streams() == {}
    api.start_pull(agent_module.Stream("live", "cam1", "p", 0), "relay-secret", "xiu-origin.xiu.svc")
    api.kick("17953214511098")
    assert _Recorder.requests == [
        ("/api/start_relay_stream", {
            "id": "live/cam1",
            "identifier": {"rtmp": {"app_name": "live", "stream_name": "cam1?token=relay-secret"}},
            "server_address": "xiu-origin.xiu.svc",
            "relay_type": "Pull",
        }),
        ("/api/kick_off_client", {"uuid": "17953214511098"}),
    ]
    _Recorder.kick_answer = b"error"
    with pytest.raises(ValueError, match="kick_off_client refused"):
        api.kick("17953214511098")


def test_sigterm_stops_the_agent_at_once() -> None:
    """As PID 1 the kernel drops SIGTERM unless the agent handles it: pods would wait out their grace period."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"XIU_AGENT_TIER": "origin", "XIU_AGENT_LISTEN_PORT": str(port), "XIU_AGENT_LOCAL_API": "http://127.0.0.1:9",
           "PATH": "/usr/bin:/bin"}
    agent = Path(__file__).resolve().parents[2] / "roles" / "xiu" / "files" / "xiu_agent.py"
    proc = subprocess.Popen([sys.executable, str(agent)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()


def test_resolver_keeps_the_last_answer_when_dns_fails(agent_module: ModuleType) -> None:
    clock = Clock()
    answers = {"xiu-origin.xiu.svc": "10.96.0.50"}
    calls: list[str] = []

    def lookup(host: str) -> str:
        calls.append(host)
        if host not in answers:
            raise OSError("Temporary failure in name resolution")
        return answers[host]

    resolver = agent_module.Resolver(ttl=30, timeout=1, clock=clock, lookup=lookup)
    assert resolver.address("xiu-origin.xiu.svc") == "10.96.0.50"
    clock.now += 10
    assert resolver.address("xiu-origin.xiu.svc") == "10.96.0.50" and len(calls) == 1  # within the ttl
    answers.clear()  # cluster DNS is gone
    clock.now += 60
    assert resolver.address("xiu-origin.xiu.svc") == "10.96.0.50" and len(calls) == 2
    assert resolver.address("never-resolved") == "never-resolved"


def test_resolver_does_not_wait_for_a_hanging_lookup(agent_module: ModuleType) -> None:
    import time

    release = threading.Event()

    def lookup(host: str) -> str:
        if release.is_set():
            return "10.96.0.50"
        release.wait(5)
        return "10.96.0.99"

    resolver = agent_module.Resolver(ttl=0, timeout=0.2, lookup=lookup)
    release.set()
    assert resolver.address("o") == "10.96.0.50"
    release.clear()
    started = time.monotonic()
    assert resolver.address("o") == "10.96.0.50"  # the hung lookup is abandoned, the last answer used
    assert time.monotonic() - started < 1.0
    release.set()


def test_api_urls_use_the_resolved_address(agent_module: ModuleType) -> None:
    resolver = agent_module.Resolver(lookup=lambda host: "10.96.0.50")
    api = agent_module.XiuApi("http://xiu-origin.xiu.svc:8000/", resolver=resolver)
    assert api._url("/api/query_whole_streams") == "http://10.96.0.50:8000/api/query_whole_streams"
    assert agent_module.XiuApi("http://127.0.0.1:8000")._url("/x") == "http://127.0.0.1:8000/x"
