"""Local processes of the benchmark: the test clip, xiu and nginx-rtmp on loopback, publishers, the load
client, and CPU accounting from /proc."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("STREAMOPS_CACHE", Path.home() / ".cache" / "streamops-xiu"))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The input every target gets: 1280x720 test pattern at 25 fps, H.264 CBR 1.4 Mb/s with a 1 s GOP, AAC
# 96 kb/s: about 1.5 Mb/s on the wire. Encoded once, published with -c copy (publishers cost almost no CPU).
CLIP_SPEC = {"seconds": 12, "size": "1280x720", "fps": 25, "video_kbps": 1400, "audio_kbps": 96, "gop": 25}


def clip_path() -> Path:
    key = hashlib.sha256(json.dumps(CLIP_SPEC, sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / "bench" / f"clip-{key}.flv"


def ensure_clip() -> Path:
    path = clip_path()
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    s = CLIP_SPEC
    tmp = path.with_suffix(".tmp.flv")
    subprocess.run(
        ["nice", "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={s['size']}:rate={s['fps']}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(s["seconds"]),
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-b:v", f"{s['video_kbps']}k", "-maxrate", f"{s['video_kbps']}k", "-bufsize", f"{s['video_kbps']}k",
         "-x264-params", "nal-hrd=cbr:force-cfr=1", "-g", str(s["gop"]), "-keyint_min", str(s["gop"]),
         "-sc_threshold", "0", "-c:a", "aac", "-b:a", f"{s['audio_kbps']}k", "-f", "flv", str(tmp)],
        check=True, stdin=subprocess.DEVNULL)
    tmp.rename(path)
    return path


def loadclient_binary() -> Path:
    """Build bench/loadclient once per source hash (Go sources + go.mod + go.sum) into the cache."""
    src = REPO / "bench" / "loadclient"
    digest = hashlib.sha256()
    for name in sorted(p.name for p in src.iterdir() if p.suffix == ".go" or p.name in ("go.mod", "go.sum")):
        digest.update(name.encode() + b"\0" + (src / name).read_bytes())
    out = CACHE / "bench" / f"loadclient-{digest.hexdigest()[:12]}"
    if out.exists():
        return out
    go = shutil.which("go") or "/usr/local/go/bin/go"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    subprocess.run(["nice", go, "build", "-trimpath", "-o", str(out), "."], cwd=src, env=env, check=True)
    return out


def port_open(host: str, port: int) -> bool:
    with closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port: int, seconds: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    rtmp_port: int
    flv_port: int | None
    workdir: Path
    hls_port: int | None = None

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def rtmp_url(self, stream: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{stream}"

    def flv_url(self, stream: str) -> str | None:
        if self.flv_port is None:
            return None
        return f"http://127.0.0.1:{self.flv_port}/{stream}.flv"


def xiu_binary() -> Path:
    return Path(os.environ.get("XIU_BIN", "")) if os.environ.get("XIU_BIN") else (
        CACHE / f"xiu-{os.environ.get('XIU_VERSION', '0.13.0')}" / "bin" / "xiu")


def start_xiu(workdir: Path) -> Server:
    """xiu with what an edge runs (RTMP, HTTP-FLV, HLS), no auth: the same binary as the pods' image."""
    rtmp, flv, hls, api = free_ports(4)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "xiu.toml").write_text(
        f"[rtmp]\nenabled = true\nport = {rtmp}\ngop_num = 1\n\n"
        f"[httpflv]\nenabled = true\nport = {flv}\n\n"
        f"[hls]\nenabled = true\nport = {hls}\nneed_record = false\n\n"
        f"[httpapi]\nport = {api}\n\n"
        '[authsecret]\nkey = "bench"\npassword = "bench"\npush_password = "bench"\n\n'
        '[log]\nlevel = "warn"\n')
    proc = subprocess.Popen([str(xiu_binary()), "-c", "xiu.toml"], cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=(workdir / "xiu.log").open("wb"), stderr=subprocess.STDOUT)
    wait_port(rtmp, 20, proc)
    wait_port(flv, 20, proc)
    return Server("xiu-direct", proc, rtmp, flv, workdir, hls)


NGINX_CONF = """load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 16384; }}
rtmp {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    chunk_size 4096;
    application live {{ live on; }}
  }}
}}
"""

NGINX_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def nginx_missing() -> str | None:
    if shutil.which("nginx") is None or not NGINX_MODULE.exists():
        return ("nginx-rtmp is not installed (Debian: apt-get install nginx-light libnginx-mod-rtmp); "
                "`make bench` installs it when it runs as root")
    return None


