"""Cross-reference checks over a set of rendered Kubernetes objects.

Each ``check_*`` function is pure: it takes every object of the set and returns error strings
(``"<Kind> <namespace>/<name>: <problem>"``); an empty list means the set is consistent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = Mapping[str, Any]
Check = Callable[[Sequence[Obj]], list[str]]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
SCALABLE_KINDS = ("Deployment", "StatefulSet", "ReplicaSet")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
CM_CLUSTER_ISSUER = "cert-manager.io/cluster-issuer"
CM_ISSUER = "cert-manager.io/issuer"


# ------------------------------------------------------------------------------------------- helpers


def _d(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def kind(obj: Obj) -> str:
    return str(obj.get("kind", ""))


def name(obj: Obj) -> str:
    return str(_d(obj.get("metadata")).get("name", ""))


def namespace(obj: Obj) -> str:
    return str(_d(obj.get("metadata")).get("namespace") or "default")


def ref(obj: Obj) -> str:
    return f"{kind(obj)} {namespace(obj)}/{name(obj)}"


def find(objs: Sequence[Obj], want_kind: str, ns: str | None, want_name: str) -> Obj | None:
    """The object of that kind and name (in namespace ns; None: cluster-scoped)."""
    for obj in objs:
        if kind(obj) == want_kind and name(obj) == want_name and (ns is None or namespace(obj) == ns):
            return obj
    return None


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """metav1.LabelSelector semantics (an empty selector matches everything)."""
    for key, value in _d(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in _l(selector.get("matchExpressions")):
        key, op, values = expr.get("key"), expr.get("operator"), _l(expr.get("values"))
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_is_empty(selector: Mapping[str, Any]) -> bool:
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def dns_covers(pattern: str, host: str) -> bool:
    """Certificate dnsName (maybe ``*.`` wildcard for exactly one label) covers host."""
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and first != "*" and rest == pattern[2:]
    return pattern == host


@dataclass(frozen=True)
class Pods:
    """The pod template of a workload (or a bare Pod)."""

    owner: Obj
    labels: Mapping[str, Any]
    spec: Mapping[str, Any]

    @property
    def namespace(self) -> str:
        return namespace(self.owner)

    def containers(self, with_init: bool = True) -> list[Mapping[str, Any]]:
        """Long-running containers (incl. native sidecars); every init container if with_init."""
        inits = [c for c in _l(self.spec.get("initContainers")) if with_init or c.get("restartPolicy") == "Always"]
        return [_d(c) for c in _l(self.spec.get("containers")) + inits]

    def ports(self) -> list[Mapping[str, Any]]:
        return [_d(p) for c in self.containers(with_init=False) for p in _l(c.get("ports"))]

    def has_port(self, port: Any, protocol: str = "TCP") -> bool:
        """A containerPort with that number (int) or name (str) and protocol is declared."""
        field = "containerPort" if isinstance(port, int) else "name"
        return any(p.get(field) == port and p.get("protocol", "TCP") == protocol for p in self.ports())


def pod_templates(objs: Sequence[Obj]) -> list[Pods]:
    out: list[Pods] = []
    for obj in objs:
        spec = _d(obj.get("spec"))
        if kind(obj) in (*WORKLOAD_KINDS, "ReplicaSet", "Job"):
            template = _d(spec.get("template"))
        elif kind(obj) == "CronJob":
            template = _d(_d(_d(spec.get("jobTemplate")).get("spec")).get("template"))
        elif kind(obj) == "Pod":
            template = obj
        else:
            continue
        labels = _d(_d(template.get("metadata")).get("labels"))
        out.append(Pods(obj, labels, _d(template.get("spec"))))
    return out


def _pods_in(objs: Sequence[Obj], ns: str, kinds: Sequence[str] | None = None) -> list[Pods]:
    return [p for p in pod_templates(objs) if p.namespace == ns and (kinds is None or kind(p.owner) in kinds)]


def _objs(objs: Sequence[Obj], *kinds: str) -> Iterator[Obj]:
    return (o for o in objs if kind(o) in kinds)


# -------------------------------------------------------------------------------------------- checks


def check_workload_selectors(objs: Sequence[Obj]) -> list[str]:
    """A workload's spec.selector must match its own pod template labels (the API rejects it otherwise)."""
    errors = []
    for pods in pod_templates(objs):
        selector = _d(pods.owner.get("spec")).get("selector")
        if kind(pods.owner) in (*WORKLOAD_KINDS, "ReplicaSet") and not (
            isinstance(selector, Mapping)
            and not selector_is_empty(selector)
            and selector_matches(selector, pods.labels)
        ):
            errors.append(
                f"{ref(pods.owner)}: spec.selector {selector} does not match template labels {dict(pods.labels)}"
            )
    return errors


