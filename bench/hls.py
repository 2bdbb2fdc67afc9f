"""Time to first playable for HLS: the playlist lists a segment and that segment downloads."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed IP with the right SNI and Host (no DNS for the lab's names)."""

    def __init__(self, host: str, ip: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, 443, context=context, timeout=timeout)
        self._ip = ip
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, 443), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def fetch(url: str, ip: str | None, ca: str | None, timeout: float = 3) -> tuple[int, bytes]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()  # noqa: S323
        conn = _PinnedHTTPS(parts.hostname or "", ip or parts.hostname or "", ctx, timeout)
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def first_segment(playlist: str) -> str | None:
    lines = [line.strip() for line in playlist.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("#EXTINF"):
            for nxt in lines[i + 1:]:
                if nxt and not nxt.startswith("#"):
                    return nxt
    return None


def ttfp(url: str, t0: float, timeout: float, ip: str | None = None, ca: str | None = None) -> dict[str, object]:
    """Poll every 200 ms until a segment of the playlist downloads; seconds since t0 (time.time())."""
    attempts, last = 0, ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attempts += 1
        try:
            status, body = fetch(url, ip, ca)
            if status == 200:
                seg = first_segment(body.decode(errors="replace"))
                if seg:
                    seg_status, data = fetch(urljoin(url, seg), ip, ca, timeout=5)
                    if seg_status == 200 and data:
                        return {"ok": True, "ttfp_s": time.time() - t0, "attempts": attempts}
                    last = f"segment HTTP {seg_status}"
                else:
                    last = "playlist without segments"
            else:
                last = f"HTTP {status}"
        except (OSError, http.client.HTTPException) as error:
            last = str(error)[:120]
        time.sleep(0.2)
    return {"ok": False, "attempts": attempts, "error": last}
