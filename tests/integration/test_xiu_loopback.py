"""The rendered ingest and viewer-tier configs, loaded by the real xiu binary and driven with ffmpeg.

Topology on loopback: one origin, edge A (started before the publish) and edge B (started after it), each
edge with the real xiu-agent. Every play below is a single attempt: "first try" is the requirement.
"""

from __future__ import annotations

import signal
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import xiu_harness as h

PUBLISH_TOKEN = "publish-token-loopback-0001"
PLAY_TOKEN = "play-token-loopback-000002"
STREAMS = ("live/cam1", "event/stage-2")
BASE_VARS: dict[str, Any] = {
    "xiu_cluster_domain": "stream.example.test",
    "xiu_publish_token": PUBLISH_TOKEN,
    "xiu_play_token": PLAY_TOKEN,
    "xiu_play_auth_enabled": True,
    # Short initial-sync bound keeps a broken test from hanging; readiness still needs every stream.
    "xiu_agent_initial_sync_seconds": 60,
}

# Keys of xiu 0.13.0's config structs (src/config/mod.rs). xiu's serde ignores unknown keys, so a typo in
# a template would load "fine" and silently do nothing: every rendered key must be one of these.
AUTH = {"pull_enabled": None, "push_enabled": None, "algorithm": None}
XIU_SCHEMA: dict[str, Any] = {
    "rtmp": {"enabled": None, "port": None, "gop_num": None, "auth": AUTH,
             "pull": {"enabled": None, "address": None, "port": None},
             "push": [{"enabled": None, "address": None, "port": None}]},
    "rtsp": {"enabled": None, "port": None, "relay_enabled": None, "auth": AUTH},
    "webrtc": {"enabled": None, "port": None, "auth": AUTH},
    "httpflv": {"enabled": None, "port": None, "auth": AUTH},
    "hls": {"enabled": None, "port": None, "need_record": None, "auth": AUTH},
    "httpapi": {"port": None},
    "httpnotify": {"enabled": None, "on_publish": None, "on_unpublish": None, "on_play": None, "on_stop": None},
    "authsecret": {"key": None, "password": None, "push_password": None},
    "log": {"level": None, "file": {"enabled": None, "rotate": None, "path": None}},
}


def unknown_keys(doc: Any, schema: Any, path: str = "") -> list[str]:
    if isinstance(schema, list):
        return [k for i, item in enumerate(doc) for k in unknown_keys(item, schema[0], f"{path}[{i}]")]
    if schema is None:
        return []
    found = []
    for key, value in doc.items():
        if key not in schema:
            found.append(f"{path}{key}")
        else:
            found += unknown_keys(value, schema[key], f"{path}{key}.")
    return found


def tier_ports() -> dict[str, int]:
    return dict(zip(h.PORT_KEYS, h.free_ports(len(h.PORT_KEYS)), strict=True))


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.origin_ports = tier_ports()
        self.edge_ports = {"a": tier_ports(), "b": tier_ports()}
        self.nodes: list[h.Node] = []
        self.publishers: list[subprocess.Popen[bytes]] = []
        self.rendered: dict[str, h.Rendered] = {}

    def render_all(self) -> None:
        jobs = {"origin": h.render(self.root / "render-origin", h.tier_vars(BASE_VARS, self.origin_ports, None))}
        for name, ports in self.edge_ports.items():
            jobs[name] = h.render(self.root / f"render-{name}", h.tier_vars(BASE_VARS, ports, self.origin_ports))
        for name, job in jobs.items():
            assert job.wait(timeout=300) == 0, (self.root / f"render-{name}" / "render.log").read_text()[-3000:]
            self.rendered[name] = h.load_rendered(self.root / f"render-{name}")

    def start(self, name: str) -> h.Node:
        if name == "origin":
            node = h.start_node("origin", self.root / "origin", self.rendered["origin"], self.origin_ports)
        else:
            node = h.start_node("edge", self.root / f"edge-{name}", self.rendered[name], self.edge_ports[name])
        self.nodes.append(node)
        return node

    def publish(self, stream: str, token: str | None = PUBLISH_TOKEN, port: int | None = None,
                seconds: int = 240) -> subprocess.Popen[bytes]:
        query = f"?token={token}" if token else ""
        url = f"rtmp://127.0.0.1:{port or self.origin_ports['rtmp']}/{stream}{query}"
        process = h.publish(url, seconds, self.root / f"publish-{stream.replace('/', '_')}-{len(self.publishers)}.log")
        self.publishers.append(process)
        return process

    def stop(self) -> None:
        for process in self.publishers:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        for node in reversed(self.nodes):
            node.stop()


