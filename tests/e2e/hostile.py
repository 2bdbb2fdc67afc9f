"""Issue 7, hostile requests (7f) and access (7g), through the public endpoints only.

Every load here is bounded in count and time: 28 malformed requests (x3), 10 slow-header clients and 5 slow
FLV readers for 20 s, 200 half-open RTMP connections held 25 s. Targets: the installation's LoadBalancer and
ingress IPs and the lab's node IPs, nothing else.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes.stream import stream as k8s_stream

from tests.e2e import media
from tests.e2e.faults import STREAMS, Section
from tests.e2e.target import AGENT_PORT, FLV_PORT, HLS_PORT
from tests.e2e.viewers import Viewers, outage

API_PORT = 8000

# ------------------------------------------------------------------------------------------ raw HTTPS


@dataclass(frozen=True)
class Probe:
    name: str
    host: str  # "hls" or "flv" (public names) or a literal Host header
    target: str  # request target, sent verbatim
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    version: str = "HTTP/1.1"
    # A legitimate play once normalised (or answered by the ingress itself): 200 is fine. Otherwise only a
    # refusal is (4xx, or 505 for the bad version); 200 or 5xx would mean the request reached xiu or broke it.
    may_play: bool = False


def status_of(head: bytes) -> str:
    """'404' from b'HTTP/1.1 404 Not Found...'; otherwise a short description of what came back."""
    if not head:
        return "closed"
    line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = line.split(" ")
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        return parts[1]
    return f"garbage {line[:30]!r}"


def raw_https(lab: media.Lab, sni: str, request: bytes, timeout: float = 10.0) -> str:
    """Send `request` verbatim over TLS to the ingress IP (SNI = `sni`); the status code or what happened."""
    ctx = ssl.create_default_context(cafile=lab.ca_file)
    try:
        with socket.create_connection((lab.ingress_ip, 443), timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(request)
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                head += chunk
            return status_of(head)
    except (OSError, ssl.SSLError) as exc:
        return type(exc).__name__


def acceptable(probe: Probe, answer: str) -> bool:
    """A refusal for malformed requests; for may_play ones anything but a 5xx gateway error."""
    if probe.may_play:
        return answer.isdigit() and not answer.startswith("50") or answer == "505"
    return answer.isdigit() and (answer.startswith("4") or answer == "505")


def build(probe: Probe, lab: media.Lab) -> tuple[str, bytes]:
    host = {"hls": lab.hls_host, "flv": lab.flv_host}.get(probe.host, probe.host)
    target = probe.target.replace("TOKEN", lab.play_token)
    lines = [f"{probe.method} {target} {probe.version}", f"Host: {host}", "Connection: close",
             *(f"{k}: {v}" for k, v in probe.headers)]
    sni = host if probe.host in ("hls", "flv") else lab.hls_host
    return sni, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def hostile_probes() -> list[Probe]:
    """Malformed and oversized HLS/FLV requests, including the shapes that crash xiu 0.13.0's HLS server."""
    long_name = "a" * 65
    return [
        Probe("xiu#166 crash shape: playlist one level up", "hls", "/live/x.m3u8"),
        Probe("xiu#166 shape with token", "hls", "/live/x.m3u8?token=TOKEN"),
        Probe("unanchored match /x.flv/a/b.flv", "flv", "/x.flv/a/b.flv"),
        Probe("hls shape on the flv host", "flv", "/live/cam1/cam1.m3u8?token=TOKEN"),
        Probe("flv shape on the hls host", "hls", "/live/cam1.flv?token=TOKEN"),
        Probe("dot-dot traversal", "hls", "/live/cam1/../../../etc/passwd"),
        Probe("encoded traversal", "hls", "/live/cam1/..%2f..%2f..%2fetc%2fpasswd.ts"),
        Probe("double slash (Traefik merges the slashes)", "hls", "//live/cam1/cam1.m3u8?token=TOKEN", may_play=True),
        Probe("empty segment (Traefik merges the slashes)", "flv", "/live//cam1.flv?token=TOKEN", may_play=True),
        Probe("trailing slash", "flv", "/live/cam1.flv/?token=TOKEN"),
        Probe("NUL byte encoded", "hls", "/live/cam1/cam1.m3u8%00?token=TOKEN"),
        Probe("invalid UTF-8", "hls", "/live/cam1/%ff%fe.ts"),
        Probe("stream name of 65 characters", "flv", f"/live/{long_name}.flv?token=TOKEN"),
        Probe("4 KB path", "flv", "/" + "a" * 4000 + ".flv"),
        Probe("16 KB query", "flv", "/live/cam1.flv?token=" + "x" * 16000),
        Probe("70 KB path", "hls", "/" + "b" * 70000 + "/c/c.m3u8"),
        Probe("64 KB header on a valid play", "flv", "/live/cam1.flv?token=TOKEN", headers=(("X-Pad", "p" * 65000),),
              may_play=True),
        Probe("segment number of 25 digits", "hls", "/live/cam1/" + "9" * 25 + ".ts"),
        Probe("segment of an unknown stream", "hls", "/live/nosuch/0.ts"),
        Probe("playlist of an unknown stream", "hls", "/live/nosuch/nosuch.m3u8?token=TOKEN"),
        # xiu answers 200 with no body and holds the connection until the client leaves.
        Probe("flv of an unknown stream", "flv", "/live/nosuch.flv?token=TOKEN", may_play=True),
        # xiu's HLS server ignores the method and serves the file as for GET (read-only; segments carry no token
        # in xiu 0.13.0): 200 is what it does, 404 when the segment has already rotated out.
        Probe("POST to a playlist", "hls", "/live/cam1/cam1.m3u8?token=TOKEN", method="POST",
              headers=(("Content-Length", "0"),), may_play=True),
        Probe("DELETE of a segment", "hls", "/live/cam1/0.ts", method="DELETE", may_play=True),
        Probe("OPTIONS * (answered by Traefik)", "hls", "*", method="OPTIONS", may_play=True),
        Probe("xiu API through the hls host", "hls", "/api/query_whole_streams"),
        Probe("xiu API through the flv host", "flv", "/api/kick_off_client", method="POST",
              headers=(("Content-Length", "0"),)),
        Probe("unknown Host", "other.lab.test", "/live/cam1.flv?token=TOKEN"),
        Probe("HTTP/9.9", "flv", "/live/cam1.flv?token=TOKEN", version="HTTP/9.9"),
    ]


