"""deploy/k8s, checked offline: rendered like `kubectl kustomize`, core resources validated
with kubernetes-validate (strict), the Strimzi and CloudNativePG resources checked against
the parts of their CRD schemas the manifests use, and the platform's own rules (security
settings, probes, limits, references, topic layout, image) enforced.

No cluster, kubectl or Docker is needed. The kustomizations use only what `render` below
implements (resources, namespace, images, strategic-merge patches) and it refuses anything
else, so this render and kustomize's agree.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.common import pgroles
from services.common.config import Settings
from services.common.signing import Signer, anchor_record, load_anchors
from services.common.topics import CONSUMER_USER_PREFIX, PARTIES, AclEntry
from services.preprocess.main import PreprocessSettings

try:
    import jsonschema
    import kubernetes_validate
    import kubernetes_validate.utils
    import yaml
except ImportError as error:  # pragma: no cover - the message is the point
    jsonschema = kubernetes_validate = yaml = None
    MISSING = f"{error.name} is not installed: run `make venv` (kubernetes-validate is a dev pin)"
else:
    MISSING = None

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes the manifests claim (README), and the newest the validator knows.
OLDEST_KUBERNETES = "1.30"
CORE_API_VERSIONS = {"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1"}
SERVICES = ("ingest", "preprocess", "ledger", "payout")
# Services that are one active instance by design (their manifests say why).
SINGLE_ACTIVE = ("ledger", "payout")
CNPG_APP_SECRET_KEYS = {"username", "password", "host", "port", "dbname", "uri", "jdbc-uri"}
# What Strimzi puts in a SCRAM-SHA-512 KafkaUser's Secret, and in the cluster CA's.
STRIMZI_SCRAM_USER_SECRET_KEYS = {"password", "sasl.jaas.config"}
STRIMZI_CA_CERT_SECRET_KEYS = {"ca.crt", "ca.p12", "ca.password"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def require_tools() -> None:
    if MISSING:
        pytest.fail(MISSING)


# --- a minimal kustomize ---------------------------------------------------------------

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# How strategic merge treats the lists of core resources that the overlays may patch
# (k8s.io/api's patchMergeKey, or atomic lists that a patch replaces). A patch of any other
# core list fails the render, rather than guess. Custom resources have no merge keys:
# kustomize replaces their lists, as this render does.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
}
ATOMIC_LISTS = {"accessModes", "args", "command"}


def load_documents(path: Path) -> list[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when there
    return [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc]


def strategic_merge(base, patch, core: bool, field: str = ""):
    """Apply a strategic-merge patch (what kustomize does for a `patches: - path:` entry)."""
    if isinstance(patch, dict) and isinstance(base, dict):
        if "$patch" in patch:
            raise AssertionError(f"{field}: $patch directives are not supported by this render")
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in base:
                merged[key] = strategic_merge(base[key], value, core, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(patch, list) and core and field not in ATOMIC_LISTS:
        if field == "ports":  # a container's ports, or a Service's
            key = "containerPort" if "containerPort" in patch[0] else "port"
        elif field in MERGE_KEYS:
            key = MERGE_KEYS[field]
        else:
            raise AssertionError(f"this render does not know how kustomize merges {field!r}")
        merged = [copy.deepcopy(item) for item in base]
        for item in patch:
            index = next((i for i, old in enumerate(merged) if old.get(key) == item[key]), None)
            if index is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[index] = strategic_merge(merged[index], item, core, "")
        return merged
    return copy.deepcopy(patch)


def set_images(resource: dict, images: list[dict]) -> None:
    for pod in pod_specs(resource):
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name = re.split(r"[:@]", container["image"], maxsplit=1)[0]
            for image in images:
                if image["name"] == name:
                    new = image.get("newName", name)
                    if "digest" in image:
                        new += "@" + image["digest"]
                    elif "newTag" in image:
                        new += ":" + str(image["newTag"])
                    container["image"] = new


def render(directory: Path) -> list[dict]:
    """The resources `kubectl kustomize directory` prints, for the subset used here."""
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    unsupported = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unsupported, f"{directory}: this render does not implement {sorted(unsupported)}"
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources += render(path) if path.is_dir() else load_documents(path)
    identities = [identity(r) for r in resources]
    duplicates = {i for i in identities if identities.count(i) > 1}
    assert not duplicates, f"{directory}: resources defined twice: {sorted(duplicates)}"
    for entry in kustomization.get("patches", []):
        assert set(entry) == {"path"}, f"{directory}: only `- path:` patches are supported"
        documents = load_documents(directory / entry["path"])
        # kustomize's `patches` reads one strategic-merge patch per file.
        assert len(documents) == 1, f"{directory / entry['path']}: one patch per file"
        for patch in documents:
            matches = [i for i, r in enumerate(resources) if identity(r) == identity(patch)]
            assert len(matches) == 1, f"{directory / entry['path']}: no target {identity(patch)}"
            target = resources[matches[0]]
            core = target["apiVersion"] in CORE_API_VERSIONS
            resources[matches[0]] = strategic_merge(target, patch, core)
    for resource in resources:
        set_images(resource, kustomization.get("images", []))
        if "namespace" in kustomization:
            resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


def identity(resource: dict) -> tuple[str, str, str]:
    group = resource["apiVersion"].rpartition("/")[0]
    return group, resource["kind"], resource["metadata"]["name"]


def test_the_render_merges_as_kustomize_does():
    require_tools()
    base = {
        "spec": {
            "replicas": 1,
            "accessModes": ["ReadWriteMany"],
            "template": {
                "spec": {
                    "containers": [
                        {"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}]},
                        {"name": "b", "image": "y"},
                    ]
                }
            },
        }
    }
    patch = {
        "spec": {
            "replicas": None,
            "accessModes": ["ReadWriteOnce"],
            "template": {"spec": {"containers": [{"name": "b", "env": [{"name": "J"}]}]}},
        }
    }
    merged = strategic_merge(base, patch, core=True)
    assert "replicas" not in merged["spec"]
    assert merged["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert merged["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}]},
        {"name": "b", "image": "y", "env": [{"name": "J"}]},
    ]
    # Custom resources: no merge keys, lists are replaced whole.
    custom = strategic_merge({"roles": ["broker", "controller"]}, {"roles": ["broker"]}, False)
    assert custom == {"roles": ["broker"]}
    with pytest.raises(AssertionError, match="tolerations"):
        strategic_merge({"tolerations": []}, {"tolerations": [{"key": "k"}]}, core=True)


# --- helpers over a render -------------------------------------------------------------


def pod_specs(resource: dict) -> list[dict]:
    if resource["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [resource["spec"]["template"]["spec"]]
    return []


def of_kind(resources: list[dict], kind: str) -> list[dict]:
    return [r for r in resources if r["kind"] == kind]


def named(resources: list[dict], kind: str, name: str) -> dict:
    [resource] = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    return resource


def containers(resources: list[dict]) -> Iterator[tuple[dict, dict, dict]]:
    for deployment in of_kind(resources, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            yield deployment, pod, container


def config_data(resources: list[dict]) -> dict[str, str]:
    return named(resources, "ConfigMap", "onett-config")["data"]


def selects(selector: dict, labels: dict) -> bool:
    matched = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In":
            matched &= value in expression["values"]
        elif operator == "NotIn":
            matched &= value not in expression["values"]
        elif operator == "Exists":
            matched &= value is not None
        else:
            matched &= value is None
    return matched


QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
UNITS = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value) -> float:
    number, unit = QUANTITY.match(str(value)).groups()
    return float(number) * UNITS[unit]


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    return tuple(render(K8S / "overlays" / overlay))


def overlay_resources(overlay: str) -> list[dict]:
    require_tools()
    return copy.deepcopy(list(rendered(overlay)))


@cache
def secret_templates() -> dict[str, set[str]]:
    """The Secrets an operator creates by hand, by name, with the keys each must hold."""
    require_tools()
    return {
        doc["metadata"]["name"]: set(doc.get("stringData", {})) | set(doc.get("data", {}))
        for doc in load_documents(K8S / "secrets" / "keys.template.yaml")
    }


@cache
def config_map_templates() -> dict[str, set[str]]:
    """The ConfigMaps an operator creates by hand (the trust anchors), with their keys."""
    require_tools()
    return {
        doc["metadata"]["name"]: set(doc["data"])
        for doc in load_documents(K8S / "secrets" / "trust-anchors.template.yaml")
    }


def cluster_ca_secret(resources: list[dict]) -> str:
    """Strimzi's Secret with the CA certificate that signs the brokers' certificates."""
    [kafka] = of_kind(resources, "Kafka")
    return f"{kafka['metadata']['name']}-cluster-ca-cert"


def generated_secrets(resources: list[dict]) -> dict[str, set[str]]:
    """The Secrets operators create: CloudNativePG's <cluster>-app for each Cluster;
    Strimzi's <kafka>-cluster-ca-cert, and one per KafkaUser, named after it."""
    secrets = {
        f"{cluster['metadata']['name']}-app": CNPG_APP_SECRET_KEYS
        for cluster in of_kind(resources, "Cluster")
    }
    secrets[cluster_ca_secret(resources)] = STRIMZI_CA_CERT_SECRET_KEYS
    for user in of_kind(resources, "KafkaUser"):
        secrets[user["metadata"]["name"]] = STRIMZI_SCRAM_USER_SECRET_KEYS
    return secrets