def play_urls(edge: h.Node, stream: str) -> dict[str, str]:
    app, name = stream.split("/")
    token = f"?token={PLAY_TOKEN}"
    return {
        "rtmp": f"rtmp://127.0.0.1:{edge.ports['rtmp']}/{stream}{token}",
        "http-flv": f"http://127.0.0.1:{edge.ports['httpflv']}/{app}/{name}.flv{token}",
        "hls": f"http://127.0.0.1:{edge.ports['hls']}/{app}/{name}/{name}.m3u8{token}",
    }


def diagnostics(edge: h.Node) -> str:
    agent = edge.agent
    if agent and agent.alive():
        agent.popen.send_signal(signal.SIGUSR1)  # the agent dumps its thread stacks into its log
        time.sleep(0.5)
    return (f"agent alive={agent.alive() if agent else None} status={edge.agent_get('/status')}\n"
            f"livez={edge.agent_get('/livez')}\n"
            f"agent log:\n{agent.log.read_text()[-3000:] if agent else ''}")


def wait_ready(edge: h.Node, seconds: float = 90) -> None:
    h.wait_for(lambda: edge.agent_get("/readyz")[0] == 200, seconds, f"edge on {edge.ports['agent']} ready")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    missing = list(h.tools_present())
    assert not missing, f"missing {missing}: apt-get install ffmpeg (README)"
    assert h.xiu_binary().exists(), f"{h.xiu_binary()} missing: run `make xiu` first"
    lab = Lab(tmp_path_factory.mktemp("xiu-loopback"))
    lab.render_all()
    try:
        lab.start("origin")
        edge_a = lab.start("a")
        for stream in STREAMS:
            lab.publish(stream)
        h.wait_for(lambda: set(STREAMS) <= set(lab.nodes[0].streams()), 30, "both streams on the origin")
        wait_ready(edge_a)
        # Edge A was up before the publishes, so its readiness said nothing about them; a stream published
        # a moment ago reaches it one agent poll later, and its HLS one segment later. Wait for both.
        h.wait_for(lambda: set(STREAMS) <= set(edge_a.streams()), 30, "edge A pulling both streams")
        h.wait_for(lambda: all(h.hls_ready(edge_a.ports["hls"], s, PLAY_TOKEN) for s in STREAMS), 30,
                   "edge A HLS playlists")
        yield lab
    finally:
        lab.stop()


def test_rendered_configs_use_only_keys_xiu_knows(lab: Lab) -> None:
    for name, rendered in lab.rendered.items():
        for tier in ("origin", "edge"):
            doc = tomllib.loads(rendered.config(tier))
            assert unknown_keys(doc, XIU_SCHEMA) == [], f"{name}/{tier}"
            # The one section xiu requires and many upstream examples omit.
            assert set(doc["authsecret"]) >= {"key", "password", "push_password"}


def test_both_tiers_loaded_by_real_xiu(lab: Lab) -> None:
    for node in lab.nodes:
        assert node.xiu.alive(), node.xiu.log.read_text()[-2000:]
        assert node.api("/api/query_whole_streams")["error_code"] == 0
    origin, edge = lab.nodes[0], lab.nodes[1]
    for port in (origin.ports["rtmp"], edge.ports["rtmp"], edge.ports["hls"], edge.ports["httpflv"]):
        assert h.port_open(port), port


def test_publish_without_or_with_wrong_token_is_refused(lab: Lab) -> None:
    attempts = {
        "no token": lab.publish("live/intruder", token=None, seconds=8),
        "wrong token": lab.publish("live/intruder2", token="not-the-token-xxxxxxxx", seconds=8),
        # Edges hold an unpublished publish token: a stream published there would live on one replica only.
        "edge with publish token": lab.publish("live/intruder3", port=lab.nodes[1].ports["rtmp"], seconds=8),
    }
    for what, process in attempts.items():
        code = process.wait(timeout=30)
        assert code != 0, f"publish with {what} was accepted"
    for node in lab.nodes:
        assert not [s for s in node.streams() if "intruder" in s], node.tier


def test_origin_refuses_plays_without_the_relay_token(lab: Lab) -> None:
    ok, kinds, _ = h.probe(f"rtmp://127.0.0.1:{lab.origin_ports['rtmp']}/live/cam1?token={PLAY_TOKEN}", timeout=15)
    assert not ok, f"origin served a viewer without the relay token: {kinds}"


