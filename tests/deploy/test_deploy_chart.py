"""The helm chart, rendered offline with several values files, every manifest validated."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import helm_python
import jsonschema
import pytest
import yaml

from insarcloud.config import parse_config
from insarcloud.errors import ConfigError

# deploy_checks sits next to this file; found whatever pytest's import mode (prepend or importlib).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_checks import (  # noqa: E402
    CHART,
    MISSING_DEPS,
    REPO,
    ManifestError,
    by_kind,
    crd_validators,
    env_of,
    lint,
    load_values,
    pod_specs,
    render,
    validate_manifest,
)

DEPLOY = REPO / "deploy"

# name -> (values file or None, overrides merged on top)
SCENARIOS: dict[str, tuple[Path | None, dict]] = {
    "defaults": (None, {}),
    "aws-irsa": (DEPLOY / "values-aws.yaml", {}),
    "onprem-minio": (DEPLOY / "values-onprem.yaml", {}),
    "no-operator-no-gpu": (None, {"dask": {"mode": "deployments"}, "ray": {"gpuWorkers": {"enabled": False}}}),
    "autoscaler-digest": (
        None,
        {
            "storage": {"credentials": {"sessionTokenKey": "AWS_SESSION_TOKEN"}},
            "dask": {"autoscaler": {"enabled": True}},
            "image": {"cpu": {"digest": "sha256:" + "a" * 64}, "gpu": {"digest": "sha256:" + "b" * 64}},
        },
    ),
    "job-only-local-engines": (None, {"dask": {"enabled": False}, "ray": {"enabled": False}}),
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _values(name: str) -> dict:
    path, over = SCENARIOS[name]
    return _merge(load_values(path), over)


def _effective(name: str) -> dict:
    """The values a release would use: chart defaults coalesced with the scenario's."""
    with helm_python.Chart.load(CHART) as chart:
        return chart.merge_values(_values(name))


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(_values(name)) for name in SCENARIOS}


def test_chart_declares_operators_as_optional_dependencies_not_vendored():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in meta["dependencies"]}
    assert set(deps) == {"dask-kubernetes-operator", "kuberay-operator"}
    for d in deps.values():
        assert d["condition"].startswith("operators.") and d["repository"].startswith("https://")
    assert not (CHART / "charts").exists(), "operators must not be vendored under charts/"
    assert not list(CHART.rglob("*.tgz"))
    assert {d["status"] for d in helm_python.dependency_list(CHART)} == {"missing"}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_lint_strict(name):
    # Everything but the missing-dependency warning (cleared by `helm dependency build`) must be clean.
    assert lint(_values(name)) == []


def test_lint_strict_reports_findings():
    # The lint wrapper is not blind: a values typo and a wrong type are findings.
    findings = lint({"dask": {"workers": 3}, "job": {"backoffLimit": "one"}})
    assert any("workers" in f for f in findings) and any("backoffLimit" in f for f in findings)
    assert MISSING_DEPS not in findings


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_manifest_validates(rendered, name):
    kinds = {validate_manifest(doc) for doc in rendered[name]}
    assert "core" in kinds
    assert ("crd" in kinds) == (name != "job-only-local-engines")


def test_crd_schemas_are_valid_json_schema():
    for validator in crd_validators().values():
        jsonschema.Draft7Validator.check_schema(validator.schema)