@cache
def generator():
    spec = importlib.util.spec_from_file_location("generate_topics", K8S / "generate_topics.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@cache
def cached_schema_contents(filename: str, desired_version: str):
    return kubernetes_validate.utils._uncached_schema_contents(filename, desired_version)


@pytest.fixture(scope="module", autouse=True)
def schema_cache():
    """kubernetes-validate reads its (1.4 MB) definitions file for every resource; read
    each file once. The validation itself is unchanged."""
    if MISSING:
        yield
        return
    utils = kubernetes_validate.utils
    utils._uncached_schema_contents = utils.schema_contents
    utils.schema_contents = cached_schema_contents
    try:
        yield
    finally:
        utils.schema_contents = utils._uncached_schema_contents


# --- the render and kubernetes-validate ------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_core_resource_validates_strictly(overlay):
    resources = overlay_resources(overlay)
    versions = (OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version())
    core = [r for r in resources if r["apiVersion"] in CORE_API_VERSIONS]
    assert {r["kind"] for r in core} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "ServiceAccount",
        "NetworkPolicy",
    }
    problems = []
    for resource in core:
        for version in versions:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.utils.ValidationError as error:
                where = ".".join(map(str, error.path))
                problems.append(f"{identity(resource)} on {version}: {where}: {error.message}")
    assert not problems, f"{overlay}:\n" + "\n".join(problems)


def test_secret_templates_validate_strictly_and_are_not_rendered():
    documents = load_documents(K8S / "secrets" / "keys.template.yaml")
    documents += load_documents(K8S / "secrets" / "trust-anchors.template.yaml")
    for document in documents:
        kubernetes_validate.validate(document, OLDEST_KUBERNETES, strict=True)
    for overlay in OVERLAYS:
        assert not of_kind(overlay_resources(overlay), "Secret"), (
            "Secrets are created by hand (README), never applied from the kustomization: "
            "an apply would overwrite the real keys"
        )
        rendered_maps = {
            m["metadata"]["name"] for m in of_kind(overlay_resources(overlay), "ConfigMap")
        }
        assert not rendered_maps & set(config_map_templates()), (
            "the trust anchors are created by hand: an apply would replace them"
        )


def test_the_templates_hold_nothing_a_service_would_load(tmp_path):
    """A template applied by mistake leaves the services refusing to start, not trusting
    a placeholder; and the anchors template has the fields load_anchors reads."""
    signing = {
        name: doc
        for doc in load_documents(K8S / "secrets" / "keys.template.yaml")
        if (name := doc["metadata"]["name"]).endswith("-signing")
    }
    assert set(signing) == {f"onett-{service}-signing" for service in SERVICES}
    for name, doc in signing.items():
        path = tmp_path / f"{name}.key"
        path.write_text(doc["stringData"]["signing.key"])
        with pytest.raises(ValueError):
            Signer.from_file(path)
    [anchors] = load_documents(K8S / "secrets" / "trust-anchors.template.yaml")
    path = tmp_path / "trust-anchors.json"
    path.write_text(anchors["data"]["trust-anchors.json"])
    [record] = json.loads(path.read_text())
    real = anchor_record(Signer.generate().entry("admin", datetime.now(UTC)))
    assert set(record) == set(real) and record["party"] == "admin"
    with pytest.raises(ValueError):
        load_anchors(path)


