"""The component table: what the bundle builds, from which module, and where each file goes.

To add a component: pin its version in roles/versions/defaults/main.yml, add a step (GoBuild, CBuild or
DebTree) to ``_steps``, then the bin/ files (``_bins``) and/or the image (``_images``) that use its output.
"""

from __future__ import annotations

from lab.bundle.pins import Pins, SemVer, go_version, staging_version
from lab.bundle.spec import (
    BinFile,
    CargoInstall,
    CBuild,
    DebTree,
    Entry,
    GoBuild,
    Image,
    Layer,
    Plan,
    PatchedMain,
    Step,
    StepFile,
)

DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"
# Images of the workloads the collection deploys, built here because no registry is reachable. They are not
# the upstream images, so they get a name of their own; inventories/lab points xiu_image/xiu_agent_image at it.
LAB_IMAGE_REPOSITORY = "lab.streamops.local"
XIU_RUNTIME_TREE = "debian-xiu-runtime"
PYTHON_TREE = "debian-python"
# The same speed-over-size profile as `make xiu` (upstream's release profile is fat LTO, one codegen unit:
# far too slow on 2 cores); shared target dir, so a warm `make xiu` makes this step a copy.
XIU_CARGO_ENV = (("CARGO_PROFILE_RELEASE_LTO", "false"), ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"))

KUBE_CMDS = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)
KUBE_NODE_BINS = ("kubeadm", "kubelet", "kubectl")
KUBE_CONTROL_PLANE_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
CNI_PLUGINS = (("main", "bridge"), ("main", "loopback"), ("ipam", "host-local"), ("meta", "portmap"))

