"""The helm chart, rendered offline with several values files, every manifest validated."""

from __future__ import annotations

import copy
import json
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
    # a batch Job (no Ray) that still deletes the chart's own Dask Deployments at its end
    "job-dask-deployments": (None, {"dask": {"mode": "deployments"}, "ray": {"enabled": False}}),
    "persistent-dask-no-auth": (
        None,
        {
            "dask": {"lifecycle": "persistent"},
            "ray": {"auth": {"mode": "disabled"}},
            "networkPolicy": {"enabled": False},
        },
    ),
    "clusters-only": (None, {"job": {"enabled": False}, "ray": {"auth": {"existingSecret": "ray-token"}}}),
}


def driver_of(docs: list[dict]) -> tuple[dict, dict, list[str]]:
    """(pod spec, container, command) of the area job's driver: the RayJob's head (its entrypoint) or the Job."""
    import shlex

    rayjobs, jobs = by_kind(docs, "RayJob"), by_kind(docs, "Job")
    assert len(rayjobs) + len(jobs) == 1, "exactly one area job"
    if rayjobs:
        spec = rayjobs[0]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        return spec, spec["containers"][0], shlex.split(rayjobs[0]["spec"]["entrypoint"])
    spec = jobs[0]["spec"]["template"]["spec"]
    return spec, spec["containers"][0], spec["containers"][0]["command"] + spec["containers"][0].get("args", [])


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
    assert ("crd" in kinds) == (name not in ("job-only-local-engines", "job-dask-deployments"))


def test_crd_schemas_are_valid_json_schema():
    for validator in crd_validators().values():
        jsonschema.Draft7Validator.check_schema(validator.schema)