def test_every_resource_is_namespaced_by_the_overlay_and_nothing_else_sets_one():
    for overlay in OVERLAYS:
        resources = overlay_resources(overlay)
        namespaces = {r["metadata"]["namespace"] for r in resources}
        assert len(namespaces) == 1, namespaces
    raw = [d for path in K8S.rglob("*.yaml") for d in load_documents(path)]
    assert not [d for d in raw if "namespace" in d.get("metadata", {})]


# --- the platform's rules for every container ------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down(overlay):
    for deployment, pod, container in containers(overlay_resources(overlay)):
        where = f"{overlay} {deployment['metadata']['name']}/{container['name']}"
        pod_context = pod["securityContext"]
        assert pod_context["runAsNonRoot"] is True, where
        assert pod_context["runAsUser"] == dockerfile_uid() != 0, where
        assert pod_context["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert "privileged" not in context, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_probes(overlay):
    for deployment, _, container in containers(overlay_resources(overlay)):
        where = f"{overlay} {deployment['metadata']['name']}/{container['name']}"
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            assert 0 < request <= quantity(resources["limits"][resource]), (where, resource)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert probe in container, (where, probe)
            kinds = set(container[probe]) & {"grpc", "httpGet", "exec", "tcpSocket"}
            assert len(kinds) == 1, (where, probe)
            assert container[probe].get("timeoutSeconds", 1) < container[probe].get(
                "periodSeconds", 10
            ), (where, probe)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scratch_volumes_fit_the_ephemeral_storage_limit(overlay):
    """emptyDirs count against the pod's ephemeral storage: past the limit, it is evicted."""
    for deployment, pod, container in containers(overlay_resources(overlay)):
        scratch = sum(
            quantity(v["emptyDir"]["sizeLimit"]) for v in pod["volumes"] if "emptyDir" in v
        )
        limit = quantity(container["resources"]["limits"]["ephemeral-storage"])
        assert scratch < limit, (overlay, deployment["metadata"]["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_services_health_endpoints(overlay):
    expected = {
        "ingest": "grpc",
        "preprocess": "exec",
        "ledger": "exec",
        "payout": "httpGet",
    }
    for deployment, _, container in containers(overlay_resources(overlay)):
        name = deployment["metadata"]["name"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container[probe_name]
            assert expected[name] in probe, (name, probe_name)
            if "grpc" in probe:
                assert probe["grpc"]["port"] in ports.values()
            if "httpGet" in probe:
                assert probe["httpGet"]["port"] in ports
                want = "/readyz" if probe_name == "readinessProbe" else "/healthz"
                assert probe["httpGet"]["path"] == want
            if "exec" in probe:
                command = probe["exec"]["command"]
                assert command[:5] == ["python", "-m", "services.cli.main", "admin", "health"]
                assert command[command.index("--service") + 1] == name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_listen_addresses_match_the_declared_ports(overlay):
    resources = overlay_resources(overlay)
    data = config_data(resources)
    for variable, service in (("TT_INGEST_ADDRESS", "ingest"), ("TT_PAYOUT_ADDRESS", "payout")):
        host, _, port = data[variable].rpartition(":")
        assert host == "0.0.0.0", variable
        container = named(resources, "Deployment", service)["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert int(port) in [p["containerPort"] for p in container["ports"]]


# --- references resolve ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_config_map_and_secret_reference_resolves(overlay):
    resources = overlay_resources(overlay)
    config_maps = {r["metadata"]["name"]: set(r["data"]) for r in of_kind(resources, "ConfigMap")}
    config_maps |= config_map_templates()
    secrets = {**secret_templates(), **generated_secrets(resources)}
    claims = {r["metadata"]["name"] for r in of_kind(resources, "PersistentVolumeClaim")}
    accounts = {r["metadata"]["name"] for r in of_kind(resources, "ServiceAccount")}
    for deployment, pod, container in containers(resources):
        where = f"{overlay} {deployment['metadata']['name']}"
        assert pod["serviceAccountName"] in accounts, where
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps, where
        for variable in container.get("env", []):
            source = variable.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                assert ref["key"] in secrets.get(ref["name"], set()), (where, ref)
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                assert ref["key"] in config_maps.get(ref["name"], set()), (where, ref)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, (where, mount)
        for volume in volumes.values():
            if "secret" in volume:
                keys = {item["key"] for item in volume["secret"]["items"]}
                assert keys <= secrets.get(volume["secret"]["secretName"], set()), where
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, where
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    keys = {item["key"] for item in source["secret"]["items"]}
                    assert keys <= secrets.get(source["secret"]["name"], set()), (where, source)
                if "configMap" in source:
                    keys = {item["key"] for item in source["configMap"]["items"]}
                    assert keys <= config_maps.get(source["configMap"]["name"], set()), (
                        where,
                        source,
                    )
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_budgets_and_policies_select_pods_that_exist(overlay):
    resources = overlay_resources(overlay)
    pods = [
        (d["spec"]["template"]["metadata"]["labels"], d["spec"]["template"]["spec"])
        for d in of_kind(resources, "Deployment")
    ]
    for deployment in of_kind(resources, "Deployment"):
        assert selects(
            deployment["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]
        )
    for service in of_kind(resources, "Service"):
        targets = [
            spec
            for labels, spec in pods
            if selects({"matchLabels": service["spec"]["selector"]}, labels)
        ]
        assert targets, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            declared = {
                p.get("name")
                for spec in targets
                for c in spec["containers"]
                for p in c.get("ports", [])
            }
            assert port["targetPort"] in declared, (service["metadata"]["name"], port)
    for budget in of_kind(resources, "PodDisruptionBudget"):
        assert any(selects(budget["spec"]["selector"], labels) for labels, _ in pods)
    for policy in of_kind(resources, "NetworkPolicy"):
        assert any(selects(policy["spec"]["podSelector"], labels) for labels, _ in pods)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_files_the_services_read_are_mounted_where_the_config_points(overlay):
    """Every key file and data directory a service's main.py reads is configured, and the
    path lies in a volume of the right kind in that service's pod."""
    resources = overlay_resources(overlay)
    data = config_data(resources)
    for deployment, pod, container in containers(resources):
        name = deployment["metadata"]["name"]
        source = (REPO_ROOT / "services" / name / "main.py").read_text()
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}

        def volume_at(path: str, name=name, volumes=volumes, mounts=mounts):
            parent = max((m for m in mounts if path.startswith(m + "/") or path == m), key=len)
            return volumes[mounts[parent]["name"]], mounts[parent], path[len(parent) + 1 :]

        for variable in sorted(set(re.findall(r"TT_[A-Z_]+_KEY_FILE", source))):
            volume, _, item = volume_at(data[variable])
            assert item in [i["path"] for i in volume["secret"]["items"]], (name, variable)
        if "TT_BLOB_ROOT" in source:
            volume, mount, _ = volume_at(data["TT_BLOB_ROOT"])
            assert volume["persistentVolumeClaim"]["claimName"] == "onett-blobs", name
            assert mount.get("readOnly", False) == (name == "payout"), name
        if "TT_PREPROCESS_DATADIR" in source:
            assert "emptyDir" in volume_at(data["TT_PREPROCESS_DATADIR"])[0], name
        for writable in (data["TT_RUN_DIR"], "/tmp"):
            assert "emptyDir" in volume_at(writable)[0], (name, writable)


def mounted_file(pod: dict, container: dict, path: str) -> tuple[str, str, str, int, bool]:
    """Where the file at `path` in the container comes from: (kind, name, key) of the
    Secret or ConfigMap, its mode, and whether its mount is read-only."""
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    parents = [m for m in mounts if path.startswith(m.rstrip("/") + "/")]
    assert parents, f"nothing is mounted above {path}"
    mount = mounts[max(parents, key=len)]
    item_path = path[len(mount["mountPath"].rstrip("/")) + 1 :]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    # (kind, name, items, the mode of an item that sets none), for each source of files.
    if "projected" in volume:
        default_mode = volume["projected"].get("defaultMode", 0o644)
        sources = [
            (kind, source[field]["name"], source[field].get("items", []), default_mode)
            for source in volume["projected"]["sources"]
            for kind, field in (("Secret", "secret"), ("ConfigMap", "configMap"))
            if field in source
        ]
    elif "secret" in volume:
        secret = volume["secret"]
        sources = [
            (
                "Secret",
                secret["secretName"],
                secret.get("items", []),
                secret.get("defaultMode", 0o644),
            )
        ]
    elif "configMap" in volume:
        config_map = volume["configMap"]
        sources = [
            (
                "ConfigMap",
                config_map["name"],
                config_map.get("items", []),
                config_map.get("defaultMode", 0o644),
            )
        ]
    else:
        raise AssertionError(f"{path}: {mount['name']} is not a Secret or ConfigMap volume")
    for kind, name, items, default_mode in sources:
        for item in items:
            if item["path"] == item_path:
                mode = item.get("mode", default_mode)
                return kind, name, item["key"], mode, mount.get("readOnly", False)
    raise AssertionError(f"{path}: no Secret or ConfigMap item is mounted there")


def referenced_secrets(pod: dict, container: dict) -> set[str]:
    """Every Secret a container's pod reads: env, envFrom and volumes."""
    names = {
        v["valueFrom"]["secretKeyRef"]["name"]
        for v in container.get("env", [])
        if "secretKeyRef" in v.get("valueFrom", {})
    }
    names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_reaches_kafka_and_signs_as_its_own_party(overlay):
    """The files the service's Settings read (the same code the service runs) are mounted
    read-only, 0440 or 0400, from the right source: the password from Strimzi's Secret of
    the party's own KafkaUser, the CA from Strimzi's cluster CA, the signing key from the
    party's own Secret, the anchors from their ConfigMap."""
    resources = overlay_resources(overlay)
    data = config_data(resources)
    users = kafka_users(resources)
    for deployment, pod, container in containers(resources):
        party = deployment["metadata"]["name"]
        env = {**data, **{v["name"]: v["value"] for v in container["env"] if "value" in v}}
        settings = Settings.from_env(env)
        assert settings.party == party, f"{party}: TT_PARTY"
        assert settings.kafka_username == users[party]["metadata"]["name"], party
        assert settings.kafka_ca_file is not None, f"{party}: TLS to the broker"
        expected = {
            settings.kafka_password_file: ("Secret", settings.kafka_username, "password"),
            settings.kafka_ca_file: ("Secret", cluster_ca_secret(resources), "ca.crt"),
            settings.signing_key_file: ("Secret", f"onett-{party}-signing", "signing.key"),
            settings.trust_anchors_file: (
                "ConfigMap",
                "onett-trust-anchors",
                "trust-anchors.json",
            ),
        }
        for path, source in expected.items():
            kind, name, key, mode, read_only = mounted_file(pod, container, str(path))
            assert (kind, name, key) == source, (party, str(path))
            assert mode in (0o440, 0o400), (party, str(path), oct(mode))
            assert read_only, (party, str(path))
        # 0440 files are readable through the pod's group, the image's non-root group.
        context = pod["securityContext"]
        assert context["fsGroup"] == context["runAsGroup"] == dockerfile_uid(), party


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_deployment_reads_only_its_own_secrets(overlay):
    resources = overlay_resources(overlay)
    for deployment, pod, container in containers(resources):
        party = deployment["metadata"]["name"]
        own = {
            f"onett-{party}-keys",
            f"onett-{party}-signing",
            f"onett-pg-{party}",
            generator().kafka_user_name(party),
            cluster_ca_secret(resources),  # a certificate, the same for every client
        }
        foreign = referenced_secrets(pod, container) - own
        assert not foreign, f"{overlay} {party} reads Secrets of others: {sorted(foreign)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_configured_variable_is_read_by_the_code(overlay):
    code = "\n".join(p.read_text() for p in (REPO_ROOT / "services").rglob("*.py"))
    unread = [key for key in config_data(overlay_resources(overlay)) if f'"{key}"' not in code]
    assert not unread, f"onett-config sets variables no service reads: {unread}"


# --- topics: generated, complete, and in line with the configuration -------------------


def test_committed_kafka_topics_equal_the_generators_output():
    require_tools()
    module = generator()
    for overlay in OVERLAYS:
        committed = module.topics_path(overlay).read_text()
        assert committed == module.render(overlay), (
            f"deploy/k8s/overlays/{overlay}/kafka-topics.yaml is out of date: run "
            "`make k8s-topics` (deploy/k8s/generate_topics.py) and commit the result"
        )


def test_committed_kafka_users_equal_the_generators_output():
    require_tools()
    module = generator()
    for overlay in OVERLAYS:
        committed = module.users_path(overlay).read_text()
        assert committed == module.render_users(overlay), (
            f"deploy/k8s/overlays/{overlay}/kafka-users.yaml is out of date: run "
            "`make k8s-topics` (deploy/k8s/generate_topics.py) and commit the result"
        )


# Strimzi's AclRule words (kafka.strimzi.io/v1beta2), read back into the ACL table's.
STRIMZI_RESOURCE_TYPES = {"topic": "topic", "group": "group"}
STRIMZI_PATTERN_TYPES = {"literal": "literal", "prefix": "prefixed"}
STRIMZI_OPERATIONS = {
    "Read": "read",
    "Write": "write",
    "Create": "create",
    "Describe": "describe",
    "DescribeConfigs": "describe_configs",
    "AlterConfigs": "alter_configs",
}


def acl_entries_of(user: dict) -> Counter:
    """What a KafkaUser's ACLs allow, as the ACL table writes it (with multiplicity, so a
    rule granted twice shows)."""
    entries: Counter = Counter()
    for rule in user["spec"]["authorization"]["acls"]:
        assert (rule["host"], rule["type"]) == ("*", "allow"), rule
        resource = rule["resource"]
        for operation in rule["operations"]:
            entries[
                AclEntry(
                    STRIMZI_RESOURCE_TYPES[resource["type"]],
                    resource["name"],
                    STRIMZI_PATTERN_TYPES[resource["patternType"]],
                    STRIMZI_OPERATIONS[operation],
                )
            ] += 1
    return entries


def kafka_users(resources: list[dict]) -> dict[str, dict]:
    """The overlay's KafkaUsers, by the party each is for."""
    users = {
        u["metadata"]["labels"]["app.kubernetes.io/name"]: u
        for u in of_kind(resources, "KafkaUser")
    }
    assert len(users) == len(of_kind(resources, "KafkaUser")), "one KafkaUser per party"
    return users


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_partys_kafka_user_has_exactly_the_acl_tables_rules(overlay):
    """The k8s ACLs are the local stack's: TopicRegistry.acl_entries(party) under the
    overlay's prefix, nothing more, nothing less; every party but the per-principal
    consumers has a KafkaUser, and the operator's tool is a super user without ACLs."""
    resources = overlay_resources(overlay)
    registry = Settings.from_env(config_data(resources)).topic_registry()
    [kafka] = of_kind(resources, "Kafka")
    users = kafka_users(resources)
    assert set(users) == set(PARTIES) - {"consumer"}
    super_users = kafka["spec"]["kafka"]["authorization"]["superUsers"]
    for party, user in users.items():
        name = user["metadata"]["name"]
        assert name == generator().kafka_user_name(party) == f"onett-{party}"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        # Strimzi makes the password (no fixed one in the repository).
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}, name
        if party == "admin":
            assert "authorization" not in user["spec"] and name in super_users
            continue
        assert name not in super_users
        assert user["spec"]["authorization"]["type"] == "simple"
        assert acl_entries_of(user) == Counter(registry.acl_entries(party)), name


def test_kafka_users_take_the_overlays_topic_prefix():
    module = generator()
    registry = Settings.from_env({"TT_TOPIC_PREFIX": "staging."}).topic_registry()
    for party in ("ledger", "preprocess", "auditor"):
        user = module.kafka_user(party, {"TT_TOPIC_PREFIX": "staging."}, "onett")
        entries = acl_entries_of(user)
        assert entries == Counter(registry.acl_entries(party))
        assert all(entry.name.startswith("staging.") for entry in entries), party


def test_a_data_consumers_kafka_user_is_the_admin_tools_user_with_its_password():
    """`1tt admin add-principal --role consumer` makes the Kafka user consumer-<id> through
    the Admin API; Strimzi's User Operator deletes users it has no KafkaUser for, so the
    generator prints one of that name, with the consumer's rules, taking its password
    from a Secret (the one in the consumer's credentials folder)."""
    require_tools()
    principal_id = "6f1c2b8e-4d3a-4b8e-9f00-1a2b3c4d5e6f"
    for overlay in OVERLAYS:
        [user] = yaml.safe_load_all(generator().render_consumer(overlay, principal_id))
        name = f"{CONSUMER_USER_PREFIX}{principal_id}"
        assert user["metadata"]["name"] == name
        assert user["spec"]["authentication"] == {
            "type": "scram-sha-512",
            "password": {
                "valueFrom": {"secretKeyRef": {"name": f"{name}-password", "key": "password"}}
            },
        }
        registry = Settings.from_env(config_data(overlay_resources(overlay))).topic_registry()
        assert acl_entries_of(user) == Counter(registry.acl_entries("consumer"))
        errors = list(
            jsonschema.Draft202012Validator(CUSTOM_RESOURCE_SCHEMAS["KafkaUser"]).iter_errors(user)
        )
        assert not errors, [e.message for e in errors]
    with pytest.raises(SystemExit, match="not a Kubernetes name"):
        generator().kafka_user_name(f"{CONSUMER_USER_PREFIX}Not_A_Name")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_registry_topic_has_a_kafka_topic_with_its_settings(overlay):
    resources = overlay_resources(overlay)
    data = config_data(resources)
    registry = Settings.from_env(data).topic_registry()
    topics = {t["spec"]["topicName"]: t for t in of_kind(resources, "KafkaTopic")}
    for spec in registry.specs():
        topic = topics[spec.name]["spec"]
        assert (topic["partitions"], topic["replicas"]) == (
            spec.partitions,
            spec.replication_factor,
        ), spec.name
        assert topic["config"] == dict(spec.configs), spec.name
    for topic in topics.values():
        assert topic["spec"]["replicas"] == int(data["TT_TOPIC_REPLICATION_FACTOR"])
        assert (
            topic["spec"]["config"]["min.insync.replicas"] == data["TT_TOPIC_MIN_INSYNC_REPLICAS"]
        )


def test_prod_keeps_facts_forever_on_three_replicas_two_in_sync():
    resources = overlay_resources("prod")
    registry = Settings.from_env(config_data(resources)).topic_registry()
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(resources, "KafkaTopic")}
    for spec in registry.specs():
        topic = topics[spec.name]
        assert topic["replicas"] == 3, spec.name
        assert topic["config"]["min.insync.replicas"] == "2", spec.name
        assert topic["config"]["retention.ms"] == "-1", spec.name
        assert topic["config"]["retention.bytes"] == "-1", spec.name
        assert topic["config"]["cleanup.policy"] == "delete", spec.name
        assert topic["config"]["unclean.leader.election.enable"] == "false", spec.name
    kafka = named(resources, "Kafka", "onett")["spec"]["kafka"]["config"]
    assert (kafka["default.replication.factor"], kafka["min.insync.replicas"]) == (3, 2)
    brokers = [p for p in of_kind(resources, "KafkaNodePool") if "broker" in p["spec"]["roles"]]
    assert sum(p["spec"]["replicas"] for p in brokers) >= 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_preprocess_replicas_fit_its_partitions_and_the_ledger_is_one_writer(overlay):
    resources = overlay_resources(overlay)
    data = config_data(resources)
    settings = Settings.from_env(data)
    app_id = PreprocessSettings.from_env(settings, data).app_id
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(resources, "KafkaTopic")}
    claims = topics[f"{app_id}-claims"]
    assert claims["partitions"] == int(data["TT_PREPROCESS_SHARDS"])
    assert topics[f"{app_id}-sequence"]["partitions"] == 1
    replicas = named(resources, "Deployment", "preprocess")["spec"]["replicas"]
    assert 1 <= replicas <= claims["partitions"]
    for service in SINGLE_ACTIVE:
        assert named(resources, "Deployment", service)["spec"]["replicas"] == 1, service
    # A pipeline process per CPU of the limit: os.cpu_count() in a pod sees the node.
    container = named(resources, "Deployment", "preprocess")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert int(data["TT_PREPROCESS_WORKERS"]) <= quantity(container["resources"]["limits"]["cpu"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_cluster_matches_the_configuration(overlay):
    resources = overlay_resources(overlay)
    data = config_data(resources)
    [kafka] = of_kind(resources, "Kafka")
    name = kafka["metadata"]["name"]
    config = kafka["spec"]["kafka"]["config"]
    replication = int(data["TT_TOPIC_REPLICATION_FACTOR"])
    assert config["default.replication.factor"] == replication
    assert config["offsets.topic.replication.factor"] == replication
    assert config["transaction.state.log.replication.factor"] == replication
    assert config["min.insync.replicas"] == int(data["TT_TOPIC_MIN_INSYNC_REPLICAS"])
    assert config["auto.create.topics.enable"] is False
    assert config["unclean.leader.election.enable"] is False
    pom = (REPO_ROOT / "deploy" / "local" / "kafka" / "pom.xml").read_text()
    assert kafka["spec"]["kafka"]["version"] == re.search(
        r"<kafka.version>(.+?)</kafka.version>", pom
    ).group(1), "the cluster runs the Kafka version the local stack and the tests run"
    pools = of_kind(resources, "KafkaNodePool")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert brokers >= replication and controllers % 2 == 1
    for resource in pools + of_kind(resources, "KafkaTopic") + of_kind(resources, "KafkaUser"):
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_accepts_only_authenticated_clients_over_tls_with_acls(overlay):
    """No listener without TLS and a password; the StandardAuthorizer denies what no ACL
    allows; the only super user besides Strimzi's components is the operator's tool."""
    resources = overlay_resources(overlay)
    [kafka] = of_kind(resources, "Kafka")
    spec = kafka["spec"]["kafka"]
    for listener in spec["listeners"]:
        assert listener["tls"] is True, listener["name"]
        assert listener["authentication"] == {"type": "scram-sha-512"}, listener["name"]
        assert listener["networkPolicyPeers"] == [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "onett"}}}
        ], listener["name"]
    assert spec["authorization"] == {
        "type": "simple",
        "superUsers": [generator().kafka_user_name("admin")],
    }
    assert spec["config"]["allow.everyone.if.no.acl.found"] is False
    assert "userOperator" in kafka["spec"]["entityOperator"], "KafkaUsers need it"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_bootstrap_is_the_tls_listener(overlay):
    resources = overlay_resources(overlay)
    [kafka] = of_kind(resources, "Kafka")
    [listener] = kafka["spec"]["kafka"]["listeners"]
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    assert config_data(resources)["TT_KAFKA_BOOTSTRAP"] == bootstrap
    assert listener["tls"] is True
    settings = Settings.from_env(config_data(resources))
    assert settings.kafka_ca_file is not None, "the services speak TLS (TT_KAFKA_TLS)"


# --- custom resources, structurally ----------------------------------------------------

QUANTITY_SCHEMA = {
    "anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"^[0-9.]+[a-zA-Z]*$"}]
}
RESOURCES_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": QUANTITY_SCHEMA},
        "limits": {"type": "object", "additionalProperties": QUANTITY_SCHEMA},
    },
}
LABELLED_METADATA = {
    "type": "object",
    "required": ["name", "labels"],
    "properties": {
        "name": {"type": "string", "pattern": DNS_SUBDOMAIN.pattern},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


# Cluster.spec.managed.roles[] (CloudNativePG's RoleConfiguration), the fields used here.
CNPG_ROLE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "ensure": {"enum": ["present", "absent"]},
        "comment": {"type": "string"},
        "login": {"type": "boolean"},
        "superuser": {"type": "boolean"},
        "createdb": {"type": "boolean"},
        "createrole": {"type": "boolean"},
        "replication": {"type": "boolean"},
        "bypassrls": {"type": "boolean"},
        "inherit": {"type": "boolean"},
        "passwordSecret": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
    },
}


