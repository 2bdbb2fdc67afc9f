#!/usr/bin/env python3
"""xiu-agent: the sidecar that keeps an xiu edge in step with its origin and judges xiu's health.

xiu's own relay is a single origin address plus an API call per stream, and it never retries: a pull is
started on demand (and the viewer who triggered it gets an error), a relay whose origin goes away leaves a
dead stream behind, and the pull client itself dies on one refused connection. This agent closes those
gaps from outside, with nothing but the xiu HTTP API:

* every poll it lists the origin's streams and its own xiu's streams;
* a stream the origin has and the edge lacks is pulled (the stream name carries the relay token, which
  xiu forwards verbatim to the origin), so viewers find every stream on their first try;
* a local copy whose origin publisher changed (the publisher reconnected), that stopped receiving while
  the origin still does, or whose stream ended on the origin is kicked off, and pulled again if needed;
* while the origin's API does not answer (its node is gone, it restarts), a local copy that stopped
  receiving too is kicked off: a relay of a vanished origin never ends by itself, and its viewers wait on
  a frozen stream instead of reconnecting;
* a new edge reports ready only once it holds every stream the origin had when it started, HLS
  playlists included;
* pulls that never arrive, round after round while other pulls are due, mean xiu's pull client is gone:
  /livez then fails and the kubelet restarts xiu.

Endpoints (port XIU_AGENT_LISTEN_PORT): /healthz (agent loop alive), /livez (xiu's hub answers and its pull
client works), /readyz (every listener accepts, the hub answers and, on an edge, the first sync is done),
/status (JSON, no secrets).

Standard library only: it runs in a stock Python image with this file mounted from a ConfigMap.
"""

from __future__ import annotations

import faulthandler
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping

HTTP_TIMEOUT_SECONDS = 2.0
# Consecutive polls a stream must be missing from the origin, or a local copy must stand still while the
# origin's grows, before the local copy is removed. One poll could be a race with a publish in progress.
GONE_POLLS = 2
STALL_POLLS = 5
# Consecutive polls without an answer from the origin's API and without a byte arriving on a local copy
# before that copy is removed as the relay of a vanished origin. The byte count guards against a blip of
# the origin's API while its media still flows.
ORPHAN_POLLS = 3
# Consecutive failed hub checks after which xiu counts as wedged.
HUB_FAILURES_FOR_DEAD = 3


@dataclass(frozen=True)
class Stream:
    """One live stream as xiu's API reports it."""

    app: str
    name: str
    publisher_id: str
    received_bytes: int

    @property
    def key(self) -> str:
        return f"{self.app}/{self.name}"


def parse_streams(payload: Mapping[str, Any]) -> dict[str, Stream]:
    """Turn a /api/query_whole_streams answer into streams by "app/name".

    xiu answers `"data": {}` when it has no stream and a list otherwise; only RTMP streams are relayed.
    """
    if payload.get("error_code") != 0:
        raise ValueError(f"xiu API error: {payload.get('desp')!r}")
    data = payload.get("data")
    streams: dict[str, Stream] = {}
    if not isinstance(data, list):
        return streams
    for entry in data:
        publisher = entry.get("publisher") or {}
        rtmp = (publisher.get("identifier") or {}).get("rtmp")
        if not rtmp:
            continue
        stream = Stream(
            app=str(rtmp["app_name"]),
            name=str(rtmp["stream_name"]),
            publisher_id=str(publisher.get("id", "")),
            received_bytes=int(entry.get("total_recv_bytes", 0)),
        )
        streams[stream.key] = stream
    return streams


@dataclass(frozen=True)
class Pull:
    stream: Stream


@dataclass(frozen=True)
class Kick:
    key: str
    publisher_id: str
    reason: str


Action = Pull | Kick


@dataclass
class _Pending:
    origin_publisher: str
    polls: int = 0