def test_validation_fails_on_broken_manifests(rendered):
    docs = rendered["defaults"]
    job = copy.deepcopy(by_kind(docs, "Job")[0])
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"  # typo
    with pytest.raises(ManifestError, match=r"(?s)Job/.*containers\.0.*imagePullPolcy"):
        validate_manifest(job)

    job = copy.deepcopy(by_kind(docs, "Job")[0])
    job["spec"]["backoffLimit"] = "one"
    with pytest.raises(ManifestError, match=r"spec\.backoffLimit"):
        validate_manifest(job)

    ray = copy.deepcopy(by_kind(docs, "RayCluster")[0])
    ray["spec"]["workerGroupSpecs"][0]["gpuCount"] = 1  # not a RayCluster field
    with pytest.raises(ManifestError, match=r"(?s)RayCluster/.*workerGroupSpecs\.0.*gpuCount"):
        validate_manifest(ray)

    ray = copy.deepcopy(by_kind(docs, "RayCluster")[0])
    del ray["spec"]["workerGroupSpecs"][0]["groupName"]  # required by the CRD
    with pytest.raises(ManifestError, match="groupName"):
        validate_manifest(ray)

    dask = copy.deepcopy(by_kind(docs, "DaskCluster")[0])
    dask["spec"]["worker"]["replicas"] = "two"
    with pytest.raises(ManifestError, match=r"(?s)DaskCluster/.*spec\.worker\.replicas"):
        validate_manifest(dask)

    dask = copy.deepcopy(by_kind(docs, "DaskCluster")[0])
    dask["metadata"]["name"] = "Not_A_DNS_Name"
    with pytest.raises(ManifestError, match="metadata.name"):
        validate_manifest(dask)

    unknown = {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(ManifestError, match="no schema"):
        validate_manifest(unknown)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_driver_gets_engine_addresses_of_the_release_clusters(rendered, name):
    docs = rendered[name]
    values = _effective(name)
    (job,) = by_kind(docs, "Job")
    driver = job["spec"]["template"]["spec"]["containers"][0]
    assert driver["command"] + driver["args"] == ["insarcloud", "run", "/config/area.yaml"]
    env = env_of(driver)

    if values["dask"]["enabled"]:
        m = re.fullmatch(r"tcp://([a-z0-9-]+):8786", env["INSARCLOUD_DASK_SCHEDULER"]["value"])
        assert m
        svc = m.group(1)
        if values["dask"]["mode"] == "operator":
            (dc,) = by_kind(docs, "DaskCluster")
            assert svc == f"{dc['metadata']['name']}-scheduler"  # the operator's Service name
            ports = {p["port"] for p in dc["spec"]["scheduler"]["service"]["ports"]}
        else:
            (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == svc]
            ports = {p["port"] for p in service["spec"]["ports"]}
            sched = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("scheduler")][0]
            labels = sched["spec"]["template"]["metadata"]["labels"]
            assert service["spec"]["selector"].items() <= labels.items()
        assert 8786 in ports
    else:
        assert "INSARCLOUD_DASK_SCHEDULER" not in env

    if values["ray"]["enabled"]:
        (rc,) = by_kind(docs, "RayCluster")
        assert env["INSARCLOUD_RAY_ADDRESS"]["value"] == f"ray://{rc['metadata']['name']}-head-svc:10001"
        head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert 10001 in {p["containerPort"] for p in head["ports"]}
    else:
        assert "INSARCLOUD_RAY_ADDRESS" not in env

    storage = values["storage"]
    assert env["AWS_DEFAULT_REGION"]["value"] == storage["region"]
    if storage["endpointUrl"]:
        assert env["AWS_ENDPOINT_URL"]["value"] == storage["endpointUrl"]
    else:
        assert "AWS_ENDPOINT_URL" not in env
    creds = storage["credentials"]
    if creds["mode"] == "secret":
        ref = env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": creds["existingSecret"], "key": creds["secretAccessKeyKey"]}
        assert ("AWS_SESSION_TOKEN" in env) == bool(creds["sessionTokenKey"])
    else:
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_configmap_holds_a_valid_area_config(rendered, name):
    (cm,) = by_kind(rendered[name], "ConfigMap")
    cfg = parse_config(cm["data"]["area.yaml"], source=f"{name} ConfigMap")
    assert cfg == parse_config(_effective(name)["areaJob"]["config"])
    assert cfg.engines.dask_scheduler is None and cfg.engines.ray_address is None
    (job,) = by_kind(rendered[name], "Job")
    vols = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert vols["config"]["configMap"]["name"] == cm["metadata"]["name"]