def custom_resource(api_version: str, kind: str, spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": LABELLED_METADATA,
            "spec": spec,
        },
    }


# The parts of the CRD schemas (Strimzi 0.4x kafka.strimzi.io/v1beta2, CloudNativePG
# postgresql.cnpg.io/v1) that these manifests use, with their types and enums.
CUSTOM_RESOURCE_SCHEMAS = {
    "KafkaTopic": custom_resource(
        "kafka.strimzi.io/v1beta2",
        "KafkaTopic",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["topicName", "partitions", "replicas", "config"],
            "properties": {
                "topicName": {"type": "string", "minLength": 1},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    ),
    "KafkaNodePool": custom_resource(
        "kafka.strimzi.io/v1beta2",
        "KafkaNodePool",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["replicas", "roles", "storage"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "roles": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"enum": ["controller", "broker"]},
                },
                "storage": {
                    "type": "object",
                    "required": ["type", "volumes"],
                    "properties": {
                        "type": {"const": "jbod"},
                        "volumes": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["id", "type", "size"],
                                "properties": {
                                    "id": {"type": "integer", "minimum": 0},
                                    "type": {"enum": ["persistent-claim", "ephemeral"]},
                                    "size": {"type": "string"},
                                    "class": {"type": "string"},
                                    "deleteClaim": {"type": "boolean"},
                                    "kraftMetadata": {"const": "shared"},
                                },
                            },
                        },
                    },
                },
                "resources": RESOURCES_SCHEMA,
                "jvmOptions": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "-Xms": {"type": "string", "pattern": "^[0-9]+[mMgG]?$"},
                        "-Xmx": {"type": "string", "pattern": "^[0-9]+[mMgG]?$"},
                    },
                },
            },
        },
    ),
    "Kafka": custom_resource(
        "kafka.strimzi.io/v1beta2",
        "Kafka",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["kafka", "entityOperator"],
            "properties": {
                "kafka": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["listeners", "version"],
                    "properties": {
                        "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                        "listeners": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name", "port", "type", "tls"],
                                "properties": {
                                    "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
                                    "port": {"type": "integer", "minimum": 9092},
                                    "type": {
                                        "enum": [
                                            "internal",
                                            "route",
                                            "loadbalancer",
                                            "nodeport",
                                            "ingress",
                                            "cluster-ip",
                                        ]
                                    },
                                    "tls": {"type": "boolean"},
                                    "authentication": {
                                        "type": "object",
                                        "required": ["type"],
                                        "properties": {
                                            "type": {
                                                "enum": [
                                                    "tls",
                                                    "scram-sha-512",
                                                    "oauth",
                                                    "custom",
                                                ]
                                            }
                                        },
                                    },
                                    "networkPolicyPeers": {"type": "array"},
                                },
                            },
                        },
                        "authorization": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["type"],
                            "properties": {
                                "type": {"enum": ["simple", "opa", "keycloak", "custom"]},
                                "superUsers": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "config": {"type": "object"},
                    },
                },
                "entityOperator": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["topicOperator", "userOperator"],
                    "properties": {
                        "topicOperator": {
                            "type": "object",
                            "properties": {"resources": RESOURCES_SCHEMA},
                        },
                        "userOperator": {
                            "type": "object",
                            "properties": {"resources": RESOURCES_SCHEMA},
                        },
                    },
                },
            },
        },
    ),
    "KafkaUser": custom_resource(
        "kafka.strimzi.io/v1beta2",
        "KafkaUser",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["authentication"],
            "properties": {
                "authentication": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": ["tls", "tls-external", "scram-sha-512"]},
                        "password": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["valueFrom"],
                            "properties": {
                                "valueFrom": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["secretKeyRef"],
                                    "properties": {
                                        "secretKeyRef": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "required": ["name", "key"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "key": {"type": "string"},
                                            },
                                        }
                                    },
                                }
                            },
                        },
                    },
                },
                "authorization": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type", "acls"],
                    "properties": {
                        "type": {"const": "simple"},
                        "acls": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["resource", "operations"],
                                "properties": {
                                    "resource": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["type"],
                                        "properties": {
                                            "type": {
                                                "enum": [
                                                    "topic",
                                                    "group",
                                                    "cluster",
                                                    "transactionalId",
                                                ]
                                            },
                                            "name": {"type": "string"},
                                            "patternType": {"enum": ["literal", "prefix"]},
                                        },
                                    },
                                    "operations": {
                                        "type": "array",
                                        "minItems": 1,
                                        "uniqueItems": True,
                                        "items": {
                                            "enum": [
                                                "Read",
                                                "Write",
                                                "Create",
                                                "Delete",
                                                "Alter",
                                                "Describe",
                                                "ClusterAction",
                                                "AlterConfigs",
                                                "DescribeConfigs",
                                                "IdempotentWrite",
                                                "All",
                                            ]
                                        },
                                    },
                                    "host": {"type": "string"},
                                    "type": {"enum": ["allow", "deny"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    ),
    "Cluster": custom_resource(
        "postgresql.cnpg.io/v1",
        "Cluster",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["instances", "bootstrap", "storage"],
            "properties": {
                "instances": {"type": "integer", "minimum": 1},
                "imageName": {"type": "string"},
                "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
                "enableSuperuserAccess": {"type": "boolean"},
                "managed": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"roles": {"type": "array", "items": CNPG_ROLE_SCHEMA}},
                },
                "bootstrap": {
                    "type": "object",
                    "required": ["initdb"],
                    "properties": {
                        "initdb": {
                            "type": "object",
                            "required": ["database", "owner"],
                            "properties": {
                                "database": {"type": "string"},
                                "owner": {"type": "string"},
                            },
                        }
                    },
                },
                "postgresql": {
                    "type": "object",
                    "properties": {
                        # CloudNativePG takes every parameter as a string.
                        "parameters": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "pg_hba": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "storage": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {"size": {"type": "string"}, "storageClass": {"type": "string"}},
                },
                "resources": RESOURCES_SCHEMA,
            },
        },
    ),
    "Database": custom_resource(
        "postgresql.cnpg.io/v1",
        "Database",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["cluster", "name", "owner"],
            "properties": {
                "cluster": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
                "name": {"type": "string", "not": {"enum": ["postgres", "template0", "template1"]}},
                "owner": {"type": "string"},
                "ensure": {"enum": ["present", "absent"]},
                "schemas": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "owner": {"type": "string"},
                            "ensure": {"enum": ["present", "absent"]},
                        },
                    },
                },
            },
        },
    ),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_are_structurally_valid(overlay):
    resources = overlay_resources(overlay)
    custom = [r for r in resources if r["apiVersion"] not in CORE_API_VERSIONS]
    assert {r["kind"] for r in custom} == set(CUSTOM_RESOURCE_SCHEMAS)
    for resource in custom:
        resource = {**resource, "metadata": dict(resource["metadata"])}
        resource["metadata"].pop("namespace")
        errors = sorted(
            jsonschema.Draft202012Validator(CUSTOM_RESOURCE_SCHEMAS[resource["kind"]]).iter_errors(
                resource
            ),
            key=str,
        )
        assert not errors, f"{overlay} {identity(resource)}: " + "; ".join(
            f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_postgres_has_the_local_stacks_roles_and_schemas_and_no_superuser_access(overlay):
    """The roles and schemas CloudNativePG makes are the ones `make up` makes locally: both
    come from the table in services/common/pgroles.py."""
    resources = overlay_resources(overlay)
    [cluster] = of_kind(resources, "Cluster")
    spec = cluster["spec"]
    assert spec["enableSuperuserAccess"] is False
    assert spec["managed"]["roles"] == pgroles.cnpg_managed_roles()
    [database] = of_kind(resources, "Database")
    assert database["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert database["spec"]["name"] == spec["bootstrap"]["initdb"]["database"]
    assert database["spec"]["schemas"] == pgroles.cnpg_schemas()
    assert spec["postgresql"]["parameters"]["password_encryption"] == "scram-sha-256"
    # Every rule CloudNativePG adds after its own: TLS with SCRAM-SHA-256, then refuse.
    assert spec["postgresql"]["pg_hba"] == [
        "hostssl all all all scram-sha-256",
        "host all all all reject",
    ]


def test_each_roles_password_secret_is_templated_with_its_role_name():
    templates = {
        doc["metadata"]["name"]: doc
        for doc in load_documents(K8S / "secrets" / "keys.template.yaml")
    }
    for role in pgroles.cnpg_managed_roles():
        secret = templates[role["passwordSecret"]["name"]]
        assert secret["type"] == "kubernetes.io/basic-auth", role["name"]
        assert secret["stringData"]["username"] == role["name"]
        assert secret["stringData"]["password"] == "", "a template holds no usable password"
        assert secret["metadata"]["labels"]["cnpg.io/reload"] == "true"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_logs_in_to_postgres_as_its_own_role(overlay):
    resources = overlay_resources(overlay)
    url = urlsplit(config_data(resources)["TT_DATABASE_URL"])
    assert url.username is None and url.password is None, "the URL says where, not who"
    [cluster] = of_kind(resources, "Cluster")
    assert url.hostname == f"{cluster['metadata']['name']}-rw"
    assert url.path == "/" + cluster["spec"]["bootstrap"]["initdb"]["database"]
    uses_database = set()
    for deployment, _, container in containers(resources):
        name = deployment["metadata"]["name"]
        env = {v["name"]: v for v in container.get("env", [])}
        assert "TT_DATABASE_URL" not in env, f"{name}: the URL comes from onett-config"
        if "PGPASSWORD" not in env:
            continue
        uses_database.add(name)
        assert env["TT_PARTY"]["value"] == name
        assert pgroles.role_of(name).owns == name
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": pgroles.cnpg_secret_name(pgroles.role_of(name)),
            "key": "password",
        }
    # Preprocess never touches PostgreSQL; it does not get a password either.
    assert uses_database == {"ingest", "ledger", "payout"}
    for _, _, container in containers(resources):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef", {})
            assert ref.get("name") != f"{cluster['metadata']['name']}-app", "the owner's Secret"


# --- the image -------------------------------------------------------------------------


@cache
def dockerfile() -> str:
    return (REPO_ROOT / "Dockerfile").read_text()


def dockerfile_uid() -> int:
    users = re.findall(r"^USER (\d+)(?::\d+)?$", dockerfile(), re.MULTILINE)
    assert len(users) == 1, "one numeric USER, in the runtime stage"
    return int(users[0])


def test_the_dockerfile_builds_what_the_makefile_builds():
    text = dockerfile()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages == ["builder", "runtime"], "the last stage is the image the manifests run"
    assert 'ENTRYPOINT ["python", "-m"]' in text
    assert "requirements.lock" in text
    makefile = (REPO_ROOT / "Makefile").read_text()
    protoc = re.search(r"\$\(PY\) -m grpc_tools\.protoc (.+?) \$\(PROTO_FILES\)", makefile)
    assert protoc, "the Makefile's proto target"
    assert f"python -m grpc_tools.protoc {protoc.group(1)} $(find proto -name '*.proto')" in text
    assert re.search(r"PYTHONPATH=/app:/app/gen/python", text)
    runtime = text[text.index("AS runtime") :]
    assert text.index(f"USER {dockerfile_uid()}") > text.index("AS runtime")
    assert "COPY --from=builder /src/gen/python" in runtime


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_the_image_and_a_service_module(overlay):
    title = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', dockerfile()).group(1)
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    for deployment, _, container in containers(overlay_resources(overlay)):
        name = deployment["metadata"]["name"]
        repository, _, tag = container["image"].rpartition(":")
        assert repository.rsplit("/", 1)[-1] == title, (name, container["image"])
        assert tag == version, f"{overlay} {name}: tag {tag!r}, pyproject.toml says {version!r}"
        assert "command" not in container, "the image's ENTRYPOINT is `python -m`"
        assert container["args"] == [f"services.{name}.main"]
        assert (REPO_ROOT / "services" / name / "main.py").exists()
    assert {
        d["metadata"]["name"] for d in of_kind(overlay_resources(overlay), "Deployment")
    } == set(SERVICES)