@dataclass
class EdgeSync:
    """Decides, poll by poll, which pulls and kicks bring the edge in line with the origin. Pure logic."""

    pull_timeout_polls: int
    broken_after_rounds: int
    pending: dict[str, _Pending] = field(default_factory=dict)
    bound: dict[str, str] = field(default_factory=dict)
    gone: dict[str, int] = field(default_factory=dict)
    stalled: dict[str, int] = field(default_factory=dict)
    last_bytes: dict[str, tuple[int, int]] = field(default_factory=dict)
    # "app/name" -> (received bytes, polls it has not grown) while the origin's API does not answer
    orphaned: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Set while the origin was unreachable: xiu's pull client dies on the first refused connection, and a
    # vanishing origin refuses some. Until a pull arrives again, one failed round is proof enough.
    suspect: bool = False
    failed_rounds: int = 0
    pulls_requested: int = 0
    pulls_arrived: int = 0
    pulls_timed_out: int = 0
    kicks: int = 0

    @property
    def broken(self) -> bool:
        return self.failed_rounds >= self.broken_after_rounds

    def reset(self) -> None:
        """Forget everything: xiu restarted, so its streams and pull client are new."""
        self.pending.clear()
        self.bound.clear()
        self.gone.clear()
        self.stalled.clear()
        self.last_bytes.clear()
        self.orphaned.clear()
        self.suspect = False
        self.failed_rounds = 0

    def plan_without_origin(self, local: Mapping[str, Stream]) -> list[Action]:
        """The origin's API did not answer this poll: kick the local copies that stopped receiving too."""
        self.suspect = True
        actions: list[Action] = []
        for key, copy in local.items():
            seen = self.orphaned.get(key)
            still = seen[1] + 1 if seen is not None and seen[0] == copy.received_bytes else 0
            self.orphaned[key] = (copy.received_bytes, still)
            if still >= ORPHAN_POLLS:
                actions.append(self._kick(copy, "origin unreachable and local copy stalled"))
        for key in [k for k in self.orphaned if k not in local]:
            del self.orphaned[key]
        return actions

    def plan(self, origin: Mapping[str, Stream], local: Mapping[str, Stream]) -> list[Action]:
        self.orphaned.clear()
        actions: list[Action] = []
        arrived = 0
        timed_out = 0
        for key, upstream in origin.items():
            copy = local.get(key)
            if copy is None:
                pending = self.pending.get(key)
                if pending is not None and pending.origin_publisher == upstream.publisher_id:
                    pending.polls += 1
                    if pending.polls < self.pull_timeout_polls:
                        continue
                    timed_out += 1
                actions.append(Pull(upstream))
                self.pending[key] = _Pending(upstream.publisher_id)
                continue
            pending = self.pending.pop(key, None)
            if pending is not None:
                arrived += 1
                self.bound[key] = pending.origin_publisher
            # A copy we did not pull ourselves (agent restarted, xiu did not) is taken as current.
            bound = self.bound.setdefault(key, upstream.publisher_id)
            if bound != upstream.publisher_id:
                actions.append(self._kick(copy, "origin publisher changed"))
                continue
            previous = self.last_bytes.get(key)
            self.last_bytes[key] = (copy.received_bytes, upstream.received_bytes)
            if previous and copy.received_bytes == previous[0] and upstream.received_bytes > previous[1]:
                self.stalled[key] = self.stalled.get(key, 0) + 1
                if self.stalled[key] >= STALL_POLLS:
                    actions.append(self._kick(copy, "local copy stalled"))
            else:
                self.stalled.pop(key, None)
        for key, copy in local.items():
            if key in origin:
                self.gone.pop(key, None)
                continue
            self.gone[key] = self.gone.get(key, 0) + 1
            if self.gone[key] >= GONE_POLLS:
                actions.append(self._kick(copy, "stream ended on the origin"))
        for key in [k for k in self.pending if k not in origin]:
            del self.pending[key]
        self.pulls_requested += sum(isinstance(a, Pull) for a in actions)
        self.pulls_arrived += arrived
        self.pulls_timed_out += timed_out
        if arrived:
            self.failed_rounds = 0
            self.suspect = False
        elif timed_out:
            self.failed_rounds = self.broken_after_rounds if self.suspect else self.failed_rounds + 1
        return actions

    def _kick(self, copy: Stream, reason: str) -> Kick:
        for table in (self.bound, self.gone, self.stalled, self.last_bytes, self.orphaned):
            table.pop(copy.key, None)
        self.kicks += 1
        return Kick(copy.key, copy.publisher_id, reason)