def start_nginx(workdir: Path) -> Server:
    """nginx with Debian's RTMP module as one process (no master, one worker): nginx-rtmp's live fan-out
    stays in the worker that received the publisher (several workers need rtmp_auto_push), so one worker is
    how it is run for live. Runs as nobody when started as root. xiu, by contrast, uses every core (tokio)."""
    (port,) = free_ports(1)
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o777)
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(module=NGINX_MODULE, dir=workdir, port=port))
    cmd = ["nginx", "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=(workdir / "nginx.out").open("wb"), stderr=subprocess.STDOUT)
    wait_port(port, 20, proc)
    return Server("nginx-rtmp", proc, port, None, workdir)


def publish(clip: Path, url: str, seconds: int, log: Path) -> subprocess.Popen[bytes]:
    """Real-time publisher of the pre-encoded clip (looped, -c copy), stopping by itself after `seconds`."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c", "copy", "-t", str(seconds), "-f", "flv", url],
        stdin=subprocess.DEVNULL, stdout=log.open("ab"), stderr=subprocess.STDOUT)


class Publishers:
    """Keeps every publisher running until `until` (monotonic): ffmpeg exits on the first network error, and a
    shared lab has other people's tests in it. Every restart is recorded (a restart is an event to explain)."""

    def __init__(self, clip: Path, until: float, log_dir: Path) -> None:
        self.clip = clip
        self.until = until
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: list[dict[str, Any]] = []
        self.restart_count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def add(self, name: str, url: str) -> None:
        self.procs[url] = publish(self.clip, url, int(self.until - time.monotonic()) + 1,
                                  self.log_dir / f"publish-{name}.log")

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(1.0) and time.monotonic() < self.until:
            for url, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    self.restart_count += 1
                    if len(self.restarts) < 30:  # the first ones say when and where; the count says how often
                        self.restarts.append({"url": url.split("?")[0], "at": time.strftime("%H:%M:%S"),
                                              "rc": proc.returncode})
                    self.procs[url] = publish(self.clip, url, int(self.until - time.monotonic()) + 1,
                                              self.log_dir / "publish-restarts.log")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for proc in self.procs.values():
            stop(proc, signal.SIGTERM)


def proc_cpu_times(pids: list[int]) -> tuple[float, float]:
    """(user, system) seconds of every thread of these processes (host /proc; pods' processes too)."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime (field 14 of stat)
        system += int(fields[12])  # stime (field 15)
    return user / CLK_TCK, system / CLK_TCK


def proc_cpu_seconds(pids: list[int]) -> float:
    return sum(proc_cpu_times(pids))


def system_cpu_seconds() -> float:
    """Busy time of the whole machine (all cores), for context: client and servers share the 2 cores."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


@dataclass
class LoadRun:
    summary: dict[str, Any]
    server_cpu_cores: float | None  # None: the server process changed during the window (restart, eviction)
    server_system_share: float | None  # kernel (network stack) part of the server's CPU
    client_cpu_s: float
    machine_busy_cores: float


def run_load(binary: Path, urls: list[str], players: int, ramp: float, warmup: float, window: float,
             cpu_pids: Any, extra: list[str] | None = None) -> LoadRun:
    """One bounded load run; server CPU is sampled over exactly the measurement window.

    cpu_pids: a callable returning the server's pids (pods may move between runs)."""
    args = [str(binary), "-mode", "load", "-n", str(players), "-ramp", str(ramp), "-warmup", str(warmup),
            "-window", str(window), *(extra or [])]
    for url in urls:
        args += ["-url", url]
    pids = cpu_pids()
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    time.sleep(max(0.0, start + ramp + warmup - time.monotonic()))
    (u0, s0), m0, t0 = proc_cpu_times(pids), system_cpu_seconds(), time.monotonic()
    time.sleep(max(0.0, start + ramp + warmup + window - time.monotonic()))
    (u1, s1), m1, t1 = proc_cpu_times(pids), system_cpu_seconds(), time.monotonic()
    busy = (u1 - u0) + (s1 - s0)
    restarted = sorted(cpu_pids()) != sorted(pids) or busy < 0
    try:
        out, err = proc.communicate(timeout=ramp + warmup + window + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"loadclient failed ({proc.returncode}): {err.decode()[-500:]}")
    summary: dict[str, Any] = json.loads(out)
    client_cpu = float(summary.get("client_cpu_s", 0.0))
    if restarted:
        return LoadRun(summary, None, None, client_cpu, (m1 - m0) / (t1 - t0))
    return LoadRun(summary, busy / (t1 - t0), (s1 - s0) / busy if busy > 0 else None, client_cpu,
                   (m1 - m0) / (t1 - t0))


def run_ttfp(binary: Path, url: str, t0_ms: int, timeout: float, extra: list[str] | None = None) -> dict[str, Any]:
    proc = subprocess.run([str(binary), "-mode", "ttfp", "-url", url, "-t0ms", str(t0_ms), "-timeout",
                           str(timeout), *(extra or [])], capture_output=True, timeout=timeout + 15,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        return {"ok": False, "error": proc.stderr.decode()[-300:]}
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
