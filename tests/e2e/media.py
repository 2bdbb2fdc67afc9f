"""Publishers and players for the end-to-end tier: real clients against the lab's public endpoints.

* publishers: ffmpeg, a pre-encoded clip sent with ``-re -c copy`` (cheap: no encoding while the test runs);
* RTMP players: ffmpeg (an independent, real RTMP client), reading without decoding;
* HTTP-FLV and HLS players: small Python clients over TLS verified against the lab CA, connecting to the
  ingress address with the public host name as SNI and Host (like ``curl --resolve``). They parse what they
  receive (FLV tags, MPEG-TS packets), so a play succeeds only when real media arrived.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urljoin, urlsplit


@dataclass(frozen=True)
class Lab:
    """What the clients need from endpoints.json."""

    ingest_ip: str
    rtmp_ip: str
    ingress_ip: str
    hls_host: str
    flv_host: str
    ca_file: str
    publish_token: str
    play_token: str

    def publish_url(self, stream: str, token: str | None) -> str:
        query = f"?token={token}" if token is not None else ""
        return f"rtmp://{self.ingest_ip}:1935/{stream}{query}"

    def rtmp_url(self, stream: str) -> str:
        return f"rtmp://{self.rtmp_ip}:1935/{stream}?token={self.play_token}"

    def flv_path(self, stream: str) -> str:
        return f"/{stream}.flv?token={self.play_token}"

    def hls_path(self, stream: str) -> str:
        app, name = stream.split("/")
        return f"/{app}/{name}/{name}.m3u8?token={self.play_token}"


# ------------------------------------------------------------------------------------------------ publishers


def make_clip(path: Path, seconds: int = 12) -> Path:
    """A small H.264/AAC FLV clip with a 1 s GOP (made once; publishers loop it without re-encoding)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.flv")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-keyint_min", "25", "-b:v", "400k",
         "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(tmp)],
        check=True, stdin=subprocess.DEVNULL, timeout=120,
    )
    tmp.replace(path)
    return path


class Publisher:
    """ffmpeg looping the clip in real time to one RTMP URL until stopped."""

    def __init__(self, clip: Path, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self._out: IO[bytes] = log.open("ab")
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "warning", "-re", "-stream_loop", "-1", "-i", str(clip),
             "-c", "copy", "-f", "flv", url],
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, seconds: float) -> int | None:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


# --------------------------------------------------------------------------------------------------- results


@dataclass
class Play:
    """One play attempt and what arrived."""

    protocol: str
    stream: str
    ok: bool = False
    video_frames: int = 0
    keyframe_first: bool = False
    first_frame_s: float | None = None
    seconds: float = 0.0
    error: str = ""
    edge: str = ""  # pod that served it, when known (HLS: from the affinity cookie's target)


# ------------------------------------------------------------------------------------------------ RTMP (ffmpeg)

_FRAME = re.compile(r"^frame=(\d+)$")


def rtmp_play(url: str, stream: str, media_seconds: float = 3.0, timeout: float = 20.0) -> Play:
    """ffmpeg reads media_seconds of the stream (video stream-copied to the null muxer, nothing decoded)."""
    play = Play("rtmp", stream)
    started = time.monotonic()
    # A short probe (0.5 s) so that the time to first video measures the server, not ffmpeg's 5 s default.
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-rw_timeout", "8000000",
           "-analyzeduration", "500000", "-probesize", "200000", "-i", url,
           "-map", "0:v", "-c", "copy", "-t", str(media_seconds), "-f", "null", "-",
           "-progress", "pipe:1", "-stats_period", "0.25"]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True)
    except OSError as exc:
        play.error = str(exc)
        return play
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = _FRAME.match(line.strip())
            if m:
                frames = int(m.group(1))
                if frames > 0 and play.first_frame_s is None:
                    play.first_frame_s = time.monotonic() - started
                play.video_frames = max(play.video_frames, frames)
        rc = proc.wait()
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        timer.cancel()
    play.seconds = time.monotonic() - started
    # 25 fps clip: media_seconds of video must have arrived (allow one GOP of slack at the start).
    need = int(25 * (media_seconds - 1))
    play.ok = rc == 0 and play.video_frames >= need and play.seconds >= media_seconds - 1.5
    if not play.ok:
        play.error = f"rc={rc} frames={play.video_frames}/{need} {err.strip()[-300:]}"
    return play