class Resolver:
    """Host name -> address, remembering the last answer.

    The origin is a Service name: its ClusterIP never changes while the Service exists, but cluster DNS can
    be gone exactly when it matters (its pods on a failed node): a lookup then fails or hangs for seconds,
    and a hung poll loop would fail /livez. So an answer is reused for `ttl` seconds, a lookup may take at
    most `timeout` seconds (it runs in a thread), and when it fails the last answer is kept."""

    def __init__(self, ttl: float = 30.0, timeout: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 lookup: Callable[[str], str] = socket.gethostbyname) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self.clock = clock
        self.lookup = lookup
        self.known: dict[str, tuple[str, float]] = {}

    def address(self, host: str) -> str:
        known = self.known.get(host)
        if known is not None and self.clock() - known[1] < self.ttl:
            return known[0]
        answer: list[str] = []
        worker = threading.Thread(target=lambda: answer.append(self._try(host)), daemon=True)
        worker.start()
        worker.join(self.timeout)
        if answer and answer[0]:
            self.known[host] = (answer[0], self.clock())
            return answer[0]
        if known is not None:
            return known[0]
        return host  # never resolved: let the request fail (or resolve) on its own

    def _try(self, host: str) -> str:
        try:
            return self.lookup(host)
        except OSError:
            return ""