def test_edge_serves_every_stream_on_every_protocol_first_try(lab: Lab) -> None:
    edge = lab.nodes[1]
    assert edge.streams() == sorted(STREAMS), diagnostics(edge)
    for stream in STREAMS:
        for protocol, url in play_urls(edge, stream).items():
            ok, kinds, error = h.probe(url)
            assert ok, f"{protocol} {stream}: {kinds} {error}"
            assert "audio" in kinds, f"{protocol} {stream}: {kinds}"


def test_play_without_token_is_refused_when_play_auth_is_on(lab: Lab) -> None:
    edge = lab.nodes[1]
    for protocol, url in play_urls(edge, STREAMS[0]).items():
        ok, _, _ = h.probe(url.split("?")[0], timeout=15)
        assert not ok, f"{protocol} played without the play token"


def test_edge_started_after_the_publish_serves_first_try(lab: Lab) -> None:
    edge_b = lab.start("b")
    started = time.monotonic()
    wait_ready(edge_b)
    ready_after = time.monotonic() - started
    status = edge_b.agent_get("/status")[1]
    assert status["initial_sync_done"] and sorted(status["local_streams"]) == sorted(STREAMS), status
    for stream in STREAMS:
        for protocol, url in play_urls(edge_b, stream).items():
            ok, kinds, error = h.probe(url)
            assert ok, f"late edge, {protocol} {stream}: {kinds} {error} (ready after {ready_after:.1f}s)"


def test_publisher_reconnect_is_followed_by_every_edge(lab: Lab) -> None:
    stream = STREAMS[0]
    first = lab.publishers[0]
    first.terminate()
    first.wait(timeout=10)
    lab.publish(stream)
    origin = lab.nodes[0]
    h.wait_for(lambda: stream in origin.streams(), 30, "republished stream on the origin")
    for edge in lab.nodes[1:]:
        if edge.tier != "edge":
            continue
        # The agent replaces the dead relay (xiu never does); viewers need one reconnect, not an operator.
        def plays(edge: h.Node = edge) -> bool:
            return h.probe(play_urls(edge, stream)["rtmp"], timeout=10)[0]
        h.wait_for(plays, 45, f"{stream} playing again on edge {edge.ports['rtmp']}")
        status = edge.agent_get("/status")[1]
        assert status["kicks"] >= 1, status


VARIANTS: dict[str, dict[str, Any]] = {
    "play-auth-off": {"xiu_play_auth_enabled": False, "xiu_play_token": ""},
    "debug-log-gop-2": {"xiu_log_level": "debug", "xiu_gop_num": 2},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_other_renderable_configs_load_in_real_xiu(variant: str, tmp_path: Path) -> None:
    """The main lab covers play auth on; these cover the other branches of the template."""
    ports = tier_ports()
    origin_ports = tier_ports()
    values = {**BASE_VARS, **VARIANTS[variant]}
    job = h.render(tmp_path / "render", h.tier_vars(values, ports, origin_ports))
    assert job.wait(timeout=300) == 0, (tmp_path / "render" / "render.log").read_text()[-3000:]
    rendered = h.load_rendered(tmp_path / "render")
    for tier in ("origin", "edge"):
        text = rendered.config(tier)
        assert unknown_keys(tomllib.loads(text), XIU_SCHEMA) == []
        xiu = h.start_xiu(f"{variant}/{tier}", tmp_path / tier, text, ports["api"])
        try:
            time.sleep(0.5)
            assert xiu.alive(), f"{variant}/{tier}: xiu exited: {xiu.log.read_text()[-2000:]}"
            assert h.port_open(ports["rtmp"])
        finally:
            xiu.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 1/100 s


def test_ended_streams_are_cleaned_up_and_edges_go_idle(lab: Lab) -> None:
    """xiu 0.13.0 keeps a dead relay as a phantom stream and spins a core on it; the agent kicks it."""
    for process in lab.publishers:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
    edges = [node for node in lab.nodes if node.tier == "edge"]
    h.wait_for(lambda: all(edge.streams() == [] for edge in edges), 30, "edges to drop the ended streams")
    for edge in edges:
        before = cpu_seconds(edge.xiu.popen.pid)
        time.sleep(3)
        used = cpu_seconds(edge.xiu.popen.pid) - before
        assert used < 0.5, f"edge xiu used {used:.2f} CPU-seconds in 3 s with no stream"