# ------------------------------------------------------------------------------------------------ 7f


def guard(sec: Section) -> tuple[Viewers, dict[str, int], set[str], float]:
    viewers = Viewers(sec.t.lab, STREAMS, flv_per_stream=1, rtmp_per_stream=1)
    viewers.wait_playing(30)
    time.sleep(1)
    return viewers, sec.inst.restart_total(), {p.metadata.uid for p in sec.inst.all_xiu_pods()}, time.monotonic()


def verdict(sec: Section, viewers: Viewers, restarts: dict[str, int], uids: set[str],
            since: float) -> tuple[bool, str]:
    end = viewers.finish()
    after = sec.inst.restart_total()
    same = uids == {p.metadata.uid for p in sec.inst.all_xiu_pods()}
    flv, rtmp = outage(viewers.flv, since, end), outage(viewers.rtmp, since, end)
    added = sum(after.values()) - sum(restarts.get(k, 0) for k in after)
    ok = (added == 0 and same and flv.cut == 0 and rtmp.cut == 0
          and flv.playing_at_end == flv.viewers and rtmp.playing_at_end == rtmp.viewers)
    return ok, (f"xiu container restarts during the step: {added} (now {after}); same pods: {same}; "
                f"other viewers: {flv.text('FLV')}; {rtmp.text('RTMP')}")


def step_malformed(sec: Section) -> None:
    viewers, restarts, uids, since = guard(sec)
    lab = sec.t.lab
    probes = hostile_probes()
    answers: dict[str, list[str]] = {}
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(lambda p: raw_https(lab, *build(p, lab)), probes))
        for p, a in zip(probes, got):
            answers.setdefault(p.name, []).append(a)
    ok, tail = verdict(sec, viewers, restarts, uids, since)
    wrong = {p.name: answers[p.name] for p in probes if not all(acceptable(p, a) for a in answers[p.name])}
    summary = "; ".join(f"{k}: {'/'.join(sorted(set(v)))}" for k, v in answers.items())
    sec.report.add("7f malformed and oversized HLS/FLV requests (28 shapes x 3) through the ingress",
                   "every malformed one refused (4xx/505, never 200 or 502-504); xiu restart count stays 0; other "
                   "viewers never stall",
                   f"answers: {summary}; unexpected: {wrong or 'none'}; {tail}",
                   time.monotonic() - since, ok and not wrong, answers=answers)


