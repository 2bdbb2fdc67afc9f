"""The component table: names kubeadm expects, consistent references."""

from __future__ import annotations

from lab.bundle.build import kubeadm_expectations
from lab.bundle.components import CAP_NET_BIND_SERVICE_XATTR, coredns_repository, plan
from lab.bundle.pins import Pins


def test_images_are_named_as_kubeadm_references_them() -> None:
    pins = Pins.load()
    refs = {i.ref for i in plan(pins).images}
    kube = pins["kubernetes"]
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        assert f"registry.k8s.io/{name}:{kube}" in refs
    assert f"registry.k8s.io/etcd:{pins['etcd']}" in refs
    assert f"registry.k8s.io/pause:{pins['pause']}" in refs
    assert f"registry.k8s.io/coredns/coredns:{pins['coredns']}" in refs
    assert f"ghcr.io/flannel-io/flannel:{pins['flannel']}" in refs


def test_custom_repository_follows_kubeadm_coredns_rule() -> None:
    assert coredns_repository("registry.k8s.io") == "registry.k8s.io/coredns/coredns"
    assert coredns_repository("lab.local/k8s") == "lab.local/k8s/coredns"
    refs = {i.ref for i in plan(Pins.load(), "lab.local/k8s").images}
    assert any(r.startswith("lab.local/k8s/coredns:") for r in refs)
    assert any(r.startswith("lab.local/k8s/kube-apiserver:") for r in refs)


def test_every_reference_points_at_a_step_and_files_are_unique() -> None:
    p = plan(Pins.load())
    steps = {s.name for s in p.steps}
    assert len(steps) == len(p.steps)
    for b in p.bins:
        assert b.source.step in steps
    for image in p.images:
        for layer in image.layers:
            assert not layer.tree or layer.tree in steps
            for e in layer.entries:
                assert e.source is None or e.source.step in steps
    files = [i.filename for i in p.images]
    assert len(files) == len(set(files))
    dests = [b.dest for b in p.bins]
    assert len(dests) == len(set(dests))
    assert {"kubeadm", "kubelet", "kubectl", "helm", "cni/bridge", "cni/host-local", "cni/loopback",
            "cni/portmap", "cni/flannel"} <= set(dests)


def test_cap_net_bind_service_xattr_layout() -> None:
    # struct vfs_cap_data revision 2: magic_etc, then (permitted, inheritable) x 2, little endian.
    assert len(CAP_NET_BIND_SERVICE_XATTR) == 20
    assert int.from_bytes(CAP_NET_BIND_SERVICE_XATTR[:4], "little") == 0x02000001
    assert int.from_bytes(CAP_NET_BIND_SERVICE_XATTR[4:8], "little") == 1 << 10


def test_kubeadm_expectations_parse() -> None:
    text = '''
	DefaultEtcdVersion = "3.6.6-0"
	CoreDNSVersion = "v1.13.1"
	PauseVersion = "3.10.1"
'''
    assert kubeadm_expectations(text) == {"etcd": "3.6.6-0", "coredns": "v1.13.1", "pause": "3.10.1"}


def test_pins_match_kubeadm_defaults_when_module_is_cached() -> None:
    import os
    from pathlib import Path

    import pytest

    root = Path(os.environ.get("STREAMOPS_CACHE") or Path.home() / ".cache" / "streamops-xiu")
    pins = Pins.load()
    f = root / "go/mod/k8s.io" / f"kubernetes@{pins['kubernetes']}" / "cmd/kubeadm/app/constants/constants.go"
    if not f.exists():
        pytest.skip("kubernetes module not in the cache yet (run make bundle)")
    want = kubeadm_expectations(f.read_text())
    assert want == {"etcd": pins["etcd"], "coredns": pins["coredns"], "pause": pins["pause"]}