# ----------------------------------------------------------------------------------------------- HTTPS client


def https_connection(lab: Lab, host: str, timeout: float) -> http.client.HTTPSConnection:
    """HTTPS to the ingress address, SNI and Host = the public name, verified against the lab CA."""
    ctx = ssl.create_default_context(cafile=lab.ca_file)
    conn = http.client.HTTPSConnection(host, 443, timeout=timeout, context=ctx)

    def connect() -> None:  # like curl --resolve host:443:<ingress ip>
        sock = socket.create_connection((lab.ingress_ip, 443), timeout)
        conn.sock = ctx.wrap_socket(sock, server_hostname=host)

    conn.connect = connect  # type: ignore[method-assign]
    return conn


# ------------------------------------------------------------------------------------------------- HTTP-FLV


@dataclass
class FlvTag:
    kind: int  # 8 audio, 9 video, 18 script
    timestamp_ms: int
    keyframe: bool


class FlvParser:
    """Incremental FLV parser: feed bytes, get tags."""

    def __init__(self) -> None:
        self.buf = b""
        self.header_done = False

    def feed(self, data: bytes) -> list[FlvTag]:
        self.buf += data
        tags: list[FlvTag] = []
        if not self.header_done:
            if len(self.buf) < 13:
                return tags
            if self.buf[:3] != b"FLV":
                raise ValueError(f"not FLV: {self.buf[:16]!r}")
            offset = struct.unpack(">I", self.buf[5:9])[0]
            if len(self.buf) < offset + 4:
                return tags
            self.buf = self.buf[offset + 4:]
            self.header_done = True
        while len(self.buf) >= 11:
            kind = self.buf[0] & 0x1F
            size = int.from_bytes(self.buf[1:4], "big")
            ts = int.from_bytes(self.buf[4:7], "big") | (self.buf[7] << 24)
            if len(self.buf) < 11 + size + 4:
                break
            body = self.buf[11:11 + size]
            key = kind == 9 and size > 0 and (body[0] >> 4) == 1
            tags.append(FlvTag(kind, ts, key))
            self.buf = self.buf[11 + size + 4:]
        return tags


def flv_play(lab: Lab, stream: str, media_seconds: float = 3.0, timeout: float = 20.0,
             hold: threading.Event | None = None) -> Play:
    """Read the FLV stream until media_seconds of video arrived (and, if given, until `hold` is set)."""
    play = Play("flv", stream)
    started = time.monotonic()
    deadline = started + timeout
    try:
        conn = https_connection(lab, lab.flv_host, timeout=8)
        conn.request("GET", lab.flv_path(stream))
        resp = conn.getresponse()
        if resp.status != 200:
            play.error = f"HTTP {resp.status}"
            return play
        parser = FlvParser()
        first_ts: int | None = None
        last_ts = 0
        while time.monotonic() < deadline:
            chunk = resp.read1(65536)
            if not chunk:
                play.error = "connection closed"
                break
            for tag in parser.feed(chunk):
                if tag.kind != 9:
                    continue
                if first_ts is None:
                    first_ts = tag.timestamp_ms
                    play.keyframe_first = tag.keyframe
                    play.first_frame_s = time.monotonic() - started
                play.video_frames += 1
                last_ts = tag.timestamp_ms
            got = (last_ts - first_ts) / 1000 if first_ts is not None else 0.0
            # Live: after the GOP-cache burst, media arrives in real time, so the wall clock must agree.
            live = time.monotonic() - started >= media_seconds - 1
            if got >= media_seconds and live and (hold is None or hold.is_set()):
                play.ok = play.keyframe_first
                if not play.ok:
                    play.error = "first video tag is not a keyframe"
                break
        else:
            play.error = f"timeout with {play.video_frames} video tags"
        conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
        play.error = f"{type(exc).__name__}: {exc}"
    play.seconds = time.monotonic() - started
    return play


# ------------------------------------------------------------------------------------------------------ HLS


def parse_playlist(text: str) -> tuple[int, list[tuple[float, str]]]:
    """(media sequence, [(duration, uri)]) of a live media playlist."""
    if not text.startswith("#EXTM3U"):
        raise ValueError("not an m3u8 playlist")
    sequence = 0
    segments: list[tuple[float, str]] = []
    duration: float | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            segments.append((duration, line))
            duration = None
    return sequence, segments