def slow_header(lab: media.Lab, seconds: float) -> str:
    """TLS to the ingress, then a request header one byte per second. What ended it."""
    ctx = ssl.create_default_context(cafile=lab.ca_file)
    started = time.monotonic()
    req = f"GET {lab.flv_path(STREAMS[0])} HTTP/1.1\r\nHost: {lab.flv_host}\r\nX-Slow: ".encode()
    try:
        with socket.create_connection((lab.ingress_ip, 443), 5) as raw, \
                ctx.wrap_socket(raw, server_hostname=lab.flv_host) as tls:
            tls.sendall(req)
            while time.monotonic() - started < seconds:
                tls.sendall(b"a")
                time.sleep(1)
            return "held"
    except (OSError, ssl.SSLError) as exc:
        return f"closed by the server after {time.monotonic() - started:.0f}s ({type(exc).__name__})"


def slow_reader(lab: media.Lab, seconds: float) -> str:
    """An FLV viewer that reads one chunk and then nothing for `seconds` (its window fills up)."""
    try:
        conn = media.https_connection(lab, lab.flv_host, timeout=8)
        conn.request("GET", lab.flv_path(STREAMS[0]))
        resp = conn.getresponse()
        first = resp.read1(1024)
        time.sleep(seconds)
        conn.close()
        return f"HTTP {resp.status}, read {len(first)} bytes then stalled {seconds:.0f}s"
    except (OSError, ssl.SSLError) as exc:
        return type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - http.client errors
        return type(exc).__name__


def step_slow_clients(sec: Section, seconds: float = 20) -> None:
    viewers, restarts, uids, since = guard(sec)
    lab = sec.t.lab
    with ThreadPoolExecutor(max_workers=15) as pool:
        headers = [pool.submit(slow_header, lab, seconds) for _ in range(10)]
        readers = [pool.submit(slow_reader, lab, seconds) for _ in range(5)]
        plays = [pool.submit(media.flv_play, lab, s, 3.0, 20.0) for s in STREAMS]
        h, r, p = [f.result() for f in headers], [f.result() for f in readers], [f.result() for f in plays]
    ok, tail = verdict(sec, viewers, restarts, uids, since)
    new_ok = sum(x.ok for x in p)
    sec.report.add(f"7f slow clients: 10 one-byte-per-second headers + 5 stalled FLV readers for {seconds:.0f}s",
                   "bounded; new FLV plays meanwhile succeed; xiu restart count stays 0; other viewers never stall",
                   f"slow headers: {sorted(set(h))}; stalled readers: {sorted(set(r))}; new FLV plays meanwhile: "
                   f"{new_ok}/{len(p)}; {tail}", time.monotonic() - since, ok and new_ok == len(p))


def half_open(ip: str, count: int, opened: list[socket.socket]) -> int:
    """Open `count` RTMP connections that send C0 and half of C1, then nothing. Returns how many connected."""
    n = 0
    for _ in range(count):
        try:
            s = socket.create_connection((ip, 1935), timeout=3)
            s.sendall(b"\x03" + b"\x00" * 768)
            opened.append(s)
            n += 1
        except OSError:
            pass
    return n


def closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def step_half_open(sec: Section, per_ip: int = 100, hold: float = 25) -> None:
    viewers, restarts, uids, since = guard(sec)
    lab = sec.t.lab
    opened: list[socket.socket] = []
    connected = {ip: half_open(ip, per_ip, opened) for ip in (lab.rtmp_ip, lab.ingest_ip)}
    time.sleep(3)
    with ThreadPoolExecutor(max_workers=6) as pool:
        plays = list(pool.map(lambda s: media.rtmp_play(lab.rtmp_url(s), s, media_seconds=3), STREAMS * 2))
    try:
        origin_has = set(sec.inst.streams_on(sec.inst.origin_pod()))
    except Exception:  # noqa: BLE001
        origin_has = set()
    time.sleep(max(0.0, hold - (time.monotonic() - since)))
    dropped = sum(closed_by_peer(s) for s in opened)
    for s in opened:
        s.close()
    time.sleep(3)
    ok, tail = verdict(sec, viewers, restarts, uids, since)
    new_ok = sum(p.ok for p in plays)
    sec.report.add(f"7f {2 * per_ip} half-open RTMP connections (C0 + half a C1) held {hold:.0f}s",
                   "bounded; new RTMP plays meanwhile succeed; publishing continues; xiu restart count stays 0; other "
                   "viewers never stall",
                   f"connected {connected}; closed by the server within the hold: {dropped}/{len(opened)}; new RTMP "
                   f"plays meanwhile: {new_ok}/{len(plays)}; origin still holds all 3 streams: "
                   f"{set(STREAMS) <= origin_has}; {tail}",
                   time.monotonic() - since, ok and new_ok == len(plays) and set(STREAMS) <= origin_has)


