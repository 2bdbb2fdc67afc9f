"""Real xiu processes on loopback, configured by the role's own rendered objects.

Nothing here copies a template: configs come from the Secrets that `playbooks/xiu.yml` writes in render mode, and the
agent's code and environment from the rendered ConfigMap and Deployment. Only addresses and ports are
loopback-specific, passed as extra vars exactly as an inventory would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("STREAMOPS_CACHE", Path.home() / ".cache" / "streamops-xiu"))
PORT_KEYS = ("rtmp", "hls", "httpflv", "api", "agent")


def pinned(key: str) -> str:
    versions = yaml.safe_load((REPO / "roles" / "versions" / "defaults" / "main.yml").read_text())
    return str(versions[key])


def xiu_binary() -> Path:
    return CACHE / f"xiu-{pinned('versions_xiu')}" / "bin" / "xiu"


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    return ports


@dataclass
class Rendered:
    """The objects of one render, by kind and name."""

    objects: dict[tuple[str, str], dict[str, Any]]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects[(kind, name)]

    def config(self, tier: str) -> str:
        return str(self.get("Secret", f"xiu-{tier}-config")["stringData"]["xiu.toml"])

    def agent_code(self) -> str:
        return str(self.get("ConfigMap", "xiu-agent")["data"]["xiu_agent.py"])

    def agent_env(self, tier: str, mounts_dir: Path) -> dict[str, str]:
        """The agent container's environment, its Secret volumes written under mounts_dir like the kubelet
        would mount them (and paths into them rewritten to there)."""
        pod = self.get("Deployment", f"xiu-{tier}")["spec"]["template"]["spec"]
        agent = next(c for c in pod["containers"] if c["name"] == "agent")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in agent.get("volumeMounts", []):
            source = volumes[mount["name"]].get("secret")
            if source is None:
                continue
            data = self.get("Secret", source["secretName"])["stringData"]
            local = mounts_dir / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            for item in source.get("items") or [{"key": k, "path": k} for k in data]:
                (local / item["path"]).write_text(str(data[item["key"]]))
            mounts[mount["mountPath"].rstrip("/") + "/"] = local
        env: dict[str, str] = {}
        for item in agent.get("env", []):
            assert "value" in item, f"agent env {item['name']}: only literal values are emulated"
            value = str(item["value"])
            for prefix, local in mounts.items():
                if value.startswith(prefix):
                    value = str(local / value[len(prefix):])
            env[item["name"]] = value
        return env


def render(out_dir: Path, extra_vars: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start `playbooks/xiu.yml` in render mode (xiu_cluster_render_dir set) with the given extra vars."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vars_file = out_dir / "extra-vars.json"
    vars_file.write_text(json.dumps({"xiu_cluster_render_dir": str(out_dir / "manifests"), **extra_vars}))
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    return subprocess.Popen(
        [str(ansible_playbook), "playbooks/xiu.yml", "-i", "localhost,", "-e", f"@{vars_file}"],
        cwd=REPO,
        stdout=(out_dir / "render.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def load_rendered(out_dir: Path) -> Rendered:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((out_dir / "manifests" / "xiu").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return Rendered(objects)


def tier_vars(base: dict[str, Any], ports: dict[str, int], origin: dict[str, int] | None) -> dict[str, Any]:
    values = {**base, "xiu_ports": ports}
    if origin is not None:
        values.update(
            xiu_origin_host="127.0.0.1",
            xiu_origin_rtmp_port=origin["rtmp"],
            xiu_origin_api_port=origin["api"],
        )
    return values


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.alive():
            # xiu handles SIGINT only, like the pods' preStop hook.
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Node:
    """One xiu process (plus its agent on edges) in its own working directory."""

    tier: str
    workdir: Path
    ports: dict[str, int]
    xiu: Process
    agent: Process | None = None
    extra: list[Process] = field(default_factory=list)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['api']}{path}", timeout=3) as answer:
            return json.loads(answer.read())

    def streams(self) -> list[str]:
        data = self.api("/api/query_whole_streams")["data"]
        if not isinstance(data, list):
            return []
        keys = []
        for entry in data:
            rtmp = entry["publisher"]["identifier"]["rtmp"]
            keys.append(f"{rtmp['app_name']}/{rtmp['stream_name']}")
        return sorted(keys)

    def agent_get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['agent']}{path}", timeout=3) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        except OSError as error:  # not listening yet
            return 0, {"error": str(error)}

    def stop(self) -> None:
        for process in [*self.extra, *([self.agent] if self.agent else []), self.xiu]:
            process.stop()


def start_xiu(name: str, workdir: Path, config_text: str, api_port: int) -> Process:
    """Run the real xiu on a rendered config in workdir (its HLS root) and wait for its API."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "xiu.toml"
    config.write_text(config_text)
    log = workdir / "xiu.log"
    xiu = Process(
        name,
        subprocess.Popen([str(xiu_binary()), "-c", str(config)], cwd=workdir, stdout=log.open("wb"),
                         stderr=subprocess.STDOUT),
        log,
    )
    wait_for(lambda: port_open(api_port) or not xiu.alive(), 20, f"{name} API")
    assert xiu.alive(), f"{name} exited: {log.read_text()[-2000:]}"
    return xiu


def start_node(tier: str, workdir: Path, rendered: Rendered, ports: dict[str, int]) -> Node:
    xiu = start_xiu(f"xiu-{tier}", workdir, rendered.config(tier), ports["api"])
    node = Node(tier, workdir, ports, xiu)
    agent_file = workdir / "xiu_agent.py"
    agent_file.write_text(rendered.agent_code())
    agent_log = workdir / "agent.log"
    env = {"PATH": os.environ.get("PATH", ""), **rendered.agent_env(tier, workdir / "mounts")}
    node.agent = Process(
        f"agent-{tier}",
        subprocess.Popen([sys.executable, "-u", str(agent_file)], cwd=workdir, env=env,
                         stdout=agent_log.open("wb"), stderr=subprocess.STDOUT),
        agent_log,
    )
    return node


def port_open(port: int) -> bool:
    with closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def publish(url: str, seconds: int, log: Path) -> subprocess.Popen[bytes]:
    """A cheap live publisher: small test pattern + tone, 1 s GOP, real time."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
         "-c:a", "aac", "-t", str(seconds), "-f", "flv", url],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def probe(url: str, timeout: float = 20) -> tuple[bool, list[str], str]:
    """One play attempt: ffprobe reads the stream and lists its media types."""
    try:
        result = subprocess.run(
            ["ffprobe", "-v", "error", "-rw_timeout", "8000000", "-show_entries", "stream=codec_type",
             "-of", "csv=p=0", url],
            capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False, [], "timeout"
    kinds = sorted({line.strip() for line in result.stdout.decode().splitlines() if line.strip()})
    return result.returncode == 0 and "video" in kinds, kinds, result.stderr.decode()[-500:]


def tools_present() -> Iterator[str]:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            yield tool


def hls_ready(port: int, stream: str, token: str) -> bool:
    app, name = stream.split("/")
    try:
        url = f"http://127.0.0.1:{port}/{app}/{name}/{name}.m3u8?token={token}"
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.read(7) == b"#EXTM3U")
    except OSError:
        return False
