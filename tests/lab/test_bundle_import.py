"""Import a written image into a real containerd (and docker, when a daemon runs); skipped without them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from lab.bundle.imagetar import layer_items, write_image, write_layer
from lab.bundle.spec import Entry, Image, Layer

REF = "registry.k8s.io/streamops-import-test:v0.0.1"


def _image_tar(tmp: Path) -> Path:
    layer = Layer(entries=(Entry("/etc/hello", content=b"hello\n", mode=0o644), Entry("/tmp", mode=0o1777)))
    image = Image(component="t", repository=REF.rsplit(":", 1)[0], tag="v0.0.1", layers=(layer,), cmd=("/x",))
    blob = write_layer(layer_items(layer, lambda ref: tmp, lambda name: tmp), tmp / "layer.tar")
    dest = tmp / image.filename
    write_image(image, [blob], dest)
    return dest


@pytest.fixture
def containerd() -> Iterator[list[str]]:
    if os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("ctr"):
        pytest.skip("needs root, containerd and ctr")
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    sock = base / "c.sock"
    (base / "config.toml").write_text(
        f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
        f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\naddress = "{sock}"\n'
        f'[ttrpc]\naddress = "{sock}.ttrpc"\n[debug]\naddress = ""\n[metrics]\naddress = ""\n'
    )
    log = open(base / "containerd.log", "w")
    proc = subprocess.Popen(["containerd", "--config", str(base / "config.toml")], stdout=log, stderr=log)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        else:
            pytest.skip("containerd did not start: " + (base / "containerd.log").read_text()[-500:])
        yield ["ctr", "--address", str(sock), "-n", "k8s.io"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        subprocess.run(["umount", "-R", str(base / "root")], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_ctr_imports_image_under_its_reference(tmp_path: Path, containerd: list[str]) -> None:
    tar = _image_tar(tmp_path)
    out = subprocess.run([*containerd, "images", "import", str(tar)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    listed = subprocess.run([*containerd, "images", "ls", "-q"], capture_output=True, text=True, check=True).stdout
    assert REF in listed.split()


def test_docker_loads_image_under_its_reference(tmp_path: Path) -> None:
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no running docker daemon")
    tar = _image_tar(tmp_path)
    out = subprocess.run(["docker", "load", "-i", str(tar)], capture_output=True, text=True)
    try:
        assert out.returncode == 0, out.stderr
        assert REF in out.stdout
    finally:
        subprocess.run(["docker", "rmi", REF], capture_output=True)


def test_built_bundle_imports_and_unpacks(containerd: list[str]) -> None:
    """Opt-in (STREAMOPS_BUNDLE_DIR=<bundle>): every image of a real bundle imports under its reference."""
    import json

    root = os.environ.get("STREAMOPS_BUNDLE_DIR")
    if not root:
        pytest.skip("set STREAMOPS_BUNDLE_DIR to a built bundle to run")
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    for image in manifest["images"]:
        out = subprocess.run([*containerd, "images", "import", str(Path(root) / image["file"])],
                             capture_output=True, text=True)
        assert out.returncode == 0, f"{image['file']}: {out.stderr}"
    listed = subprocess.run([*containerd, "images", "ls", "-q"], capture_output=True, text=True, check=True).stdout
    assert {i["ref"] for i in manifest["images"]} <= set(listed.split())
    coredns = next((i["ref"] for i in manifest["images"] if i["component"] == "coredns"), None)
    if coredns and shutil.which("getcap"):
        target = Path(tempfile.mkdtemp(prefix="mnt-", dir="/tmp"))
        try:
            subprocess.run([*containerd, "images", "mount", coredns, str(target)], check=True, capture_output=True)
            caps = subprocess.run(["getcap", str(target / "coredns")], capture_output=True, text=True).stdout
            assert "cap_net_bind_service" in caps
        finally:
            subprocess.run([*containerd, "images", "unmount", str(target)], capture_output=True)
            shutil.rmtree(target, ignore_errors=True)