def test_chart_refuses_engine_addresses_in_the_area_config():
    values = _merge(_values("defaults"), {"areaJob": {"config": {"engines": {"dask_scheduler": "tcp://x:8786"}}}})
    with pytest.raises(helm_python.HelmError, match="dask_scheduler must stay unset"):
        render(values)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_pod_security_resources_and_probes(rendered, name):
    n_pods = 0
    for doc in rendered[name]:
        for where, spec in pod_specs(doc):
            n_pods += 1
            psc = spec["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, where
            assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
                assert sc["capabilities"] == {"drop": ["ALL"]}, (where, c["name"])
                assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
                assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"], (where, c["name"])
            for c in spec["containers"]:
                if doc["kind"] != "Job":  # long-running servers: probed
                    assert c["livenessProbe"] and c["readinessProbe"], (where, c["name"])
                # a read-only root needs a writable /tmp
                assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, (where, c["name"])
            # only the job may hold an API token, and only when RBAC grants it something
            if doc["kind"] != "Job":
                assert spec["automountServiceAccountToken"] is False, where
    assert n_pods >= 1


def test_gpu_worker_group_from_values(rendered):
    values = _effective("onprem-minio")
    (rc,) = by_kind(rendered["onprem-minio"], "RayCluster")
    (group,) = rc["spec"]["workerGroupSpecs"]
    spec = group["template"]["spec"]
    gpus = values["ray"]["gpuWorkers"]["gpusPerWorker"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == gpus
    # exactly what the values file says (no chart default merged into the user's selector)
    written = _values("onprem-minio")["ray"]["gpuWorkers"]
    assert spec["nodeSelector"] == written["nodeSelector"] == {"accelerator": "nvidia-a100"}
    assert spec["tolerations"] == written["tolerations"]
    assert "insarcloud-gpu" in spec["containers"][0]["image"]
    head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"] and "insarcloud-gpu" not in head["image"]
    (rc,) = by_kind(rendered["no-operator-no-gpu"], "RayCluster")
    assert rc["spec"]["workerGroupSpecs"] == []


def test_dask_modes(rendered):
    assert by_kind(rendered["defaults"], "DaskCluster") and not by_kind(rendered["defaults"], "Deployment")
    assert not by_kind(rendered["defaults"], "DaskAutoscaler")
    (auto,) = by_kind(rendered["autoscaler-digest"], "DaskAutoscaler")
    assert auto["spec"]["cluster"] == by_kind(rendered["autoscaler-digest"], "DaskCluster")[0]["metadata"]["name"]
    docs = rendered["no-operator-no-gpu"]
    assert not by_kind(docs, "DaskCluster")
    assert {d["metadata"]["name"] for d in by_kind(docs, "Deployment")} == {
        "demo-insarcloud-dask-scheduler",
        "demo-insarcloud-dask-worker",
    }
    with pytest.raises(helm_python.HelmError, match="autoscaler needs dask.mode=operator"):
        render(_merge(_values("no-operator-no-gpu"), {"dask": {"autoscaler": {"enabled": True}}}))


def test_image_digest_pins_every_pod(rendered):
    for doc in rendered["autoscaler-digest"]:
        for where, spec in pod_specs(doc):
            for c in spec.get("initContainers", []) + spec["containers"]:
                assert re.search(r"@sha256:[ab]{64}$", c["image"]), (where, c["image"])


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_rbac_is_least_privilege(rendered, name):
    docs = rendered[name]
    for role in by_kind(docs, "Role") + by_kind(docs, "ClusterRole"):
        assert role["kind"] == "Role", "no cluster-wide permissions"
        for rule in role["rules"]:
            assert rule["verbs"] == ["get"] and rule["resourceNames"], rule
            assert "*" not in rule["resources"] + rule["apiGroups"], rule
            assert set(rule["resources"]) <= {"daskclusters", "rayclusters"}, rule
    names = {(r["apiGroups"][0], r["resourceNames"][0]) for role in by_kind(docs, "Role") for r in role["rules"]}
    expected = {("ray.io", d["metadata"]["name"]) for d in by_kind(docs, "RayCluster")}
    expected |= {("kubernetes.dask.org", d["metadata"]["name"]) for d in by_kind(docs, "DaskCluster")}
    assert names == expected
    (job,) = by_kind(docs, "Job")
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is bool(expected)


def test_irsa_annotations_reach_the_service_account(rendered):
    (sa,) = by_kind(rendered["aws-irsa"], "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    for doc in rendered["aws-irsa"]:
        for where, spec in pod_specs(doc):
            assert spec["serviceAccountName"] == sa["metadata"]["name"], where
            for c in spec["containers"]:
                assert "AWS_ACCESS_KEY_ID" not in env_of(c), where  # IRSA: no keys at all


# --------------------------------------------------------------------------------------------------
# Credentials never in manifests

_CREDENTIAL_VALUE = re.compile(
    r"(AKIA|ASIA)[0-9A-Z]{16}|aws_secret_access_key\s*[=:]|-----BEGIN [A-Z ]*PRIVATE KEY-----|://[^/\s:@]+:[^/\s@]+@",
    re.IGNORECASE,
)
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|PRIVATE", re.IGNORECASE)


def _all_containers(docs):
    for doc in docs:
        for where, spec in pod_specs(doc):
            for c in spec.get("initContainers", []) + spec["containers"]:
                yield where, c


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_credential_in_any_manifest(rendered, name):
    docs = rendered[name]
    assert not by_kind(docs, "Secret"), "the chart must never create a Secret holding keys"
    text = yaml.safe_dump_all(docs)
    assert not _CREDENTIAL_VALUE.search(text)
    n_refs = 0
    for where, c in _all_containers(docs):
        for var in c.get("env", []):
            if _SECRET_NAME.search(var["name"]):
                assert "value" not in var and set(var["valueFrom"]) == {"secretKeyRef"}, (where, var)
                n_refs += 1
        assert not c.get("envFrom") or all("secretRef" in e for e in c["envFrom"]), where
    mode = _effective(name)["storage"]["credentials"]["mode"]
    assert (n_refs > 0) == (mode == "secret")


def test_credential_scan_catches_a_leak(rendered):
    # The scan above is not blind: a key pasted as a literal env value is found.
    docs = copy.deepcopy(rendered["defaults"])
    (job,) = by_kind(docs, "Job")
    job["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
    )
    leaked = [
        (w, v)
        for w, c in _all_containers(docs)
        for v in c.get("env", [])
        if _SECRET_NAME.search(v["name"]) and "value" in v
    ]
    assert len(leaked) == 1
    assert _CREDENTIAL_VALUE.search("endpoint: http://AKIAIOSFODNN7EXAMPLE:pw@minio:9000")
    assert _CREDENTIAL_VALUE.search(yaml.safe_dump({"stringData": {"AWS_SECRET_ACCESS_KEY": "abc"}}))
    assert not _CREDENTIAL_VALUE.search(yaml.safe_dump({"name": "AWS_SECRET_ACCESS_KEY"}))


def test_credentials_cannot_enter_values_or_config():
    canary = "CANARY-not-a-real-secret-0123456789"
    # chart values: storage has no key for credentials; the schema refuses one
    with helm_python.Chart.load(CHART) as chart:
        for bad in (
            {"storage": {"accessKey": canary}},
            {"storage": {"credentials": {"mode": "secret", "secretAccessKey": canary}}},
            {"storage": {"endpointUrl": f"http://user:{canary}@minio:9000"}},
        ):
            with pytest.raises(helm_python.HelmValuesError):
                chart.validate_schema(_merge(_values("defaults"), bad))
    # area config: a credential key is refused before any work starts, and the value is not echoed
    cfg = _effective("defaults")["areaJob"]["config"]
    for bad in (
        {"storage": {"secret_access_key": canary}},
        {"storage": {"endpoint_url": f"http://AKIAIOSFODNN7EXAMPLE:{canary}@minio:9000"}},
    ):
        with pytest.raises(ConfigError) as err:
            parse_config({**cfg, **bad})
        assert canary not in str(err.value)


def test_notes_tell_how_to_watch_and_read(rendered):
    with helm_python.Chart.load(CHART) as chart:
        out = chart.render(values=_values("defaults"), name="demo", namespace="insar")
    notes = out["insarcloud/templates/NOTES.txt"]
    assert "kubectl -n insar logs -f job/demo-insarcloud-area-1" in notes
    assert 'xr.open_zarr("s3://insarcloud-results/areas/central-tibet.zarr")' in notes