def check_service_selectors(objs: Sequence[Obj]) -> list[str]:
    """Every Service selector selects a workload's pods, and each targetPort is a containerPort there."""
    errors = []
    for svc in _objs(objs, "Service"):
        spec = _d(svc.get("spec"))
        selector = _d(spec.get("selector"))
        if spec.get("type") == "ExternalName" or not selector:
            continue
        matched = [
            p
            for p in _pods_in(objs, namespace(svc), WORKLOAD_KINDS)
            if all(p.labels.get(k) == v for k, v in selector.items())
        ]
        if not matched:
            errors.append(f"{ref(svc)}: selector {dict(selector)} matches no Deployment/StatefulSet/DaemonSet pods")
        for port in _l(spec.get("ports")):
            target, proto = port.get("targetPort", port.get("port")), port.get("protocol", "TCP")
            for pods in matched:
                if not pods.has_port(target, proto):
                    errors.append(
                        f"{ref(svc)}: port {port.get('name') or port.get('port')}: targetPort {target!r}/{proto}"
                        f" is not a containerPort of {ref(pods.owner)}"
                    )
    return errors


def _service_port_ok(svc: Obj, port: Mapping[str, Any]) -> bool:
    ports = [_d(p) for p in _l(_d(svc.get("spec")).get("ports"))]
    if "number" in port:
        return any(p.get("port") == port["number"] for p in ports)
    return "name" in port and any(p.get("name") == port["name"] for p in ports)


def check_ingress_backends(objs: Sequence[Obj]) -> list[str]:
    """Every Ingress backend names an existing Service and one of its ports (number or name)."""
    errors = []
    for ing in _objs(objs, "Ingress"):
        spec = _d(ing.get("spec"))
        backends = [_d(spec.get("defaultBackend"))] if "defaultBackend" in spec else []
        for rule in _l(spec.get("rules")):
            backends += [_d(_d(path).get("backend")) for path in _l(_d(_d(rule).get("http")).get("paths"))]
        for backend in backends:
            if "service" not in backend:
                continue
            target, port = _d(backend["service"]), _d(_d(backend["service"]).get("port"))
            svc = find(objs, "Service", namespace(ing), str(target.get("name")))
            if svc is None:
                errors.append(f"{ref(ing)}: backend Service {target.get('name')!r} does not exist")
            elif not _service_port_ok(svc, port):
                errors.append(f"{ref(ing)}: backend port {dict(port)} is not a port of {ref(svc)}")
    return errors


