"""Offline Kubernetes checks for the chart: render with helm-python-sdk, validate every manifest.

Core kinds go through kubernetes-validate (Kubernetes 1.33.0 schemas, strict: unknown fields are errors).
Custom resources go through their CRD's ``openAPIV3Schema`` made strict the way the API server's
structural-schema pruning would treat them: an unknown field is an error unless the schema says
``x-kubernetes-preserve-unknown-fields``. CEL rules (``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "insarcloud"
CRD_DIR = REPO / "tests" / "data" / "crds"
K8S_VERSION = "1.33.0"
# The one lint finding a chart with non-vendored optional operators always has offline: `helm dependency
# build` (network) would fetch them. Every other warning or error fails the strict lint.
MISSING_DEPS = "chart directory is missing these dependencies: dask-kubernetes-operator,kuberay-operator"


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the RayCluster CRD is 0.9 MB


class ManifestError(AssertionError):
    """A rendered manifest does not validate (names the kind/name and the field path)."""


def load_values(path: Path | None) -> dict[str, Any]:
    return {} if path is None else (yaml.safe_load(path.read_text()) or {})


def render(values: dict[str, Any] | None = None, name: str = "demo", namespace: str = "insar") -> list[dict]:
    """Render the chart offline and return every manifest document (NOTES.txt excluded)."""
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(values or {})
        out = chart.render(values=values or {}, name=name, namespace=namespace, is_install=True)
    docs: list[dict] = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def lint(values: dict[str, Any] | None = None) -> list[str]:
    """`helm lint --strict` through the SDK; returns findings other than the missing-dependency one."""
    report = helm_python.lint(CHART, values or {}, strict=True, kube_version=f"v{K8S_VERSION}", namespace="insar")
    return [m["error"] for m in report["messages"] if m["severity"] >= 2 and m["error"] != MISSING_DEPS] + [
        e for e in report["errors"] if e != MISSING_DEPS and e not in {m["error"] for m in report["messages"]}
    ]


# --------------------------------------------------------------------------------------------------
# Custom resources against their CRDs


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Translate a CRD structural schema into JSON Schema where unknown fields are errors."""
    s = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-") and k not in ("nullable", "default")}
    if schema.get("x-kubernetes-int-or-string"):
        s.pop("type", None)
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    props = {k: _strict(v) for k, v in schema.get("properties", {}).items()}
    if schema.get("x-kubernetes-embedded-resource"):
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if props:
        s["properties"] = props
    if isinstance(schema.get("additionalProperties"), dict):
        s["additionalProperties"] = _strict(schema["additionalProperties"])
    elif not preserve and (props or schema.get("type") == "object") and "additionalProperties" not in schema:
        # The API server prunes fields the schema does not name; a chart that relies on them is wrong.
        s["additionalProperties"] = False
    if isinstance(schema.get("items"), dict):
        s["items"] = _strict(schema["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            # Branches of a combinator only constrain; unknown-field pruning is the parent's business.
            s[key] = [{k: v for k, v in _strict(x).items() if k != "additionalProperties"} for x in schema[key]]
    if schema.get("x-kubernetes-int-or-string"):
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return s


_OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
            "maxLength": 253,
        },
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> validator for every CRD in tests/data/crds."""
    out = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=_LOADER)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", False):
                continue
            schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            schema.setdefault("properties", {})
            schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
            schema["properties"]["kind"] = {"const": kind}
            schema["properties"]["metadata"] = _OBJECT_META
            schema["additionalProperties"] = False
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
            out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
            if kind == "RayCluster" and version["name"] == "v1":
                out[("ray.io/v1", "RayJob")] = jsonschema.Draft7Validator(rayjob_schema(schema))
    return out


def rayjob_schema(raycluster: dict[str, Any]) -> dict[str, Any]:
    """A strict schema for KubeRay's RayJob (ray.io/v1) built from the RayCluster CRD.

    The RayJob CRD is not in tests/data/crds (no copy was at hand offline). Its spec fields are written
    here from KubeRay's Go API type (ray-project/kuberay ray-operator/apis/ray/v1/rayjob_types.go, v1.x,
    as documented in KubeRay's RayJob reference); its two embedded objects are validated with the RayCluster
    CRD's own schemas: ``rayClusterSpec`` is a RayClusterSpec (the RayCluster's ``spec``) and
    ``submitterPodTemplate`` is a PodTemplateSpec (the schema of the RayCluster's head ``template``).
    Unknown fields are errors, as for the CRDs.
    """
    cluster_spec = raycluster["properties"]["spec"]
    pod_template = cluster_spec["properties"]["headGroupSpec"]["properties"]["template"]
    int32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
    spec = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "activeDeadlineSeconds": int32,
            "backoffLimit": int32,
            "clusterSelector": {"type": "object", "additionalProperties": {"type": "string"}},
            "deletionStrategy": {"type": "object"},
            "entrypoint": {"type": "string"},
            "entrypointNumCpus": {"type": "number", "minimum": 0},
            "entrypointNumGpus": {"type": "number", "minimum": 0},
            "entrypointResources": {"type": "string"},
            "jobId": {"type": "string"},
            "managedBy": {"type": "string"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "rayClusterSpec": cluster_spec,
            "runtimeEnvYAML": {"type": "string"},
            "shutdownAfterJobFinishes": {"type": "boolean"},
            "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
            "submitterConfig": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"backoffLimit": int32},
            },
            "submitterPodTemplate": pod_template,
            "suspend": {"type": "boolean"},
            "ttlSecondsAfterFinished": int32,
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "ray.io/v1"},
            "kind": {"const": "RayJob"},
            "metadata": _OBJECT_META,
            "spec": spec,
            "status": {"type": "object"},
        },
    }


def _where(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_manifest(doc: dict) -> str:
    """Validate one manifest; returns 'core' or 'crd'. Raises ManifestError naming the field at fault."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    validators = crd_validators()
    if key in validators:
        errors = sorted(validators[key].iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}" for e in errors[:10]]
            raise ManifestError(f"{_where(doc)} does not match its CRD:\n  " + "\n  ".join(lines))
        return "crd"
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise ManifestError(f"{_where(doc)} is not a valid {K8S_VERSION} object: {path}: {exc.message[:300]}") from exc
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise ManifestError(f"{_where(doc)}: no schema for {key} (neither core {K8S_VERSION} nor a known CRD)") from exc
    return "core"


# --------------------------------------------------------------------------------------------------
# Walking rendered objects


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(label, pod spec) for every pod template in a manifest, CRDs included."""
    kind, spec = doc["kind"], doc.get("spec", {})
    name = _where(doc)
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [(name, spec["template"]["spec"])]
    if kind == "DaskCluster":
        return [(f"{name}/scheduler", spec["scheduler"]["spec"]), (f"{name}/worker", spec["worker"]["spec"])]
    if kind in ("RayCluster", "RayJob"):
        cluster = spec["rayClusterSpec"] if kind == "RayJob" else spec
        out = [(f"{name}/head", cluster["headGroupSpec"]["template"]["spec"])]
        out += [(f"{name}/{g['groupName']}", g["template"]["spec"]) for g in cluster.get("workerGroupSpecs", [])]
        if kind == "RayJob" and "submitterPodTemplate" in spec:
            out.append((f"{name}/submitter", spec["submitterPodTemplate"]["spec"]))
        return out
    return []


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]