def test_validation_fails_on_broken_manifests(rendered):
    docs = rendered["defaults"]
    job = copy.deepcopy(by_kind(rendered["job-only-local-engines"], "Job")[0])
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"  # typo
    with pytest.raises(ManifestError, match=r"(?s)Job/.*containers\.0.*imagePullPolcy"):
        validate_manifest(job)

    job = copy.deepcopy(by_kind(rendered["job-only-local-engines"], "Job")[0])
    job["spec"]["backoffLimit"] = "one"
    with pytest.raises(ManifestError, match=r"spec\.backoffLimit"):
        validate_manifest(job)

    ray = copy.deepcopy(by_kind(docs, "RayJob")[0])
    ray["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["gpuCount"] = 1  # not a RayCluster field
    with pytest.raises(ManifestError, match=r"(?s)RayJob/.*rayClusterSpec\.workerGroupSpecs\.0.*gpuCount"):
        validate_manifest(ray)

    ray = copy.deepcopy(by_kind(docs, "RayJob")[0])
    del ray["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]  # required by the CRD
    with pytest.raises(ManifestError, match="groupName"):
        validate_manifest(ray)

    ray = copy.deepcopy(by_kind(docs, "RayJob")[0])
    ray["spec"]["shutdownAfterJobFinish"] = True  # typo of a RayJob field
    with pytest.raises(ManifestError, match="shutdownAfterJobFinish"):
        validate_manifest(ray)

    ray = copy.deepcopy(by_kind(docs, "RayJob")[0])
    ray["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(ManifestError, match=r"(?s)submitterPodTemplate\.spec\.containers\.0.*imagePullPolcy"):
        validate_manifest(ray)

    ray = copy.deepcopy(by_kind(rendered["clusters-only"], "RayCluster")[0])
    ray["spec"]["authOptions"]["mode"] = "password"  # not one of the CRD's enum
    with pytest.raises(ManifestError, match="authOptions"):
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


JOB_SCENARIOS = [n for n in SCENARIOS if n != "clusters-only"]


@pytest.mark.parametrize("name", JOB_SCENARIOS)
def test_driver_gets_engine_addresses_of_the_release_clusters(rendered, name):
    docs = rendered[name]
    values = _effective(name)
    _, driver, command = driver_of(docs)
    assert command[:2] == ["python", "/opt/insarcloud/run_area_job.py"]
    assert command[command.index("--"):] == ["--", "insarcloud", "run", "/config/area.yaml"]
    env = env_of(driver)
    assert env["INSARCLOUD_LOG_LEVEL"]["value"] == values["job"]["logLevel"]

    if values["dask"]["enabled"]:
        m = re.fullmatch(r"tcp://([a-z0-9-]+):8786", env["INSARCLOUD_DASK_SCHEDULER"]["value"])
        assert m
        svc = m.group(1)
        assert command[command.index("--wait") + 1] == f"{svc}:8786"  # waits for the scheduler first
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
        assert "INSARCLOUD_DASK_SCHEDULER" not in env and "--wait" not in command

    if values["ray"]["enabled"]:
        # the driver is the RayJob's entrypoint on its own head: Ray is "auto", never Ray Client
        assert env["INSARCLOUD_RAY_ADDRESS"]["value"] == "auto"
        assert by_kind(docs, "RayJob") and not by_kind(docs, "Job") and not by_kind(docs, "RayCluster")
    else:
        assert "INSARCLOUD_RAY_ADDRESS" not in env
    text = yaml.safe_dump_all(docs)
    assert "ray://" not in text and not re.search(r"(containerPort|port): 10001", text), "no Ray Client anywhere"

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


@pytest.mark.parametrize("name", JOB_SCENARIOS)
def test_configmap_holds_a_valid_area_config(rendered, name):
    (cm,) = by_kind(rendered[name], "ConfigMap")
    cfg = parse_config(cm["data"]["area.yaml"], source=f"{name} ConfigMap")
    assert cfg == parse_config(_effective(name)["areaJob"]["config"])
    assert cfg.engines.dask_scheduler is None and cfg.engines.ray_address is None
    spec, driver, _ = driver_of(rendered[name])
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert {"name": "config", "mountPath": "/config", "readOnly": True} in driver["volumeMounts"]


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
            batch = doc["kind"] == "Job" or where.endswith("/submitter")
            for c in spec["containers"]:
                if not batch:  # long-running servers: probed
                    assert c["livenessProbe"] and c["readinessProbe"], (where, c["name"])
                # a read-only root needs a writable /tmp
                assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, (where, c["name"])
                # nothing forces a TTY: progress goes out as plain lines that `kubectl logs -f` follows
                assert not c.get("tty") and not c.get("stdin"), (where, c["name"])
            # only the driver's pod may hold an API token, and only when RBAC grants it something
            is_driver = doc["kind"] == "Job" or (doc["kind"] == "RayJob" and where.endswith("/head"))
            if not is_driver:
                assert spec["automountServiceAccountToken"] is False, where
    assert n_pods >= 1


def test_gpu_worker_group_from_values(rendered):
    values = _effective("onprem-minio")
    (rj,) = by_kind(rendered["onprem-minio"], "RayJob")
    rc = {"spec": rj["spec"]["rayClusterSpec"]}
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
    (rj,) = by_kind(rendered["no-operator-no-gpu"], "RayJob")
    assert rj["spec"]["rayClusterSpec"]["workerGroupSpecs"] == []


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
    values = _effective(name)
    for role in by_kind(docs, "Role") + by_kind(docs, "ClusterRole"):
        assert role["kind"] == "Role", "no cluster-wide permissions"
        for rule in role["rules"]:
            assert rule["verbs"] == ["delete"] and len(rule["resourceNames"]) == 1, rule
            assert "*" not in rule["resources"] + rule["apiGroups"], rule
            assert set(rule["resources"]) <= {"daskclusters", "daskautoscalers", "deployments", "services"}, rule
    granted = {(r["resources"][0], r["resourceNames"][0]) for role in by_kind(docs, "Role") for r in role["rules"]}
    # exactly the release's own Dask objects, and only when the job owns the Dask cluster's lifetime
    dask_objects = {("daskclusters", d["metadata"]["name"]) for d in by_kind(docs, "DaskCluster")}
    dask_objects |= {("daskautoscalers", d["metadata"]["name"]) for d in by_kind(docs, "DaskAutoscaler")}
    dask_objects |= {("deployments", d["metadata"]["name"]) for d in by_kind(docs, "Deployment")}
    dask_objects |= {("services", d["metadata"]["name"]) for d in by_kind(docs, "Service")}
    owns = values["job"]["enabled"] and values["dask"]["enabled"] and values["dask"]["lifecycle"] == "job"
    assert granted == (dask_objects if owns else set())
    if values["job"]["enabled"]:
        spec, _, command = driver_of(docs)
        assert spec["automountServiceAccountToken"] is bool(granted)
        deletes = {tuple(command[i + 1].split("/")[2:]) for i, a in enumerate(command) if a == "--delete"}
        assert deletes == granted  # the driver deletes exactly what it may


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
    docs = copy.deepcopy(rendered["job-only-local-engines"])
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


# --------------------------------------------------------------------------------------------------
# KubeRay / Dask-operator conventions (issue 19)


def _ray_pods(docs):
    return [(w, spec) for d in docs if d["kind"] in ("RayJob", "RayCluster") for w, spec in pod_specs(d)
            if not w.endswith("/submitter")]


def test_area_job_is_a_rayjob_that_shuts_its_cluster_down(rendered):
    (rj,) = by_kind(rendered["defaults"], "RayJob")
    spec = rj["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["submissionMode"] == "K8sJobMode"
    assert spec["ttlSecondsAfterFinished"] == _effective("defaults")["job"]["clusterTtlSecondsAfterFinished"]
    assert "clusterSelector" not in spec  # the RayJob owns (creates and deletes) its cluster
    assert rj["metadata"]["name"] == "demo-insarcloud-area-1"
    # the submitter pod carries the release's labels (the NetworkPolicy admits it) and leaves the command to KubeRay
    sub = spec["submitterPodTemplate"]
    assert sub["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
    assert "command" not in sub["spec"]["containers"][0] and sub["spec"]["restartPolicy"] == "Never"


def test_ray_head_no_cpus_shm_and_token_auth(rendered):
    for name in ("defaults", "aws-irsa", "onprem-minio", "clusters-only"):
        docs = rendered[name]
        (ray,) = by_kind(docs, "RayJob") + by_kind(docs, "RayCluster")
        cluster = ray["spec"].get("rayClusterSpec", ray["spec"])
        assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", name
        assert cluster["authOptions"]["mode"] == "token", name
        pods = _ray_pods(docs)
        assert len(pods) >= 2 or name == "no-operator-no-gpu"
        for where, spec in pods:
            vols = {v["name"]: v for v in spec["volumes"]}
            assert vols["dshm"]["emptyDir"]["medium"] == "Memory", where
            mounts = {m["mountPath"]: m["name"] for c in spec["containers"] for m in c["volumeMounts"]}
            assert mounts["/dev/shm"] == "dshm", where
    (rc,) = by_kind(rendered["clusters-only"], "RayCluster")
    assert rc["spec"]["authOptions"] == {"mode": "token", "secretName": "ray-token"}
    (rj,) = by_kind(rendered["persistent-dask-no-auth"], "RayJob")
    assert "authOptions" not in rj["spec"]["rayClusterSpec"]


def test_gpu_group_scales_from_zero(rendered):
    for name in ("defaults", "aws-irsa", "onprem-minio"):
        (rj,) = by_kind(rendered[name], "RayJob")
        cluster = rj["spec"]["rayClusterSpec"]
        assert cluster["enableInTreeAutoscaling"] is True, name
        (group,) = cluster["workerGroupSpecs"]
        assert group["minReplicas"] == 0 and group["replicas"] == 0 and group["maxReplicas"] >= 1, name


def test_dask_lifecycle_switch(rendered):
    # default: the job deletes the Dask cluster at its end; idleTimeout is the operator-side backstop
    _, _, command = driver_of(rendered["defaults"])
    assert "--delete" in command
    (dc,) = by_kind(rendered["defaults"], "DaskCluster")
    assert dc["spec"]["idleTimeout"] > 0
    # persistent: nothing deletes it, no Role, no token on the driver's pod
    spec, _, command = driver_of(rendered["persistent-dask-no-auth"])
    assert "--delete" not in command and not by_kind(rendered["persistent-dask-no-auth"], "Role")
    assert spec["automountServiceAccountToken"] is False
    # deployments mode: the chart's own Deployments and Service are what the job deletes
    no_wait = render(_merge(_values("defaults"), {"job": {"waitForClusters": {"enabled": False}}}))
    assert "--wait" not in driver_of(no_wait)[2] and "--delete" in driver_of(no_wait)[2]
    _, _, command = driver_of(rendered["job-dask-deployments"])
    deletes = [command[i + 1] for i, a in enumerate(command) if a == "--delete"]
    assert deletes == ["apps/v1/deployments/demo-insarcloud-dask-scheduler",
                       "apps/v1/deployments/demo-insarcloud-dask-worker",
                       "core/v1/services/demo-insarcloud-dask-scheduler"]


def _selects(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_network_policy_admits_only_the_release_and_its_operators(rendered, name):
    docs = rendered[name]
    pols = by_kind(docs, "NetworkPolicy")
    if not _effective(name)["networkPolicy"]["enabled"]:
        assert not pols
        return
    (pol,) = pols
    spec = pol["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    pod_labels = []
    for doc in docs:
        kind = doc["kind"]
        if kind in ("Deployment", "Job"):
            pod_labels.append(doc["spec"]["template"]["metadata"]["labels"])
        elif kind == "DaskCluster":
            pod_labels += [doc["spec"]["scheduler"]["metadata"]["labels"], doc["spec"]["worker"]["metadata"]["labels"]]
        elif kind in ("RayJob", "RayCluster"):
            c = doc["spec"].get("rayClusterSpec", doc["spec"])
            pod_labels.append(c["headGroupSpec"]["template"]["metadata"]["labels"])
            pod_labels += [g["template"]["metadata"]["labels"] for g in c.get("workerGroupSpecs", [])]
            if "submitterPodTemplate" in doc["spec"]:
                pod_labels.append(doc["spec"]["submitterPodTemplate"]["metadata"]["labels"])
    assert pod_labels
    for labels in pod_labels:  # every pod of the release is protected and admitted
        assert _selects(spec["podSelector"], labels), labels
        assert any(_selects(p["podSelector"], labels) and "namespaceSelector" not in p
                   for rule in spec["ingress"] for p in rule["from"]), labels
    # a pod of another release or app is not admitted by the release rule
    stranger = {"app.kubernetes.io/name": "insarcloud", "app.kubernetes.io/instance": "other"}
    own_rules = [p for rule in spec["ingress"] for p in rule["from"] if "namespaceSelector" not in p]
    assert own_rules and not any(_selects(p["podSelector"], stranger) for p in own_rules)
    # every other rule is an operator's: a named namespace, its pods' labels, its ports only
    for rule in spec["ingress"]:
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                assert peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"].endswith("operator")
                assert {p["port"] for p in rule["ports"]} <= {8265, 8786, 8787}


def test_values_schema_refuses_credential_keys_anywhere_in_the_area_config():
    from insarcloud.config import credential_key_pattern

    schema = json.loads((CHART / "values.schema.json").read_text())
    # the chart and the config model decide "credential key" from one list
    assert schema["$defs"]["credentialKeyName"]["pattern"] == credential_key_pattern()
    canary = "CANARY-not-a-real-secret-0123456789"
    base = _values("defaults")
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(base)  # the example itself is fine
        for bad in (
            {"aws_secret_access_key": canary},
            {"storage": {"aws_access_key_id": canary}},
            {"storage": {"Secret": canary}},
            {"params": {"quality": {"token": canary}}},
            {"params": {"forecast": {"options": {"deep": {"session_token": canary}}}}},
            {"report": {"points": [{"name": "a", "lon": 1, "lat": 2, "password": canary}]}},
            {"params": {"invert": {"key": canary}}},
        ):
            with pytest.raises(helm_python.HelmValuesError) as err:
                chart.validate_schema(_merge(base, {"areaJob": {"config": bad}}))
            assert canary not in str(err.value)
            # and the job's own validator refuses the same config, naming the key's path
            with pytest.raises(ConfigError, match="credential key"):
                parse_config(_merge(_effective("defaults")["areaJob"]["config"], bad))
        # near-miss names that are not credentials stay allowed by the schema (the config model judges them)
        chart.validate_schema(_merge(base, {"areaJob": {"config": {"report": {"keynote": "x"}}}}))


# Allocatable figures the values files are sized against (their comments say the same):
# EKS AMI reservations (kube-reserved CPU 6%/1%/0.5%/0.5% of cores 1-4, memory 255 Mi + 11 Mi x max pods,
# eviction 100 Mi) on the instance's usable memory; minus DaemonSets (aws-node, kube-proxy, ebs-csi, NVIDIA
# device plugin: ~0.3 CPU, ~0.5 GiB). On-prem: kubelet --kube-reserved and --system-reserved cpu=500m,
# memory=2Gi each, eviction 500Mi.
NODE_ALLOCATABLE = {  # values file -> component -> (node type, CPU, GiB) left for our pods
    "values-aws.yaml": {
        "gpu": ("g5.xlarge", 3.92 - 0.3, 14.8 - 0.5),
        "dask": ("m6i.2xlarge", 7.91 - 0.3, 30.4 - 0.5),
        "head": ("m6i.2xlarge", 7.91 - 0.3, 30.4 - 0.5),
    },
    "values-onprem.yaml": {
        "gpu": ("16 cores / 128 GiB GPU node", 15.0 - 0.3, 123.5 - 0.5),
        "dask": ("16 cores / 64 GiB node", 15.0 - 0.3, 59.5 - 0.5),
        "head": ("16 cores / 64 GiB node", 15.0 - 0.3, 59.5 - 0.5),
    },
}


def _cpu(q) -> float:
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def _gib(q) -> float:
    q = str(q)
    units = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 1024}
    for u, f in units.items():
        if q.endswith(u):
            return float(q[: -len(u)]) * f
    return float(q) / 2**30


@pytest.mark.parametrize("fname", list(NODE_ALLOCATABLE))
def test_values_files_fit_their_node_types(fname):
    with helm_python.Chart.load(CHART) as chart:
        values = chart.merge_values(load_values(DEPLOY / fname))
    text = (DEPLOY / fname).read_text()
    parts = {
        "gpu": values["ray"]["gpuWorkers"]["resources"],
        "dask": values["dask"]["worker"]["resources"],
        "head": values["ray"]["head"]["resources"],
    }
    for comp, res in parts.items():
        node, cpu, gib = NODE_ALLOCATABLE[fname][comp]
        assert node.split()[0] in text, f"{fname} must name the node type {node} it is sized for"
        for kind in ("requests", "limits"):
            assert _cpu(res[kind]["cpu"]) <= cpu, (fname, comp, kind, res)
            assert _gib(res[kind]["memory"]) <= gib, (fname, comp, kind, res)
    # /dev/shm is memory-backed and counts against the Ray pods' memory limit: it must leave room
    assert _gib(values["ray"]["shmSizeLimit"]) < _gib(parts["gpu"]["limits"]["memory"]) / 2


def _worker_container(docs: list[dict]) -> dict:
    (cluster,) = by_kind(docs, "DaskCluster") or [None]
    if cluster is not None:
        return cluster["spec"]["worker"]["spec"]["containers"][0]
    (dep,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("dask-worker")]
    return dep["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("name", ["defaults", "no-operator-no-gpu"])
def test_dask_worker_memory_limit_is_its_containers_limit_stated(rendered, name):
    """Issue 20: a fixed memory_limit per worker set by the job, not left to Dask's 'auto'."""
    c = _worker_container(rendered[name])
    args = c["args"]
    limit = args[args.index("--memory-limit") + 1]
    assert limit == c["resources"]["limits"]["memory"] == _effective(name)["dask"]["worker"]["resources"]["limits"][
        "memory"]
    from dask.utils import parse_bytes

    assert parse_bytes(limit) > 0  # a Kubernetes quantity Dask reads (8Gi)
    over = render(_merge(_values(name), {"dask": {"worker": {"resources": {"limits": {"memory": "6Gi"}}}}}))
    args = _worker_container(over)["args"]
    assert args[args.index("--memory-limit") + 1] == "6Gi"


@pytest.mark.parametrize("name", ["defaults", "no-operator-no-gpu"])
def test_dask_workers_get_glibcs_thresholds_when_asked(rendered, name):
    """dask.worker.mallocThreshold: glibc's trim/mmap thresholds in the worker container's environment, which the
    nanny passes on to the worker process (insarcloud.engines.MALLOC_THRESHOLD, docs/scale.md). 0, the default,
    leaves Dask's own setting."""
    from insarcloud.engines import MALLOC_THRESHOLD, malloc_environ

    assert _effective(name)["dask"]["worker"]["mallocThreshold"] == 0
    assert not any(e["name"].startswith("MALLOC_") for e in _worker_container(rendered[name])["env"])
    on = render(_merge(_values(name), {"dask": {"worker": {"mallocThreshold": MALLOC_THRESHOLD}}}))
    env = {e["name"]: e["value"] for e in _worker_container(on)["env"] if e["name"].startswith("MALLOC_")}
    assert env == malloc_environ(MALLOC_THRESHOLD)  # the chart's workers and the local ones alike
