"""A throw-away CA and the serving certificate of the lab's Pebble (openssl CLI, EC P-256)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PebbleTLS:
    ca_cert: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def pebble_tls(directory: Path, names: list[str]) -> PebbleTLS:
    """CA + server certificate for ``names`` in ``directory`` (kept across runs; made once)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    tls = PebbleTLS(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    ca_key = directory / "ca.key"
    if tls.ca_cert.is_file() and tls.cert.is_file() and tls.key.is_file():
        return tls
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", "3650", "-subj",
        "/CN=streamops lab Pebble TLS CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(tls.ca_cert),
    )
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(tls.key))
    csr = directory / "tls.csr"
    _openssl("req", "-new", "-key", str(tls.key), "-subj", f"/CN={names[0]}", "-out", str(csr))
    ext = directory / "tls.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n",
        encoding="utf-8",
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(tls.ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "825", "-sha256", "-extfile", str(ext), "-out", str(tls.cert),
    )
    for p in (ca_key, tls.key):
        p.chmod(0o600)
    csr.unlink(missing_ok=True)
    return tls