# ------------------------------------------------------------------------------------------------ 7g


def tcp_state(ip: str, port: int, timeout: float = 2.0) -> str:
    try:
        with socket.create_connection((ip, port), timeout):
            return "OPEN"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__


def listener(node: str, port: int) -> str:
    """Which process listens on a node container's port (lab nodes are Docker containers)."""
    try:
        out = subprocess.run(["docker", "exec", node, "ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r'users:\(\("([^"]+)"', out)
    return m.group(1) if m else "?"


def step_publish_refused(sec: Section) -> None:
    lab, t = sec.t.lab, sec.t
    started = time.monotonic()
    cases = {
        "ingest, no token": lab.publish_url("live/intruder-a", None),
        "ingest, wrong token": lab.publish_url("live/intruder-b", "x" * 32),
        "ingest, the play token": lab.publish_url("live/intruder-c", lab.play_token),
        "viewer IP, the publish token": f"rtmp://{lab.rtmp_ip}:1935/live/intruder-d?token={lab.publish_token}",
    }
    pubs = {k: media.Publisher(t.clip, url, t.logs / f"7g-{k.replace(' ', '_').replace(',', '')}.log")
            for k, url in cases.items()}
    exits = {k: p.wait_exit(20) for k, p in pubs.items()}
    for p in pubs.values():
        p.stop()
    present: set[str] = set()
    for pod in [sec.inst.origin_pod(), *(p.metadata.name for p in sec.inst.ready_edges())]:
        present |= {s for s in sec.inst.streams_on(pod) if "intruder" in s}
    sec.report.add("7g publish without / with a wrong token / to the viewer IP",
                   "every attempt refused: the publisher ends, no intruder stream on the origin or any edge",
                   f"publisher exit codes {exits}; intruder streams: {sorted(present) or 'none'}",
                   time.monotonic() - started, all(rc not in (None, 0) for rc in exits.values()) and not present)


def step_origin_play_refused(sec: Section) -> None:
    lab = sec.t.lab
    started = time.monotonic()
    s = STREAMS[0]
    urls = {
        "no token": f"rtmp://{lab.ingest_ip}:1935/{s}",
        "the play token": f"rtmp://{lab.ingest_ip}:1935/{s}?token={lab.play_token}",
        "the publish token": f"rtmp://{lab.ingest_ip}:1935/{s}?token={lab.publish_token}",
        "a wrong token": f"rtmp://{lab.ingest_ip}:1935/{s}?token={'y' * 32}",
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        plays = dict(zip(urls, pool.map(lambda u: media.rtmp_play(u, s, media_seconds=3, timeout=15), urls.values())))
    control = media.rtmp_play(lab.rtmp_url(s), s, media_seconds=3)
    got = {k: f"{p.video_frames} frames" for k, p in plays.items()}
    sec.report.add("7g RTMP play from the ingest IP without the relay token",
                   "no video with no / the play / the publish / a wrong token (only the edges' relay token plays); "
                   "the same play from the viewer IP works",
                   f"{got}; control play from the viewer IP: {'ok' if control.ok else control.error}",
                   time.monotonic() - started, all(p.video_frames == 0 for p in plays.values()) and control.ok)


def step_ports(sec: Section) -> None:
    lab, started = sec.t.lab, time.monotonic()
    ips = {"ingest LB": lab.ingest_ip, "viewer LB": lab.rtmp_ip, "ingress": lab.ingress_ip,
           **{f"node {ip}": ip for ip in sec.t.node_ips}}
    closed_ports = {"xiu API": API_PORT, "agent": AGENT_PORT, "HLS": HLS_PORT, "HTTP-FLV": FLV_PORT}
    jobs = [(n, ip, pn, port) for n, ip in ips.items() for pn, port in closed_ports.items()]
    with ThreadPoolExecutor(max_workers=16) as pool:
        states = list(pool.map(lambda j: tcp_state(j[1], j[3]), jobs))
    names = {n["ip"]: n["name"] for n in sec.t.endpoints.get("nodes", [])}
    table = {f"{n} {ip}:{port} ({pn})": st if st != "OPEN" or ip not in names else f"OPEN by {listener(names[ip], port)}"
             for (n, ip, pn, port), st in zip(jobs, states)}
    foreign = {k for k, v in table.items() if v.startswith("OPEN by ") and v[8:] != "?" and "xiu" not in v}
    opened = sorted(k for k, v in table.items() if v.startswith("OPEN") and k not in foreign)
    others = sorted(f"{k}: {table[k]}" for k in foreign)
    public = {f"{ip}:{port}": tcp_state(ip, port) for ip, port in
              ((lab.ingest_ip, 1935), (lab.rtmp_ip, 1935), (lab.ingress_ip, 80), (lab.ingress_ip, 443))}
    by_state: dict[str, int] = {}
    for st in states:
        by_state[st] = by_state.get(st, 0) + 1
    sec.report.add(f"7g xiu API 8000, agent 9000, HLS 8080, HTTP-FLV 8081 on every LB, ingress and node IP "
                   f"({len(jobs)} probes)",
                   "none open; only RTMP 1935 (ingest, viewer IP) and 80/443 (ingress) answer",
                   f"results {by_state}; xiu reachable: {opened or 'none'}; open but not xiu: {others or 'none'}; "
                   f"public ports: {public}",
                   time.monotonic() - started, not opened and all(v == "OPEN" for v in public.values()),
                   table=table)


def exec_in(sec: Section, pod: str, container: str, code: str) -> str:
    out: Any = k8s_stream(sec.inst.core.connect_get_namespaced_pod_exec, pod, sec.inst.ns, container=container,
                          command=["python3", "-c", code], stderr=True, stdin=False, stdout=True, tty=False,
                          _request_timeout=20)
    return str(out).strip()


def step_network_policy(sec: Section) -> None:
    started = time.monotonic()
    inst = sec.inst
    net = inst.api
    from kubernetes import client  # local: only this step needs the networking API

    policies: list[Any] = client.NetworkingV1Api(net).list_namespaced_network_policy(inst.ns).items
    pods = [p for p in inst.all_xiu_pods() if p.metadata.deletion_timestamp is None]
    selected: dict[str, list[str]] = {}
    for pol in policies:
        sel = pol.spec.pod_selector.match_labels or {}
        selected[pol.metadata.name] = sorted(
            p.metadata.labels.get("app.kubernetes.io/component", "?") for p in pods
            if all(p.metadata.labels.get(k) == v for k, v in sel.items()))
    origin = next(p for p in pods if p.metadata.labels.get("app.kubernetes.io/component") == "origin")
    n_edges = sum(1 for p in pods if p.metadata.labels.get("app.kubernetes.io/component") == "edge")
    want = {
        inst.name("default-deny"): sorted(["origin"] + ["edge"] * n_edges),
        inst.name("egress"): sorted(["origin"] + ["edge"] * n_edges),
        inst.name("edge-ingress"): ["edge"] * n_edges,
        inst.name("edge-egress"): ["edge"] * n_edges,
        inst.name("origin-ingress"): ["origin"],
    }
    cni = [d.metadata.name for d in inst.apps.list_daemon_set_for_all_namespaces().items]
    flannel = any("flannel" in n for n in cni)
    code = ("import urllib.request as u\ntry:\n print(u.urlopen('http://%s:%d/', timeout=3).status)\n"
            "except Exception as e:\n print(type(e).__name__)")
    probe = "not run"
    if n_edges:
        edge = next(p for p in pods if p.metadata.labels.get("app.kubernetes.io/component") == "edge")
        probe = exec_in(sec, origin.metadata.name, "agent", code % (edge.status.pod_ip, API_PORT))
    enforced = probe != "200"
    sec.report.add("7g NetworkPolicies exist and select the right pods; enforcement",
                   "5 policies selecting origin/edges as designed; enforcement depends on the CNI (flannel: none)",
                   f"policies -> selected pods: {selected}; CNI daemonsets: {cni}; origin pod -> an edge's xiu API "
                   f"(:8000, denied by policy): {probe} => NetworkPolicy "
                   f"{'ENFORCED' if enforced else 'NOT enforced'} on this cluster"
                   + (" (flannel does not implement NetworkPolicy)" if flannel and not enforced else ""),
                   time.monotonic() - started, selected == want and (enforced or flannel), selected=selected)