def check_ingress_tls(objs: Sequence[Obj]) -> list[str]:
    """Every Ingress TLS host is in the rules and covered by cert-manager: an issuer annotation naming an
    existing (Cluster)Issuer, or a Certificate writing the same secret whose dnsNames cover the host."""
    errors = []
    for ing in _objs(objs, "Ingress"):
        ns, spec = namespace(ing), _d(ing.get("spec"))
        annotations = _d(_d(ing.get("metadata")).get("annotations"))
        rule_hosts = {_d(r).get("host") for r in _l(spec.get("rules"))}
        issuer_ok = False
        for annotation, issuer_kind, issuer_ns in (
            (CM_CLUSTER_ISSUER, "ClusterIssuer", None),
            (CM_ISSUER, "Issuer", ns),
        ):
            if annotation not in annotations:
                continue
            if find(objs, issuer_kind, issuer_ns, str(annotations[annotation])) is None:
                errors.append(f"{ref(ing)}: {annotation} names a missing {issuer_kind} {annotations[annotation]!r}")
            else:
                issuer_ok = True
        for tls in _l(spec.get("tls")):
            secret, hosts = _d(tls).get("secretName"), _l(_d(tls).get("hosts"))
            if not secret or not hosts:
                errors.append(f"{ref(ing)}: tls entry {dict(_d(tls))} needs hosts and secretName")
            certs = [
                c
                for c in _objs(objs, "Certificate")
                if namespace(c) == ns and _d(c.get("spec")).get("secretName") == secret
            ]
            for host in hosts:
                if host not in rule_hosts:
                    errors.append(f"{ref(ing)}: tls host {host!r} has no rule")
                covered = any(dns_covers(str(d), host) for c in certs for d in _l(_d(c.get("spec")).get("dnsNames")))
                if not (issuer_ok or covered):
                    errors.append(
                        f"{ref(ing)}: tls host {host!r} has no certificate source (cert-manager issuer annotation"
                        f" or a Certificate for secret {secret!r} covering it)"
                    )
    return errors


def check_certificate_issuers(objs: Sequence[Obj]) -> list[str]:
    """Every cert-manager Certificate's issuerRef names an existing Issuer/ClusterIssuer."""
    errors = []
    for cert in _objs(objs, "Certificate"):
        issuer = _d(_d(cert.get("spec")).get("issuerRef"))
        issuer_kind = issuer.get("kind", "Issuer")
        if issuer.get("group", "cert-manager.io") != "cert-manager.io":
            continue  # external issuer
        ns = namespace(cert) if issuer_kind == "Issuer" else None
        if find(objs, str(issuer_kind), ns, str(issuer.get("name"))) is None:
            errors.append(f"{ref(cert)}: issuerRef {issuer_kind} {issuer.get('name')!r} does not exist")
    return errors


def check_scale_targets(objs: Sequence[Obj]) -> list[str]:
    """Every HPA scaleTargetRef names an existing scalable workload; Resource utilization metrics need
    requests for that resource on every container of the target."""
    errors = []
    for hpa in _objs(objs, "HorizontalPodAutoscaler"):
        spec = _d(hpa.get("spec"))
        target = _d(spec.get("scaleTargetRef"))
        obj = find(objs, str(target.get("kind")), namespace(hpa), str(target.get("name")))
        group = str(target.get("apiVersion", "")).rpartition("/")[0]
        if obj is None or kind(obj) not in SCALABLE_KINDS or str(obj.get("apiVersion", "")).rpartition("/")[0] != group:
            errors.append(f"{ref(hpa)}: scaleTargetRef {dict(target)} is not an existing scalable workload")
            continue
        for pods in pod_templates([obj]):
            for metric in _l(spec.get("metrics")):
                resource = _d(_d(metric).get("resource"))
                if _d(metric).get("type") != "Resource" or _d(resource.get("target")).get("type") != "Utilization":
                    continue
                for c in pods.containers(with_init=False):
                    if resource.get("name") not in _d(_d(c.get("resources")).get("requests")):
                        errors.append(
                            f"{ref(hpa)}: {resource.get('name')} utilization needs resources.requests."
                            f"{resource.get('name')} on container {c.get('name')!r} of {ref(obj)}"
                        )
    return errors


def check_pdb_selectors(objs: Sequence[Obj]) -> list[str]:
    """Every PodDisruptionBudget selector matches the pod labels of a workload in its namespace."""
    errors = []
    for pdb in _objs(objs, "PodDisruptionBudget"):
        selector = _d(_d(pdb.get("spec")).get("selector"))
        pods = _pods_in(objs, namespace(pdb), WORKLOAD_KINDS)
        if selector_is_empty(selector) or not any(selector_matches(selector, p.labels) for p in pods):
            errors.append(f"{ref(pdb)}: selector {dict(selector)} matches no Deployment/StatefulSet/DaemonSet pods")
    return errors


