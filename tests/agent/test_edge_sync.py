"""The agent's decisions, poll by poll, without any server."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def stream(mod: ModuleType, key: str, publisher: str = "p1", received: int = 0) -> Any:
    app, name = key.split("/")
    return mod.Stream(app=app, name=name, publisher_id=publisher, received_bytes=received)


def by_key(*streams: Any) -> dict[str, Any]:
    return {s.key: s for s in streams}


@pytest.fixture()
def sync(agent_module: ModuleType) -> Any:
    return agent_module.EdgeSync(pull_timeout_polls=3, broken_after_rounds=2)


def test_parse_streams_reads_xiu_answers(agent_module: ModuleType) -> None:
    empty = {"error_code": 0, "desp": "succ", "data": {}}
    assert agent_module.parse_streams(empty) == {}
    answer = {
        "error_code": 0,
        "desp": "succ",
        "data": [
            {
                "publisher": {"id": "17953214462714", "identifier": {"rtmp": {"app_name": "live", "stream_name": "cam1"}}},
                "total_recv_bytes": 84479,
            },
            {"publisher": {"id": "9", "identifier": {"rtsp": {"stream_path": "/x"}}}},
        ],
    }
    streams = agent_module.parse_streams(answer)
    assert list(streams) == ["live/cam1"]
    assert streams["live/cam1"].publisher_id == "17953214462714"
    assert streams["live/cam1"].received_bytes == 84479
    with pytest.raises(ValueError):
        agent_module.parse_streams({"error_code": -1, "desp": "failed"})


def test_missing_stream_is_pulled_once_while_pending(agent_module: ModuleType, sync: Any) -> None:
    origin = by_key(stream(agent_module, "live/a"))
    first = sync.plan(origin, {})
    assert [type(a).__name__ for a in first] == ["Pull"]
    assert first[0].stream.key == "live/a"
    # Not yet arrived: no duplicate request before the timeout.
    assert sync.plan(origin, {}) == []
    assert sync.plan(origin, {}) == []
    # Timed out (3 polls): asked again, and the round counts as failed.
    again = sync.plan(origin, {})
    assert [type(a).__name__ for a in again] == ["Pull"]
    assert sync.failed_rounds == 1
    assert sync.pulls_timed_out == 1


def test_arrival_resets_failures_and_binds_publisher(agent_module: ModuleType, sync: Any) -> None:
    origin = by_key(stream(agent_module, "live/a", "p1"))
    sync.plan(origin, {})
    actions = sync.plan(origin, by_key(stream(agent_module, "live/a", "local1")))
    assert actions == []
    assert sync.bound["live/a"] == "p1"
    assert sync.pulls_arrived == 1
    assert not sync.broken


def test_broken_after_consecutive_failed_rounds(agent_module: ModuleType, sync: Any) -> None:
    origin = by_key(stream(agent_module, "live/a"))
    for _ in range(1 + 3 * 2):
        sync.plan(origin, {})
    assert sync.failed_rounds == 2
    assert sync.broken
    sync.reset()
    assert not sync.broken


def test_publisher_change_on_origin_kicks_the_stale_copy(agent_module: ModuleType, sync: Any) -> None:
    sync.plan(by_key(stream(agent_module, "live/a", "p1")), {})
    local = by_key(stream(agent_module, "live/a", "local1"))
    assert sync.plan(by_key(stream(agent_module, "live/a", "p1")), local) == []
    # The publisher reconnected: same name, new publisher id on the origin.
    actions = sync.plan(by_key(stream(agent_module, "live/a", "p2")), local)
    assert [(type(a).__name__, a.publisher_id) for a in actions] == [("Kick", "local1")]
    # Next poll the copy is gone and the new publish is pulled.
    actions = sync.plan(by_key(stream(agent_module, "live/a", "p2")), {})
    assert [type(a).__name__ for a in actions] == ["Pull"]


def test_stream_ended_on_origin_is_removed_after_grace(agent_module: ModuleType, sync: Any) -> None:
    local = by_key(stream(agent_module, "live/a", "local1"))
    assert sync.plan({}, local) == []  # one poll could be a race
    actions = sync.plan({}, local)
    assert [(type(a).__name__, a.key) for a in actions] == [("Kick", "live/a")]


def test_stalled_copy_is_kicked_while_origin_grows(agent_module: ModuleType, sync: Any) -> None:
    local = by_key(stream(agent_module, "live/a", "local1", received=100))
    actions: list[Any] = []
    for tick in range(1, agent_module.STALL_POLLS + 2):
        origin = by_key(stream(agent_module, "live/a", "p1", received=1000 * tick))
        actions = sync.plan(origin, local)
        if actions:
            break
    assert [(type(a).__name__, a.reason) for a in actions] == [("Kick", "local copy stalled")]


def test_growing_copy_is_left_alone(agent_module: ModuleType, sync: Any) -> None:
    for tick in range(1, 20):
        origin = by_key(stream(agent_module, "live/a", "p1", received=1000 * tick))
        local = by_key(stream(agent_module, "live/a", "local1", received=900 * tick))
        assert sync.plan(origin, local) == []


def test_relay_of_a_vanished_origin_is_kicked(agent_module: ModuleType, sync: Any) -> None:
    # The origin's node is gone: its API does not answer and the local copy receives nothing.
    local = by_key(stream(agent_module, "live/a", "local1", received=500))
    for _ in range(agent_module.ORPHAN_POLLS):
        assert sync.plan_without_origin(local) == []
    actions = sync.plan_without_origin(local)
    assert [(type(a).__name__, a.key, a.publisher_id) for a in actions] == [("Kick", "live/a", "local1")]
    assert actions[0].reason == "origin unreachable and local copy stalled"
    assert sync.orphaned == {}


def test_origin_api_blip_leaves_flowing_copies_alone(agent_module: ModuleType, sync: Any) -> None:
    # Only the origin's API is slow: media still arrives, so nothing is kicked however long it lasts.
    for tick in range(1, 20):
        assert sync.plan_without_origin(by_key(stream(agent_module, "live/a", "l", received=100 * tick))) == []
    # A stalled poll, then the origin answers again: the count starts over.
    frozen = by_key(stream(agent_module, "live/a", "l", received=5000))
    for _ in range(agent_module.ORPHAN_POLLS):
        assert sync.plan_without_origin(frozen) == []
    origin = by_key(stream(agent_module, "live/a", "p1", received=10))
    sync.plan(origin, frozen)
    for _ in range(agent_module.ORPHAN_POLLS):
        assert sync.plan_without_origin(frozen) == []


def test_after_an_origin_outage_one_failed_round_means_broken(agent_module: ModuleType) -> None:
    sync = agent_module.EdgeSync(pull_timeout_polls=2, broken_after_rounds=6)
    sync.plan_without_origin({})  # the origin went away (and may have refused our pull client)
    origin = by_key(stream(agent_module, "live/a"))
    sync.plan(origin, {})  # pull requested
    sync.plan(origin, {})
    sync.plan(origin, {})  # timed out: no arrival since the outage
    assert sync.broken and sync.failed_rounds == 6
    sync.reset()  # xiu restarted
    assert not sync.suspect and not sync.broken
    sync.plan(origin, {})
    sync.plan(origin, {})
    sync.plan(origin, {})
    assert sync.failed_rounds == 1 and not sync.broken  # without an outage the usual count applies


def test_settings_from_env_validates(agent_module: ModuleType) -> None:
    with pytest.raises(ValueError, match="XIU_AGENT_ORIGIN_API"):
        agent_module.Settings.from_env({"XIU_AGENT_TIER": "edge"})
    with pytest.raises(ValueError, match="origin or edge"):
        agent_module.Settings.from_env({"XIU_AGENT_TIER": "viewer"})
    settings = agent_module.Settings.from_env(
        {
            "XIU_AGENT_TIER": "edge",
            "XIU_AGENT_ORIGIN_API": "http://xiu-origin.xiu.svc:8000",
            "XIU_AGENT_CHECK_PORTS": "1935,8080, 8081",
        }
    )
    assert settings.check_ports == [1935, 8080, 8081]
    assert settings.origin_address == "xiu-origin.xiu.svc"


def test_settings_read_tokens_from_files(agent_module: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "relay-token").write_text("relay-from-file\n")
    (tmp_path / "play-token").write_text("play-from-file")
    base = {"XIU_AGENT_TIER": "edge", "XIU_AGENT_ORIGIN_API": "http://xiu-origin.xiu.svc:8000"}
    settings = agent_module.Settings.from_env(
        {
            **base,
            "XIU_AGENT_RELAY_TOKEN_FILE": str(tmp_path / "relay-token"),
            "XIU_AGENT_PLAY_TOKEN_FILE": str(tmp_path / "play-token"),
            "XIU_AGENT_RELAY_TOKEN": "ignored-when-a-file-is-named",
        }
    )
    assert (settings.relay_token, settings.play_token) == ("relay-from-file", "play-from-file")
    assert agent_module.Settings.from_env({**base, "XIU_AGENT_RELAY_TOKEN": "from-env"}).relay_token == "from-env"
    with pytest.raises(ValueError, match="XIU_AGENT_RELAY_TOKEN_FILE"):
        agent_module.Settings.from_env({**base, "XIU_AGENT_RELAY_TOKEN_FILE": str(tmp_path / "missing")})
