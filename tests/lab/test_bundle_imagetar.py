"""Image tarballs written without a daemon: structure, determinism, manifest.json."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from lab.bundle.imagetar import Blob, layer_items, write_image, write_layer
from lab.bundle.manifest import build_manifest, verify, write_manifest
from lab.bundle.spec import Entry, Image, Layer, StepFile

XATTR = bytes([1, 0, 0, 2, 0, 4, 0, 0]) + bytes(12)


def _layers(tmp: Path) -> tuple[Image, list[Blob]]:
    step_out = tmp / "steps" / "hello"
    step_out.mkdir(parents=True)
    (step_out / "hello").write_bytes(b"#!/bin/true\n")
    tree = tmp / "tree"
    (tree / "usr/sbin").mkdir(parents=True)
    (tree / "usr/sbin/xtables-nft-multi").write_bytes(b"ELF")
    (tree / "usr/sbin/iptables").symlink_to("xtables-nft-multi")
    layers = (
        Layer(tree="tree"),
        Layer(
            entries=(
                Entry("/usr/local/bin/hello", source=StepFile("hello", "hello"), xattrs=(("security.capability", XATTR),)),
                Entry("/etc/passwd", content=b"root:x:0:0::/:/sbin/nologin\n", mode=0o644),
                Entry("/tmp", mode=0o1777),
                Entry("/bin/sh", symlink="/usr/local/bin/hello"),
                Entry("/home/nonroot", mode=0o700, uid=65532, gid=65532),
            )
        ),
    )
    image = Image(component="hello", repository="registry.k8s.io/hello", tag="v1.0.0", layers=layers,
                  entrypoint=("/usr/local/bin/hello",), user="65532:65532")
    blobs = []
    for i, layer in enumerate(layers):
        items = layer_items(layer, lambda ref: tmp / "steps" / ref.step / ref.path, lambda name: tmp / name)
        blobs.append(write_layer(items, tmp / f"layer{i}.tar"))
    return image, blobs


def test_layer_tar_is_sorted_with_parents_owners_modes_and_xattrs(tmp_path: Path) -> None:
    _, blobs = _layers(tmp_path)
    assert blobs[1].digest == "sha256:" + hashlib.sha256(blobs[1].path.read_bytes()).hexdigest()
    assert blobs[1].size == blobs[1].path.stat().st_size
    with tarfile.open(blobs[1].path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = [m.name for m in tar.getmembers()]
    assert names == sorted(names)
    assert {"bin", "bin/sh", "etc", "etc/passwd", "home", "home/nonroot", "tmp", "usr", "usr/local",
            "usr/local/bin", "usr/local/bin/hello"} == set(names)
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["home/nonroot"].uid == 65532
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/usr/local/bin/hello"
    assert all(m.mtime == 0 for m in members.values())
    hello = members["usr/local/bin/hello"]
    assert hello.mode == 0o755 and hello.size == len(b"#!/bin/true\n")
    assert hello.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == XATTR
    with tarfile.open(blobs[0].path) as tar:
        tree = {m.name: m for m in tar.getmembers()}
    assert tree["usr/sbin/iptables"].issym() and tree["usr/sbin/iptables"].linkname == "xtables-nft-multi"


def test_image_tar_has_oci_layout_and_docker_manifest(tmp_path: Path) -> None:
    image, blobs = _layers(tmp_path)
    dest = tmp_path / image.filename
    digest = write_image(image, blobs, dest)
    assert image.filename == "hello_v1.0.0.tar"
    with tarfile.open(dest) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    (desc,) = index["manifests"]
    assert desc["digest"] == digest
    assert desc["annotations"]["io.containerd.image.name"] == "registry.k8s.io/hello:v1.0.0"
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "v1.0.0"
    manifest = json.loads(files["blobs/sha256/" + digest.split(":")[1]])
    assert [layer["digest"] for layer in manifest["layers"]] == [b.digest for b in blobs]
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["rootfs"]["diff_ids"] == [b.digest for b in blobs]
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/hello"]
    assert config["config"]["User"] == "65532:65532"
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    (docker,) = json.loads(files["manifest.json"])
    assert docker["RepoTags"] == ["registry.k8s.io/hello:v1.0.0"]
    assert docker["Config"] == "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]
    assert docker["Layers"] == [f"blobs/sha256/{b.hex}" for b in blobs]


def test_image_tar_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    image_a, blobs_a = _layers(a)
    image_b, blobs_b = _layers(b)
    write_image(image_a, blobs_a, a / "img.tar")
    write_image(image_b, blobs_b, b / "img.tar")
    assert (a / "img.tar").read_bytes() == (b / "img.tar").read_bytes()


def test_manifest_lists_every_file_and_verify_detects_changes(tmp_path: Path) -> None:
    (tmp_path / "bin/cni").mkdir(parents=True)
    (tmp_path / "bin/kubeadm").write_bytes(b"kubeadm")
    (tmp_path / "bin/cni/bridge").write_bytes(b"bridge")
    m = build_manifest(tmp_path, "k", {"kubernetes": "v1.35.4"}, {"image_repository": "registry.k8s.io"}, [], {"go": "go1"})
    write_manifest(tmp_path, m)
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["components"] == {"kubernetes": "v1.35.4"}
    assert saved["files"]["bin/kubeadm"]["sha256"] == hashlib.sha256(b"kubeadm").hexdigest()
    assert set(saved["files"]) == {"bin/kubeadm", "bin/cni/bridge"}
    assert verify(tmp_path) == []
    (tmp_path / "bin/kubeadm").write_bytes(b"tampered")
    (tmp_path / "extra").write_bytes(b"x")
    assert verify(tmp_path) == ["unexpected: extra", "sha256 mismatch: bin/kubeadm"]