def ts_video_ok(data: bytes) -> bool:
    """An MPEG-TS segment: whole 188-byte packets, each starting with the 0x47 sync byte, and a PES start."""
    if len(data) < 188 * 10 or len(data) % 188:
        return False
    if any(data[i] != 0x47 for i in range(0, len(data), 188)):
        return False
    return b"\x00\x00\x01\xe0" in data  # a video PES header


def hls_play(lab: Lab, stream: str, segments: int = 2, timeout: float = 30.0) -> Play:
    """Fetch the playlist, then the newest `segments` segments, keeping the affinity cookie like a player."""
    play = Play("hls", stream)
    started = time.monotonic()
    cookie = ""
    try:
        conn = https_connection(lab, lab.hls_host, timeout=8)

        def get(path: str) -> bytes:
            nonlocal cookie
            headers = {"Cookie": cookie} if cookie else {}
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            set_cookie = resp.getheader("Set-Cookie")
            if set_cookie:
                cookie = set_cookie.split(";", 1)[0]
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status} for {urlsplit(path).path}")
            return body

        playlist_path = lab.hls_path(stream)
        _, entries = parse_playlist(get(playlist_path).decode())
        if len(entries) < segments:
            raise ValueError(f"playlist lists {len(entries)} segments")
        for duration, uri in entries[-segments:]:
            data = get(urljoin(playlist_path, uri))
            if not ts_video_ok(data):
                raise ValueError(f"segment {uri} is not MPEG-TS video ({len(data)} bytes)")
            play.video_frames += round(duration * 25)
        play.first_frame_s = time.monotonic() - started
        play.edge = cookie
        play.ok = time.monotonic() - started < timeout
        conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
        play.error = f"{type(exc).__name__}: {exc}"
    play.seconds = time.monotonic() - started
    return play


# ------------------------------------------------------------------------------------ long-running watchers


@dataclass
class Watch:
    """A viewer that keeps an FLV connection open, reconnects on loss, and records every gap."""

    stream: str
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds) without video, >1 s
    reconnects: int = 0
    # (time of the last video before the loss, seconds until video again) of every reconnection
    recoveries: list[tuple[float, float]] = field(default_factory=list)
    last_video: float = 0.0
    errors: list[str] = field(default_factory=list)
    # Video tags (FLV) or frame-counter advances (RTMP) seen. The watchers set last_video to their start time,
    # so only this tells "playing" from "started and never got a frame".
    videos: int = 0

    def playing(self, now: float, within: float = 1.0) -> bool:
        """Video arrived at least once, the last time within `within` seconds of `now`."""
        return self.videos > 0 and now - self.last_video < within

    def video(self, now: float, reconnected: bool, gap_threshold: float) -> None:
        """Video arrived at `now`: record the recovery after a reconnection and any gap above the threshold."""
        if reconnected:
            self.recoveries.append((self.last_video, now - self.last_video))
        if now - self.last_video > gap_threshold:
            self.gaps.append((self.last_video, now - self.last_video))
        self.last_video = now
        self.videos += 1

    def end(self, now: float, gap_threshold: float) -> None:
        """The watch stopped: a stall still running at the end counts as a gap."""
        if now - self.last_video > gap_threshold:
            self.gaps.append((self.last_video, now - self.last_video))


def watch_flv(lab: Lab, watch: Watch, stop: threading.Event, gap_threshold: float = 1.0) -> None:
    """Run until `stop`: read video; on any loss reconnect at once; record gaps longer than gap_threshold."""
    watch.last_video = time.monotonic()
    first = True
    while not stop.is_set():
        try:
            conn = https_connection(lab, lab.flv_host, timeout=5)
            conn.request("GET", lab.flv_path(watch.stream))
            resp = conn.getresponse()
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            reconnected = not first
            if reconnected:
                watch.reconnects += 1
            first = False
            parser = FlvParser()
            while not stop.is_set():
                chunk = resp.read1(65536)
                if not chunk:
                    raise ValueError("connection closed")
                if any(t.kind == 9 for t in parser.feed(chunk)):
                    watch.video(time.monotonic(), reconnected, gap_threshold)
                    reconnected = False
            conn.close()
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
            watch.errors.append(f"{time.monotonic():.1f} {type(exc).__name__}: {exc}")
            time.sleep(0.2)
    watch.end(time.monotonic(), gap_threshold)