def check_probe_ports(objs: Sequence[Obj]) -> list[str]:
    """Every probe port is a declared containerPort of the pod: a number declared by some container,
    a name declared by the probed container itself (the kubelet resolves names only there)."""
    errors = []
    for pods in pod_templates(objs):
        numbers = {p.get("containerPort") for p in pods.ports()}
        for c in pods.containers():
            names = {_d(p).get("name") for p in _l(c.get("ports"))}
            for probe_name in PROBES:
                probe = _d(c.get(probe_name))
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    if handler not in probe:
                        continue
                    port = _d(probe[handler]).get("port")
                    if (port not in numbers) if isinstance(port, int) else (port not in names):
                        errors.append(
                            f"{ref(pods.owner)}: container {c.get('name')!r} {probe_name}.{handler}.port {port!r}"
                            " is not a declared containerPort"
                        )
    return errors


def _cert_manager_secrets(objs: Sequence[Obj], ns: str) -> set[str]:
    """Secrets that cert-manager will create in ns (Certificates, annotated Ingress TLS)."""
    out = {str(_d(c.get("spec")).get("secretName")) for c in _objs(objs, "Certificate") if namespace(c) == ns}
    for ing in _objs(objs, "Ingress"):
        annotations = _d(_d(ing.get("metadata")).get("annotations"))
        if namespace(ing) == ns and (CM_CLUSTER_ISSUER in annotations or CM_ISSUER in annotations):
            out |= {str(_d(t).get("secretName")) for t in _l(_d(ing.get("spec")).get("tls"))}
    return out


def _pod_refs(
    spec: Mapping[str, Any], containers: list[Mapping[str, Any]]
) -> Iterator[tuple[str, Mapping[str, Any], str]]:
    """(kind, ref mapping, where) for every Secret/ConfigMap reference of a pod spec."""
    for vol in _l(spec.get("volumes")):
        vol = _d(vol)
        if "secret" in vol:
            secret = _d(vol["secret"])
            yield "Secret", {**secret, "name": secret.get("secretName")}, f"volume {vol.get('name')!r}"
        if "configMap" in vol:
            yield "ConfigMap", _d(vol["configMap"]), f"volume {vol.get('name')!r}"
        for source in _l(_d(vol.get("projected")).get("sources")):
            for key, ref_kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                if key in _d(source):
                    yield ref_kind, _d(_d(source)[key]), f"volume {vol.get('name')!r}"
    for secret in _l(spec.get("imagePullSecrets")):
        yield "Secret", _d(secret), "imagePullSecrets"
    for c in containers:
        for env in _l(c.get("env")):
            value_from = _d(_d(env).get("valueFrom"))
            for key, ref_kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if key in value_from:
                    yield ref_kind, _d(value_from[key]), f"container {c.get('name')!r} env {_d(env).get('name')!r}"
        for env_from in _l(c.get("envFrom")):
            for key, ref_kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if key in _d(env_from):
                    yield ref_kind, _d(_d(env_from)[key]), f"container {c.get('name')!r} envFrom"


def check_config_refs(objs: Sequence[Obj]) -> list[str]:
    """Every non-optional Secret/ConfigMap (and key) a pod references exists in the set, or is a TLS
    secret cert-manager creates."""
    errors = []
    for pods in pod_templates(objs):
        generated = _cert_manager_secrets(objs, pods.namespace)
        for ref_kind, reference, where in _pod_refs(pods.spec, pods.containers()):
            if reference.get("optional") is True:
                continue
            ref_name = str(reference.get("name"))
            target = find(objs, ref_kind, pods.namespace, ref_name)
            if target is None:
                if not (ref_kind == "Secret" and ref_name in generated):
                    errors.append(f"{ref(pods.owner)}: {where} references missing {ref_kind} {ref_name!r}")
                continue
            keys = {*_d(target.get("data")), *_d(target.get("binaryData")), *_d(target.get("stringData"))}
            wanted = (
                [reference["key"]] if "key" in reference else [_d(i).get("key") for i in _l(reference.get("items"))]
            )
            errors += [
                f"{ref(pods.owner)}: {where} references missing key {k!r} of {ref(target)}"
                for k in wanted
                if k not in keys
            ]
    return errors