# Like distroless/static: users for non-root images, a resolver order, a sticky /tmp.
_PASSWD = (
    b"root:x:0:0:root:/root:/sbin/nologin\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
_GROUP = b"root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
BASE_LAYER = Layer(
    entries=(
        Entry("/etc/passwd", content=_PASSWD, mode=0o644),
        Entry("/etc/group", content=_GROUP, mode=0o644),
        Entry("/etc/nsswitch.conf", content=b"hosts: files dns\n", mode=0o644),
        Entry("/tmp", mode=0o1777),
        Entry("/home/nonroot", mode=0o700, uid=65532, gid=65532),
    )
)

# security.capability xattr (struct vfs_cap_data, revision 2) granting CAP_NET_BIND_SERVICE (bit 10) as
# permitted+effective: what ``setcap cap_net_bind_service=+ep`` writes. CoreDNS runs as non-root on :53.
CAP_NET_BIND_SERVICE_XATTR = (
    (0x02000001).to_bytes(4, "little") + (1 << 10).to_bytes(4, "little") + bytes(12)
)

IPTABLES_TREE = "debian-iptables"
BUSYBOX_TREE = "debian-busybox"  # a static busybox: `cp` for the flannel chart's install-cni-plugin container
# iptables in nft mode, as Debian 12 sets its alternatives (the node OS uses the same backend).
_IPTABLES_LINKS = tuple(
    (f"usr/sbin/{tool}{suffix}", "xtables-nft-multi")
    for tool in ("iptables", "ip6tables")
    for suffix in ("", "-save", "-restore")
)


_DEB_DOCS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale")


def plan(pins: Pins, image_repository: str = DEFAULT_IMAGE_REPOSITORY) -> Plan:
    """Every step, bin/ file and image for the pinned versions."""
    versions = {
        "kubernetes": pins["kubernetes"],
        "etcd": pins["etcd"],
        "coredns": pins["coredns"],
        "pause": pins["pause"],
        "flannel": pins["flannel"],
        "cni_plugins": pins["cni_plugins"],
        "cni_flannel_plugin": pins["cni_flannel_plugin"],
        "helm": pins["helm"],
        "xiu": pins["xiu"],
        **addon_versions(pins),
    }
    return Plan(
        versions=tuple(sorted(versions.items())),
        steps=_steps(versions) + _addon_steps(versions),
        bins=_bins(),
        images=_images(versions, image_repository) + _addon_images(versions),
        settings=(("image_repository", image_repository),),
    )


def _kube_ldflags(kube: str) -> tuple[str, ...]:
    v = SemVer.parse(kube)
    values = {
        "gitVersion": kube,
        "gitMajor": str(v.major),
        "gitMinor": str(v.minor),
        "gitTreeState": "clean",
        "buildDate": "{release_time}",
    }
    return tuple(
        f"-X '{pkg}.{key}={value}'"
        for key, value in values.items()
        for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
    )


def _steps(v: dict[str, str]) -> tuple[Step, ...]:
    kube, etcd = v["kubernetes"], go_version(v["etcd"])
    cni, cni_flannel = v["cni_plugins"], v["cni_flannel_plugin"]
    return (
        GoBuild(
            name="kubernetes",
            requires=(("k8s.io/kubernetes", kube),),
            local_replaces_of="k8s.io/kubernetes",
            local_replace_version=staging_version(kube),
            packages=tuple(f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_CMDS),
            ldflags=_kube_ldflags(kube),
        ),
        GoBuild(
            name="etcd",
            requires=(
                ("go.etcd.io/etcd/server/v3", etcd),
                ("go.etcd.io/etcd/etcdctl/v3", etcd),
                ("go.etcd.io/etcd/etcdutl/v3", etcd),
            ),
            packages=("go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"),
            renames=(("server", "etcd"),),
        ),
        GoBuild(
            name="coredns",
            requires=(("github.com/coredns/coredns", v["coredns"]),),
            packages=("github.com/coredns/coredns",),
        ),
        GoBuild(
            name="helm",
            requires=(("helm.sh/helm/v3", v["helm"]),),
            packages=("helm.sh/helm/v3/cmd/helm",),
            ldflags=(
                f"-X helm.sh/helm/v3/internal/version.version={v['helm']}",
                "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            ),
        ),
        GoBuild(
            name="flannel",
            requires=(("github.com/flannel-io/flannel", v["flannel"]),),
            # flanneld's main imports the tencentvpc backend, whose SDK modules the proxy refuses (403), and
            # the udp backend, which needs cgo: build a copy of main.go without those two imports (vxlan,
            # host-gw, wireguard, ipsec, ipip, extension stay).
            patched_mains=(
                PatchedMain(
                    module="github.com/flannel-io/flannel",
                    directory="",
                    dest="flanneld",
                    drop=(
                        r'^\s*_ "github.com/flannel-io/flannel/pkg/backend/tencentvpc"\s*$',
                        r'^\s*_ "github.com/flannel-io/flannel/pkg/backend/udp"\s*$',
                    ),
                ),
            ),
            packages=("./flanneld", "github.com/flannel-io/flannel/cmd/install_conf"),
            renames=(("install_conf", "install-conf"),),
            ldflags=(f"-X github.com/flannel-io/flannel/pkg/version.Version={v['flannel']}",),
        ),
        GoBuild(
            name="cni-plugins",
            requires=(("github.com/containernetworking/plugins", cni),),
            packages=tuple(f"github.com/containernetworking/plugins/plugins/{d}/{p}" for d, p in CNI_PLUGINS),
            ldflags=(f"-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion={cni}",),
        ),
        GoBuild(
            name="cni-flannel-plugin",
            requires=(("github.com/containernetworking/plugins", cni_flannel),),
            packages=("github.com/containernetworking/plugins/plugins/meta/flannel",),
        ),
        CBuild(
            name="pause",
            module="k8s.io/kubernetes",
            version=kube,
            source="build/pause/linux/pause.c",
            output="pause",
            cflags=("-Os", "-Wall", "-Werror", "-static", "-s", f"-DVERSION=v{v['pause']}-streamops"),
        ),
        DebTree(
            name=IPTABLES_TREE,
            packages=("iptables",),
            symlinks=_IPTABLES_LINKS,
            drop=_DEB_DOCS,
        ),
        DebTree(name=BUSYBOX_TREE, packages=("busybox-static",), drop=_DEB_DOCS),
        CargoInstall(name="xiu", crate="xiu", version=v["xiu"], binaries=("xiu",), env=XIU_CARGO_ENV),
        # What the xiu pod needs besides the binary: /bin/sh, sleep and kill for the preStop hook, and
        # the C runtime xiu links against (libc, libm, libgcc_s).
        DebTree(
            name=XIU_RUNTIME_TREE,
            packages=("dash", "coreutils", "libgcc-s1"),
            symlinks=(("bin/sh", "dash"),),
            drop=_DEB_DOCS,
        ),
        # The xiu-agent sidecar: Debian's python3 (standard library only).
        DebTree(name=PYTHON_TREE, packages=("python3",), drop=_DEB_DOCS),
    )


def _bins() -> tuple[BinFile, ...]:
    bins = [BinFile("kubernetes", name, StepFile("kubernetes", name)) for name in KUBE_NODE_BINS]
    bins.append(BinFile("helm", "helm", StepFile("helm", "helm")))
    bins += [BinFile("cni_plugins", f"cni/{p}", StepFile("cni-plugins", p)) for _, p in CNI_PLUGINS]
    bins.append(BinFile("cni_flannel_plugin", "cni/flannel", StepFile("cni-flannel-plugin", "flannel")))
    return tuple(bins)


def _bin_layer(step: str, files: tuple[str, ...], directory: str = "/usr/local/bin") -> Layer:
    return Layer(entries=tuple(Entry(f"{directory}/{f}", source=StepFile(step, f)) for f in files))


def coredns_repository(image_repository: str) -> str:
    """kubeadm's rule (images.GetDNSImage): the default repository gains a /coredns path segment."""
    if image_repository == DEFAULT_IMAGE_REPOSITORY:
        return f"{image_repository}/coredns/coredns"
    return f"{image_repository}/coredns"


def _images(v: dict[str, str], repo: str) -> tuple[Image, ...]:
    kube = v["kubernetes"]
    images = [
        Image(
            component="kubernetes",
            repository=f"{repo}/{name}",
            tag=kube,
            layers=(BASE_LAYER, _bin_layer("kubernetes", (name,))),
            entrypoint=(f"/usr/local/bin/{name}",),
        )
        for name in KUBE_CONTROL_PLANE_IMAGES
    ]
    images += [
        Image(
            component="kubernetes",
            repository=f"{repo}/kube-proxy",
            tag=kube,
            layers=(Layer(tree=IPTABLES_TREE), BASE_LAYER, _bin_layer("kubernetes", ("kube-proxy",))),
            entrypoint=("/usr/local/bin/kube-proxy",),
        ),
        Image(
            component="etcd",
            repository=f"{repo}/etcd",
            tag=v["etcd"],
            layers=(BASE_LAYER, _bin_layer("etcd", ("etcd", "etcdctl", "etcdutl"))),
            entrypoint=("/usr/local/bin/etcd",),
        ),
        Image(
            component="coredns",
            repository=coredns_repository(repo),
            tag=v["coredns"],
            layers=(
                BASE_LAYER,
                Layer(
                    entries=(
                        Entry(
                            "/coredns",
                            source=StepFile("coredns", "coredns"),
                            xattrs=(("security.capability", CAP_NET_BIND_SERVICE_XATTR),),
                        ),
                    )
                ),
            ),
            entrypoint=("/coredns",),
            user="65532:65532",
        ),
        Image(
            component="pause",
            repository=f"{repo}/pause",
            tag=v["pause"],
            layers=(Layer(entries=(Entry("/pause", source=StepFile("pause", "pause")),)),),
            entrypoint=("/pause",),
            user="65535:65535",
        ),
        Image(
            component="flannel",
            repository="ghcr.io/flannel-io/flannel",
            tag=v["flannel"],
            layers=(
                Layer(tree=IPTABLES_TREE),
                BASE_LAYER,
                _bin_layer("flannel", ("flanneld", "install-conf"), "/opt/bin"),
            ),
            entrypoint=("/opt/bin/flanneld",),
        ),
        # For the upstream chart's install-cni-plugin init container (`cp -f /flannel /opt/cni/bin/flannel`).
        # The tag is the plugin's real version: set the chart's flannel.flannel_cni.image.tag to it.
        Image(
            component="cni_flannel_plugin",
            repository="ghcr.io/flannel-io/flannel-cni-plugin",
            tag=v["cni_flannel_plugin"],
            layers=(
                Layer(tree=BUSYBOX_TREE),
                Layer(
                    entries=(
                        Entry("/bin/cp", symlink="busybox"),
                        Entry("/bin/sh", symlink="busybox"),
                        Entry("/flannel", source=StepFile("cni-flannel-plugin", "flannel")),
                    )
                ),
            ),
            cmd=("/bin/sh",),
        ),
        # Same layout as docker.io/harlancn/xiu (binary at /app/xiu, a shell, no entrypoint: the pod gives
        # the command), so the xiu role treats both alike.
        Image(
            component="xiu",
            repository=f"{LAB_IMAGE_REPOSITORY}/xiu",
            tag=v["xiu"],
            layers=(
                Layer(tree=XIU_RUNTIME_TREE),
                BASE_LAYER,
                Layer(entries=(Entry("/app/xiu", source=StepFile("xiu", "bin/xiu")),)),
            ),
        ),
        Image(
            component="xiu",
            repository=f"{LAB_IMAGE_REPOSITORY}/python",
            tag="3-bookworm",
            layers=(Layer(tree=PYTHON_TREE), BASE_LAYER),
            cmd=("python3",),
        ),
    ]
    return tuple(images)


# ------------------------------------------------------------------------------------------ cluster add-ons
# Images of the add-ons (issue 4) for the lab: MetalLB, Traefik, cert-manager, metrics-server, and the Pebble ACME
# test server. Built from the Go module proxy like everything above; named under LAB_IMAGE_REPOSITORY because they
# are builds of upstream's source, not upstream's images (inventories/lab points each role's image variables here).

# Which versions the lab builds: production pins where they build from the proxy, the documented lab pins where
# not (see roles/versions/defaults/main.yml).
ADDON_PINS = {
    "metallb_lab": "metallb_lab",
    "metrics_server": "metrics_server",
    "pebble": "pebble",
    "traefik_lab": "traefik_lab",
    "cert_manager_lab": "cert_manager_lab",
}
CERT_MANAGER_CMDS = ("controller", "webhook", "cainjector", "acmesolver")


def addon_versions(pins: Pins) -> dict[str, str]:
    return {key: pins[pin] for key, pin in ADDON_PINS.items()}


def _addon_steps(v: dict[str, str]) -> tuple[Step, ...]:
    metallb, cm, traefik = v["metallb_lab"], v["cert_manager_lab"], v["traefik_lab"]
    return (
        GoBuild(
            name="metallb",
            requires=(("go.universe.tf/metallb", metallb),),
            packages=("go.universe.tf/metallb/controller", "go.universe.tf/metallb/speaker"),
            ldflags=(
                "-X 'go.universe.tf/metallb/internal/version.gitCommit=" + metallb + "'",
                "-X 'go.universe.tf/metallb/internal/version.gitBranch=" + metallb + "'",
            ),
        ),
        GoBuild(
            name="metrics-server",
            requires=(("sigs.k8s.io/metrics-server", v["metrics_server"]),),
            packages=("sigs.k8s.io/metrics-server/cmd/metrics-server",),
            ldflags=(
                f"-X k8s.io/client-go/pkg/version.gitVersion={v['metrics_server']}",
                "-X k8s.io/client-go/pkg/version.gitTreeState=clean",
                "-X k8s.io/client-go/pkg/version.buildDate={release_time}",
            ),
        ),
        GoBuild(
            name="pebble",
            requires=(("github.com/letsencrypt/pebble/v2", v["pebble"]),),
            packages=(
                "github.com/letsencrypt/pebble/v2/cmd/pebble",
                "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv",
            ),
        ),
        # Traefik's go.mod points three modules at Traefik's forks; a wrapper must repeat those replaces.
        GoBuild(
            name="traefik",
            requires=(("github.com/traefik/traefik/v3", traefik),),
            packages=("github.com/traefik/traefik/v3/cmd/traefik",),
            replaces=TRAEFIK_REPLACES,
            ldflags=(
                f"-X github.com/traefik/traefik/v3/pkg/version.Version={traefik}",
                "-X github.com/traefik/traefik/v3/pkg/version.BuildDate={release_time}",
            ),
        ),
        # cert-manager <= 1.11 keeps its commands in the root module. Its go.mod's one replace is version-specific
        # (miekg/dns v1.1.41 => v1.1.34) and never applies (it requires v1.1.50): the wrapper needs none. Repeating it
        # unversioned (all the wrapper's replace form allows) would downgrade dns below what cert-manager uses.
        GoBuild(
            name="cert-manager",
            requires=(("github.com/cert-manager/cert-manager", cm),),
            packages=tuple(f"github.com/cert-manager/cert-manager/cmd/{c}" for c in CERT_MANAGER_CMDS),
            ldflags=(
                f"-X github.com/cert-manager/cert-manager/pkg/util.AppVersion={cm}",
                f"-X github.com/cert-manager/cert-manager/pkg/util.AppGitCommit={cm}",
            ),
        ),
    )


# Copied from github.com/traefik/traefik/v3@v3.6.12's go.mod ("Containous forks").
TRAEFIK_REPLACES = (
    (
        "github.com/abbot/go-http-auth",
        "github.com/containous/go-http-auth",
        "v0.4.1-0.20200324110947-a37a7636d23e",
    ),
    ("github.com/gorilla/mux", "github.com/containous/mux", "v0.0.0-20250523120546-41b6ec3aed59"),
    ("github.com/mailgun/minheap", "github.com/containous/minheap", "v0.0.0-20190809180810-6e71eb837595"),
)


def _static_image(component: str, name: str, tag: str, step: str, binary: str, path: str, user: str = "") -> Image:
    """One static binary at ``path`` on the distroless-like base, as the entrypoint."""
    return Image(
        component=component,
        repository=f"{LAB_IMAGE_REPOSITORY}/{name}",
        tag=tag,
        layers=(BASE_LAYER, Layer(entries=(Entry(path, source=StepFile(step, binary)),))),
        entrypoint=(path,),
        user=user,
    )


def _addon_images(v: dict[str, str]) -> tuple[Image, ...]:
    metallb, cm = v["metallb_lab"], v["cert_manager_lab"]
    images = [
        # The MetalLB chart runs /controller and /speaker (values controller.command / speaker.command).
        _static_image("metallb_lab", "metallb-controller", metallb, "metallb", "controller", "/controller", "65534:65534"),
        _static_image("metallb_lab", "metallb-speaker", metallb, "metallb", "speaker", "/speaker"),
        _static_image(
            "metrics_server", "metrics-server", v["metrics_server"], "metrics-server", "metrics-server", "/metrics-server"
        ),
        _static_image("pebble", "pebble", v["pebble"], "pebble", "pebble", "/usr/local/bin/pebble", "65532:65532"),
        _static_image(
            "pebble",
            "pebble-challtestsrv",
            v["pebble"],
            "pebble",
            "pebble-challtestsrv",
            "/usr/local/bin/pebble-challtestsrv",
            "65532:65532",
        ),
        _static_image("traefik_lab", "traefik", v["traefik_lab"], "traefik", "traefik", "/usr/local/bin/traefik", "65532:65532"),
    ]
    images += [
        _static_image(
            "cert_manager_lab", f"cert-manager-{c}", cm, "cert-manager", c, f"/app/cmd/{c}/{c}", "65532:65532"
        )
        for c in CERT_MANAGER_CMDS
    ]
    return tuple(images)