class XiuApi:
    """The few calls of xiu's HTTP API the agent needs."""

    def __init__(self, base_url: str, timeout: float = HTTP_TIMEOUT_SECONDS, resolver: Resolver | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.resolver = resolver

    def _url(self, path: str) -> str:
        if self.resolver is None:
            return self.base_url + path
        parts = urllib.parse.urlsplit(self.base_url)
        host = parts.hostname or ""
        netloc = self.resolver.address(host) + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")) + path

    def _raw(self, path: str, body: Mapping[str, Any] | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self._url(path), data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return bytes(response.read())

    def _request(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return json.loads(self._raw(path, body) or b"null")

    def streams(self) -> dict[str, Stream]:
        return parse_streams(self._request("/api/query_whole_streams"))

    def start_pull(self, stream: Stream, relay_token: str, origin_address: str) -> None:
        # xiu sends the raw stream name, query string included, in its RTMP play to the origin and
        # publishes locally under the name without the query.
        name = f"{stream.name}?token={relay_token}" if relay_token else stream.name
        answer = self._request(
            "/api/start_relay_stream",
            {
                "id": stream.key,
                "identifier": {"rtmp": {"app_name": stream.app, "stream_name": name}},
                "server_address": origin_address,
                "relay_type": "Pull",
            },
        )
        if not isinstance(answer, dict) or answer.get("error_code") != 0:
            raise ValueError(f"start_relay_stream refused: {answer!r}")

    def kick(self, publisher_id: str) -> None:
        # Unlike the other calls, xiu 0.13.0 answers this one with the plain text "ok" (api.rs), whether or
        # not the id named a client.
        answer = self._raw("/api/kick_off_client", {"uuid": publisher_id})
        if answer.strip() != b"ok":
            raise ValueError(f"kick_off_client refused: {answer[:200]!r}")


def hls_playlist_served(port: int, stream: str, token: str, timeout: float = 1.0) -> bool:
    """Whether the local HLS server has a playlist for "app/name" (HLS exists only after the first segment)."""
    app, name = stream.split("/", 1)
    url = f"http://127.0.0.1:{port}/{app}/{name}/{name}.m3u8" + (f"?token={token}" if token else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200 and response.read(7) == b"#EXTM3U")
    except (OSError, ValueError, http.client.HTTPException):
        return False


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Settings:
    tier: str
    listen_port: int
    local_api: str
    check_ports: list[int]
    origin_api: str = ""
    origin_address: str = ""
    relay_token: str = ""
    poll_seconds: float = 1.0
    initial_sync_seconds: float = 30.0
    pull_timeout_polls: int = 5
    broken_after_rounds: int = 6
    hls_port: int = 0
    play_token: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        tier = env.get("XIU_AGENT_TIER", "edge")
        if tier not in ("origin", "edge"):
            raise ValueError(f"XIU_AGENT_TIER must be origin or edge, not {tier!r}")
        origin_api = env.get("XIU_AGENT_ORIGIN_API", "")
        if tier == "edge" and not origin_api:
            raise ValueError("XIU_AGENT_ORIGIN_API is required on an edge")
        return cls(
            tier=tier,
            listen_port=int(env.get("XIU_AGENT_LISTEN_PORT", "9000")),
            local_api=env.get("XIU_AGENT_LOCAL_API", "http://127.0.0.1:8000"),
            check_ports=[int(p) for p in env.get("XIU_AGENT_CHECK_PORTS", "").split(",") if p.strip()],
            origin_api=origin_api,
            origin_address=env.get("XIU_AGENT_ORIGIN_ADDRESS", origin_api.split("//")[-1].split(":")[0]),
            relay_token=secret_from_env(env, "XIU_AGENT_RELAY_TOKEN"),
            poll_seconds=float(env.get("XIU_AGENT_POLL_SECONDS", "1")),
            initial_sync_seconds=float(env.get("XIU_AGENT_INITIAL_SYNC_SECONDS", "30")),
            pull_timeout_polls=int(env.get("XIU_AGENT_PULL_TIMEOUT_POLLS", "5")),
            broken_after_rounds=int(env.get("XIU_AGENT_BROKEN_AFTER_ROUNDS", "6")),
            hls_port=int(env.get("XIU_AGENT_HLS_PORT", "0")),
            play_token=secret_from_env(env, "XIU_AGENT_PLAY_TOKEN"),
        )


def secret_from_env(env: Mapping[str, str], name: str) -> str:
    """The file named by `<name>_FILE` (a Secret key mounted into the pod: the token stays out of the
    environment, which child processes inherit), else the variable `<name>` itself, else ''."""
    path = env.get(f"{name}_FILE", "")
    if not path:
        return env.get(name, "")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as error:
        raise ValueError(f"{name}_FILE: cannot read {path}: {error.strerror}") from error


def log(message: str, **fields: Any) -> None:
    print(json.dumps({"ts": round(time.time(), 3), "msg": message, **fields}), flush=True)


class Agent:
    def __init__(
        self,
        settings: Settings,
        local: XiuApi,
        origin: XiuApi | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.local = local
        self.origin = origin
        self.clock = clock
        self.sync = EdgeSync(settings.pull_timeout_polls, settings.broken_after_rounds)
        self.started = clock()
        self.heartbeat = clock()
        self.hub_failures = 0
        self.hub_ever_answered = False
        self.origin_reachable = False
        self.initial_targets: set[str] | None = None
        self.initial_sync_done = settings.tier == "origin"
        self.local_streams: dict[str, Stream] = {}
        self.origin_streams: dict[str, Stream] = {}
        self.lock = threading.Lock()

    def poll_once(self) -> None:
        try:
            local = self.local.streams()
        except (OSError, ValueError, http.client.HTTPException) as error:
            with self.lock:
                self.hub_failures += 1
                if self.hub_ever_answered:
                    # Whatever xiu is doing now (wedged, restarting), its streams and pull client are not
                    # the ones the sync state describes.
                    self.sync.reset()
            log("local xiu API did not answer", error=str(error))
            self.heartbeat = self.clock()
            return
        with self.lock:
            self.hub_failures = 0
            self.hub_ever_answered = True
            self.local_streams = local
        if self.origin is not None:
            self._sync(local)
        self.heartbeat = self.clock()

    def _sync(self, local: dict[str, Stream]) -> None:
        assert self.origin is not None
        try:
            origin = self.origin.streams()
        except (OSError, ValueError, http.client.HTTPException) as error:
            with self.lock:
                self.origin_reachable = False
                actions = self.sync.plan_without_origin(local)
            log("origin API did not answer", error=str(error))
            self._act(actions)
            self._update_initial_sync(local)
            return
        with self.lock:
            self.origin_reachable = True
            self.origin_streams = origin
            if self.initial_targets is None:
                self.initial_targets = set(origin)
            actions = self.sync.plan(origin, local)
        self._act(actions)
        self._update_initial_sync(local)

    def _act(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                if isinstance(action, Pull):
                    self.local.start_pull(action.stream, self.settings.relay_token, self.settings.origin_address)
                    log("pull requested", stream=action.stream.key)
                else:
                    self.local.kick(action.publisher_id)
                    log("local copy removed", stream=action.key, reason=action.reason)
            except (OSError, ValueError, http.client.HTTPException) as error:
                log("xiu API call failed", action=type(action).__name__, error=str(error))

    def _update_initial_sync(self, local: Mapping[str, Stream]) -> None:
        # Only the poll thread writes these two fields, so reading them without the lock is safe here, and
        # the HTTP checks below do not hold up the health endpoints.
        if self.initial_sync_done:
            return
        elapsed = self.clock() - self.started
        targets = self.initial_targets
        caught_up = targets is not None and targets <= set(local)
        if caught_up and targets and self.settings.hls_port:
            # A new edge takes viewers only once it can also answer HLS for every stream.
            caught_up = all(
                hls_playlist_served(self.settings.hls_port, key, self.settings.play_token) for key in targets
            )
        if caught_up or elapsed >= self.settings.initial_sync_seconds:
            with self.lock:
                self.initial_sync_done = True
            log("initial sync done", caught_up=caught_up, seconds=round(elapsed, 1))

    # Health verdicts ---------------------------------------------------------------------------------

    def loop_alive(self) -> bool:
        return self.clock() - self.heartbeat < max(10.0, 5 * self.settings.poll_seconds)

    def live(self) -> tuple[bool, str]:
        with self.lock:
            if not self.loop_alive():
                return False, "agent loop stalled"
            if self.hub_failures >= HUB_FAILURES_FOR_DEAD:
                return False, f"xiu API failed {self.hub_failures} times in a row"
            if self.sync.broken:
                return False, f"pulls failed for {self.sync.failed_rounds} rounds: xiu pull client is gone"
            return True, "ok"

    def ready(self) -> tuple[bool, str]:
        alive, reason = self.live()
        if not alive:
            return False, reason
        with self.lock:
            if not self.hub_ever_answered or self.hub_failures:
                return False, "xiu API not answering"
            if not self.initial_sync_done:
                return False, "initial sync with the origin not done"
        closed = [port for port in self.settings.check_ports if not port_accepts(port)]
        if closed:
            return False, f"listeners not accepting: {closed}"
        return True, "ok"

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "tier": self.settings.tier,
                "local_streams": sorted(self.local_streams),
                "origin_streams": sorted(self.origin_streams),
                "origin_reachable": self.origin_reachable,
                "initial_sync_done": self.initial_sync_done,
                "hub_failures": self.hub_failures,
                "pending_pulls": sorted(self.sync.pending),
                "failed_rounds": self.sync.failed_rounds,
                "pulls_requested": self.sync.pulls_requested,
                "pulls_arrived": self.sync.pulls_arrived,
                "pulls_timed_out": self.sync.pulls_timed_out,
                "kicks": self.sync.kicks,
            }

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = self.clock()
            try:
                self.poll_once()
            except Exception as error:  # noqa: BLE001 - one odd answer must not end the sidecar
                log("poll failed", error=repr(error))
            stop.wait(max(0.0, self.settings.poll_seconds - (self.clock() - started)))


def make_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            if self.path == "/healthz":
                ok, reason = agent.loop_alive(), "agent loop"
                self._reply(200 if ok else 503, {"ok": ok, "reason": reason})
            elif self.path == "/livez":
                ok, reason = agent.live()
                self._reply(200 if ok else 503, {"ok": ok, "reason": reason})
            elif self.path == "/readyz":
                ok, reason = agent.ready()
                self._reply(200 if ok else 503, {"ok": ok, "reason": reason})
            elif self.path == "/status":
                self._reply(200, agent.status())
            else:
                self._reply(404, {"error": "not found"})

        def _reply(self, code: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature from the base)
            return  # probes every few seconds would drown the useful lines

    return Handler


def main(env: Mapping[str, str]) -> int:
    try:
        settings = Settings.from_env(env)
    except ValueError as error:
        print(f"xiu-agent: {error}", file=sys.stderr)
        return 2
    # `kill -USR1 <pid>` prints every thread's stack to the container log: what a stuck agent is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    origin = XiuApi(settings.origin_api, resolver=Resolver()) if settings.tier == "edge" else None
    agent = Agent(settings, XiuApi(settings.local_api), origin)
    server = ThreadingHTTPServer(("0.0.0.0", settings.listen_port), make_handler(agent))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("xiu-agent started", tier=settings.tier, port=settings.listen_port, origin=settings.origin_api)
    stop = threading.Event()
    # The kubelet stops a container with SIGTERM. As PID 1 without a handler the agent would ignore it, and
    # every pod stop (rollout, scale-down, eviction) would last the whole grace period: measured 30 s, during
    # which the singleton origin's replacement (Recreate) cannot start.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        agent.run_forever(stop)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
