"""Write container images as tarballs without any daemon.

Each image tar holds an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``) and, over
the same blobs, a docker-archive ``manifest.json`` with RepoTags: the dual layout ``docker save`` writes
since Docker 25. ``ctr -n k8s.io images import`` names the image from the index annotation
``io.containerd.image.name``; ``docker load`` uses manifest.json. Layers are uncompressed tars, so a
layer's digest is also its diff_id. Everything is deterministic: sorted entries, fixed mtimes, uid/gid
from the spec, so the same inputs give byte-identical tars (and identical digests).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Callable, Iterable

from lab.bundle.spec import Image, Layer, StepFile

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = 0  # mtime of every tar entry
CREATED = "1970-01-01T00:00:00Z"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Item:
    """One resolved layer entry (path relative to the image root, no leading slash)."""

    path: str
    kind: str  # "file", "dir" or "symlink"
    mode: int = 0o755
    src: Path | None = None
    data: bytes | None = None
    target: str = ""
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    path: Path

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


def _norm(path: str) -> str:
    p = str(PurePosixPath("/") / path.lstrip("/"))
    return p.lstrip("/")


def tree_items(root: Path) -> list[Item]:
    """Items for every file, directory and symlink under root (owner root, modes kept)."""
    items: list[Item] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                items.append(Item(rel, "symlink", 0o777, target=os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                items.append(Item(rel, "dir", mode))
            elif stat.S_ISREG(st.st_mode):
                items.append(Item(rel, "file", mode, src=full))
    return items


def layer_items(layer: Layer, resolve: Callable[[StepFile], Path], tree_dir: Callable[[str], Path]) -> list[Item]:
    """Resolve a Layer spec against step outputs."""
    items = tree_items(tree_dir(layer.tree)) if layer.tree else []
    for e in layer.entries:
        path = _norm(e.path)
        if e.symlink:
            items.append(Item(path, "symlink", 0o777, target=e.symlink, uid=e.uid, gid=e.gid))
        elif e.source is not None:
            items.append(Item(path, "file", e.mode, src=resolve(e.source), uid=e.uid, gid=e.gid, xattrs=e.xattrs))
        elif e.content is not None:
            items.append(Item(path, "file", e.mode, data=e.content, uid=e.uid, gid=e.gid, xattrs=e.xattrs))
        else:
            items.append(Item(path, "dir", e.mode, uid=e.uid, gid=e.gid, xattrs=e.xattrs))
    return items


def _with_parents(items: Iterable[Item]) -> list[Item]:
    """Sorted items, later duplicates winning, plus any missing parent directories (0755)."""
    by_path: dict[str, Item] = {}
    for item in items:
        by_path[item.path] = item
    for path in list(by_path):
        parent = PurePosixPath(path).parent
        while str(parent) not in (".", "/", ""):
            by_path.setdefault(str(parent), Item(str(parent), "dir", 0o755))
            parent = parent.parent
    return [by_path[p] for p in sorted(by_path)]


def _tarinfo(item: Item) -> tarfile.TarInfo:
    info = tarfile.TarInfo(item.path + ("/" if item.kind == "dir" else ""))
    info.mtime = EPOCH
    info.mode = item.mode
    info.uid, info.gid = item.uid, item.gid
    info.uname = info.gname = ""
    if item.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif item.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = item.target
    else:
        info.type = tarfile.REGTYPE
        info.size = len(item.data) if item.data is not None else (item.src.stat().st_size if item.src else 0)
    if item.xattrs:
        # Go's archive/tar (containerd, docker) reads SCHILY.xattr.* records as raw bytes.
        info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in item.xattrs}
    return info


class _HashingWriter(io.RawIOBase):
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._out.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)


def write_layer(items: Iterable[Item], dest: Path) -> Blob:
    """Write an uncompressed, deterministic layer tar to dest."""
    with open(dest, "wb") as raw:
        hw = _HashingWriter(raw)
        with tarfile.open(fileobj=hw, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
            for item in _with_parents(items):
                info = _tarinfo(item)
                if item.kind != "file":
                    tar.addfile(info)
                elif item.data is not None:
                    tar.addfile(info, io.BytesIO(item.data))
                else:
                    assert item.src is not None
                    with open(item.src, "rb") as f:
                        tar.addfile(info, f)
    return Blob(f"sha256:{hw.sha.hexdigest()}", hw.size, dest)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": f"sha256:{hashlib.sha256(data).hexdigest()}", "size": len(data)}


def image_config(image: Image, layers: list[Blob]) -> dict[str, Any]:
    config: dict[str, Any] = {"Env": list(image.env), "WorkingDir": image.workdir}
    if image.entrypoint:
        config["Entrypoint"] = list(image.entrypoint)
    if image.cmd:
        config["Cmd"] = list(image.cmd)
    if image.user:
        config["User"] = image.user
    if image.labels:
        config["Labels"] = dict(image.labels)
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]},
        "history": [{"created": CREATED, "created_by": "lab/bundle"} for _ in layers],
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, EPOCH, 0o755
    tar.addfile(info)


def write_image(image: Image, layers: list[Blob], dest: Path) -> str:
    """Write the image tar at dest from already written layer blobs; return the manifest digest."""
    config = _json_bytes(image_config(image, layers))
    manifest = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": _descriptor(MEDIA_CONFIG, config),
            "layers": [{"mediaType": MEDIA_LAYER, "digest": b.digest, "size": b.size} for b in layers],
        }
    )
    manifest_desc = _descriptor(MEDIA_MANIFEST, manifest)
    manifest_desc["annotations"] = {ANNOTATION_CONTAINERD_NAME: image.ref, ANNOTATION_REF_NAME: image.tag}
    index = _json_bytes({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_desc]})
    config_hex = hashlib.sha256(config).hexdigest()
    docker_manifest = _json_bytes(
        [
            {
                "Config": f"blobs/sha256/{config_hex}",
                "RepoTags": [image.ref],
                "Layers": [f"blobs/sha256/{b.hex}" for b in layers],
            }
        ]
    )
    tmp = dest.with_name(dest.name + ".part")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}))
        _add_dir(tar, "blobs/")
        _add_dir(tar, "blobs/sha256/")
        seen: set[str] = set()
        for blob in layers:
            if blob.hex in seen:
                continue
            seen.add(blob.hex)
            info = tarfile.TarInfo(f"blobs/sha256/{blob.hex}")
            info.size, info.mtime, info.mode = blob.size, EPOCH, 0o644
            with open(blob.path, "rb") as f:
                tar.addfile(info, f)
        _add_bytes(tar, f"blobs/sha256/{config_hex}", config)
        _add_bytes(tar, f"blobs/sha256/{manifest_desc['digest'].split(':', 1)[1]}", manifest)
        _add_bytes(tar, "index.json", index)
        _add_bytes(tar, "manifest.json", docker_manifest)
    tmp.replace(dest)
    return str(manifest_desc["digest"])