def check_service_accounts(objs: Sequence[Obj]) -> list[str]:
    """Every ServiceAccount named by a pod, or by a (Cluster)RoleBinding subject in a rendered
    namespace, exists ("default" always does)."""
    errors = []
    for pods in pod_templates(objs):
        sa = pods.spec.get("serviceAccountName") or pods.spec.get("serviceAccount")
        if sa and sa != "default" and find(objs, "ServiceAccount", pods.namespace, str(sa)) is None:
            errors.append(f"{ref(pods.owner)}: ServiceAccount {sa!r} does not exist")
    rendered_ns = {namespace(o) for o in objs}
    for binding in _objs(objs, "RoleBinding", "ClusterRoleBinding"):
        for subject in _l(binding.get("subjects")):
            subject = _d(subject)
            ns = str(subject.get("namespace") or namespace(binding))
            sa = str(subject.get("name"))
            wanted = subject.get("kind") == "ServiceAccount" and sa != "default" and ns in rendered_ns
            if wanted and find(objs, "ServiceAccount", ns, sa) is None:
                errors.append(f"{ref(binding)}: subject ServiceAccount {ns}/{sa} does not exist")
    return errors


def check_network_policies(objs: Sequence[Obj]) -> list[str]:
    """Every NetworkPolicy podSelector (and same-namespace peer podSelector) matches some pods; named
    ingress ports are declared by the selected pods."""
    errors = []
    for pol in _objs(objs, "NetworkPolicy"):
        spec = _d(pol.get("spec"))
        pods = _pods_in(objs, namespace(pol))
        selector = _d(spec.get("podSelector"))
        selected = [p for p in pods if selector_matches(selector, p.labels)]
        if not selected:
            errors.append(f"{ref(pol)}: podSelector {dict(selector)} matches no pods")
        rules = [(r, "from") for r in _l(spec.get("ingress"))] + [(r, "to") for r in _l(spec.get("egress"))]
        for rule, peers_key in rules:
            for peer in _l(_d(rule).get(peers_key)):
                peer_sel = _d(peer).get("podSelector")
                same_ns = isinstance(peer_sel, Mapping) and "namespaceSelector" not in _d(peer)
                if same_ns and not any(selector_matches(_d(peer_sel), p.labels) for p in pods):
                    errors.append(f"{ref(pol)}: {peers_key} podSelector {dict(_d(peer_sel))} matches no pods")
            if peers_key == "from":
                for port in _l(_d(rule).get("ports")):
                    number, proto = _d(port).get("port"), _d(port).get("protocol", "TCP")
                    if isinstance(number, str) and not any(p.has_port(number, proto) for p in selected):
                        errors.append(
                            f"{ref(pol)}: ingress port {number!r} is not a containerPort of the selected pods"
                        )
    return errors


def check_unique(objs: Sequence[Obj]) -> list[str]:
    """No two objects share apiVersion group, kind, namespace and name (one would overwrite the other)."""
    seen: set[tuple[str, str, str, str]] = set()
    errors = []
    for obj in objs:
        key = (str(obj.get("apiVersion", "")).rpartition("/")[0], kind(obj), namespace(obj), name(obj))
        if key in seen:
            errors.append(f"{ref(obj)}: defined more than once")
        seen.add(key)
    return errors


CHECKS: dict[str, Check] = {
    "unique-objects": check_unique,
    "workload-selectors": check_workload_selectors,
    "service-selectors": check_service_selectors,
    "ingress-backends": check_ingress_backends,
    "ingress-tls": check_ingress_tls,
    "certificate-issuers": check_certificate_issuers,
    "hpa-targets": check_scale_targets,
    "pdb-selectors": check_pdb_selectors,
    "probe-ports": check_probe_ports,
    "config-refs": check_config_refs,
    "service-accounts": check_service_accounts,
    "network-policies": check_network_policies,
}
