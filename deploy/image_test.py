"""`make image-test`: build the CPU image with podman and run the rendered chart's pods from it.

    python deploy/image_test.py [--base IMAGE] [--keep-images] [--json OUT]

1. base image: Debian bookworm + Python 3.11 from Debian's package registry (deploy/make_base_image.sh,
   mmdebstrap), unless --base names one; the Dockerfile's BASE_IMAGE build argument takes it;
2. `podman build -f deploy/Dockerfile.cpu` with this machine's pip configuration (index, wheel folders, CA
   bundle) mounted into the build;
3. inside the image: tests/deploy/test_image_contents.py (every sub-command's --help, lock = venv = image);
4. the chart rendered offline (dask.mode=deployments) and translated for `podman kube play`, which runs Pods
   but has no API server, no Services, no Secrets, no operators:
   Services -> static pod IPs on a private podman network + hosts entries (hostAliases) with the Service names;
   Secret keys -> literal env values (moto's test keys); ConfigMap volumes -> host folders;
   emptyDir -> host folders (medium Memory: under /dev/shm); probes -> polled from here; containerPorts
   dropped (podman 4.3 would publish them on the host, Kubernetes does not);
   Deployments -> Pods; the RayJob -> its head and worker Pods from its rayClusterSpec pod templates, started
   with the `ray start` command KubeRay would generate from rayStartParams (token auth env included), and
   its submitter Pod running `ray job submit -- <entrypoint>` as KubeRay's K8sJobMode does;
5. a moto S3 server on the network's gateway holds the real LiCSAR crop (tests/data/licsar); the area job runs
   ingest, qc, quality (Ray actors on the Ray worker pod), unwrap, invert and noise through the pods; the
   cube is read back from S3 here and checked;
6. every pod, the network, moto, the host folders and every image this run made are removed (finally).

Exit status 0: passed; 77: SKIPPED (podman/mmdebstrap missing or unable to run containers: says why);
anything else: failed.
"""

from __future__ import annotations

import argparse
import configparser
import copy
import json
import os
import random
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "deploy" / "podman" / "containers.conf"
FRAME = "106A_09048_000909"
LICSAR = REPO / "tests" / "data" / "licsar" / "106" / FRAME
BUCKET = "insarcloud-image-test"
SKIP = 77
TORCH_CPU_WHEEL = "torch-2.13.0+cpu-"
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[image-test {time.monotonic() - T0:7.1f} s] {msg}", flush=True)


class Skip(Exception):
    """podman cannot run containers here: the reason."""


def sh(cmd: list[str], *, check: bool = True, timeout: float | None = None, quiet: bool = False,
       env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and out.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    if not quiet and out.returncode != 0:
        log(f"(non-zero {out.returncode}) {shlex.join(cmd)}: {out.stderr.strip()[-500:]}")
    return out


def podman(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return sh(["podman", *args], **kw)


# --------------------------------------------------------------------------------------------------
# pip configuration of this machine, for the build


def pip_build_config(tmp: Path) -> tuple[list[str], bool]:
    """(`-v` mounts for podman build, whether a local torch CPU wheel is reachable through find-links).

    `pip config list` merges the machine's pip.conf files and PIP_* variables; they are written into one
    pip.conf mounted at /etc/pip.conf, and every local folder/file they name (wheel folders, file:// indexes,
    the CA bundle, a constraint file) is mounted read-only at the same path."""
    out = sh([sys.executable, "-m", "pip", "config", "list"], check=False).stdout
    conf: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".", 1)[-1]
        value = value.strip().strip("'\"")
        if name and value:
            conf[name] = value  # later lines (env) win, as in pip
    cp = configparser.ConfigParser()
    cp["global"] = conf
    path = tmp / "pip.conf"
    with path.open("w") as f:
        cp.write(f)
    mounts = ["-v", f"{path}:/etc/pip.conf:ro"]
    local_torch = False
    seen: set[str] = set()
    for value in conf.values():
        for token in value.split():
            p = token.removeprefix("file://")
            if not p.startswith("/") or not os.path.exists(p):
                continue
            top = p if os.path.isfile(p) else p.rstrip("/")
            if top.endswith("/simple"):
                top = str(Path(top).parent)  # a file:// index links to ../files
            if top not in seen:
                seen.add(top)
                mounts += ["-v", f"{top}:{top}:ro"]
            if os.path.isdir(p) and any(n.startswith(TORCH_CPU_WHEEL) for n in os.listdir(p)):
                local_torch = True
    return mounts, local_torch


# --------------------------------------------------------------------------------------------------
# Chart -> podman translation


def _labels_match(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


class Translator:
    """Turns rendered manifests into Pod manifests podman can play (see the module docstring)."""

    def __init__(self, docs: list[dict], workdir: Path, shm: Path, secrets_: dict, ray_token: str, subnet: str):
        self.docs, self.workdir, self.shm = docs, workdir, shm
        self.secrets, self.ray_token = secrets_, ray_token
        self.subnet = subnet
        self.next_ip = 10
        self.pods: list[dict] = []  # {"name", "ip", "manifest", "role", "probes"}
        self.configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}

    def ip(self) -> str:
        self.next_ip += 1
        return f"{self.subnet}.{self.next_ip}"

    def add(self, name: str, labels: dict, spec: dict, role: str, restart: str = "Never") -> dict:
        pod = {"name": name, "ip": self.ip(), "labels": labels, "spec": copy.deepcopy(spec), "role": role,
               "probes": []}
        pod["spec"]["restartPolicy"] = restart
        self.pods.append(pod)
        return pod

    def translate(self) -> list[dict]:
        for d in self.docs:
            kind, name = d["kind"], d["metadata"]["name"]
            if kind == "Deployment":
                for i in range(d["spec"]["replicas"]):
                    t = d["spec"]["template"]
                    self.add(f"{name}-{i}", t["metadata"]["labels"], t["spec"], name, restart="Always")
            elif kind == "Job":
                t = d["spec"]["template"]
                self.add(name, t["metadata"]["labels"], t["spec"], "job")
            elif kind == "RayJob":
                self._rayjob(d)
            elif kind in ("DaskCluster", "RayCluster"):
                raise RuntimeError(f"{kind}: render with dask.mode=deployments and job.enabled (no operators here)")
        hosts = self._service_hosts()
        for pod in self.pods:
            self._pod_spec(pod, hosts)
        return self.pods

    def _rayjob(self, d: dict) -> None:
        name, spec = d["metadata"]["name"], d["spec"]
        cluster = spec["rayClusterSpec"]
        self.head_svc = f"{name}-head-svc"  # KubeRay: <cluster>-head-svc
        auth = cluster.get("authOptions", {}).get("mode") == "token"
        ray_env = [{"name": "RAY_CLUSTER_NAME", "value": name}, {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"}]
        if auth:  # KubeRay injects the token Secret as RAY_AUTH_TOKEN with RAY_AUTH_MODE=token
            ray_env += [{"name": "RAY_AUTH_MODE", "value": "token"},
                        {"name": "RAY_AUTH_TOKEN", "value": self.ray_token}]
        head = cluster["headGroupSpec"]
        t = head["template"]
        params = {"head": "", "block": "", "port": "6379", "dashboard-agent-listen-port": "52365",
                  **{k: str(v) for k, v in head["rayStartParams"].items()}}
        pod = self.add(f"{name}-head", {**t["metadata"]["labels"], "ray.io/node-type": "head"}, t["spec"], "ray-head")
        self._ray_container(pod, params, ray_env)
        self.head_pod = pod
        for g in cluster.get("workerGroupSpecs", []):
            # KubeRay's autoscaler would add workers when the quality actors ask; none runs here: start one
            n = max(1, g["replicas"])
            t = g["template"]
            c = t["spec"]["containers"][0]
            cpus = str(int(float(str(c["resources"]["limits"]["cpu"]).rstrip("m"))))
            for i in range(n):
                params = {"block": "", "address": f"{self.head_svc}:6379", "num-cpus": cpus,
                          "dashboard-agent-listen-port": "52365", **{k: str(v) for k, v in g["rayStartParams"].items()}}
                labels = {**t["metadata"]["labels"], "ray.io/node-type": "worker"}
                pod = self.add(f"{name}-{g['groupName']}-{i}", labels, t["spec"], "ray-worker")
                self._ray_container(pod, params, ray_env)
        sub = spec["submitterPodTemplate"]
        pod = self.add(f"{name}-submitter", sub["metadata"]["labels"], sub["spec"], "submitter")
        c = pod["spec"]["containers"][0]
        self.submission_id = f"{name}-{secrets.token_hex(3)}"
        # KubeRay's K8sJobMode submitter: submit through the Jobs API and follow the job's log to its end
        c["command"] = ["/bin/sh", "-c", "ray job submit --address=http://$RAY_DASHBOARD_ADDRESS "
                        "--submission-id=$RAY_JOB_SUBMISSION_ID "
                        f"--entrypoint-num-cpus={spec.get('entrypointNumCpus', 0)} -- {spec['entrypoint']}"]
        c["env"] = c.get("env", []) + ray_env + [
            {"name": "RAY_DASHBOARD_ADDRESS", "value": f"{self.head_svc}:8265"},
            {"name": "RAY_JOB_SUBMISSION_ID", "value": self.submission_id},
        ]

    def _ray_container(self, pod: dict, params: dict, ray_env: list) -> None:
        c = pod["spec"]["containers"][0]
        args = " ".join(f"--{k}" if v == "" else f"--{k}={shlex.quote(v)}" for k, v in params.items())
        c["command"] = ["/bin/sh", "-c", f"ray start {args}"]
        c["env"] = c.get("env", []) + ray_env

    def _service_hosts(self) -> dict[str, str]:
        """Service name -> the IP of the (one) pod it selects; plus the RayJob's head Service."""
        hosts: dict[str, str] = {}
        for d in self.docs:
            if d["kind"] == "Service":
                sel = d["spec"]["selector"]
                match = [p for p in self.pods if _labels_match(sel, p["labels"])]
                if len(match) != 1:
                    raise RuntimeError(f"Service {d['metadata']['name']} selects {len(match)} pods here, need 1")
                hosts[d["metadata"]["name"]] = match[0]["ip"]
        if hasattr(self, "head_pod"):
            hosts[self.head_svc] = self.head_pod["ip"]
        return hosts

    def _pod_spec(self, pod: dict, hosts: dict[str, str]) -> None:
        spec = pod["spec"]
        spec["hostAliases"] = [{"ip": ip, "hostnames": [h]} for h, ip in sorted(hosts.items())]
        for k in ("serviceAccountName", "automountServiceAccountToken", "imagePullSecrets"):
            spec.pop(k, None)
        vols = []
        for v in spec.get("volumes", []):
            if "configMap" in v:
                folder = self.workdir / "configmaps" / pod["name"] / v["name"]
                folder.mkdir(parents=True, exist_ok=True)
                for key, text in self.configmaps[v["configMap"]["name"]].items():
                    (folder / key).write_text(text)
                vols.append({"name": v["name"], "hostPath": {"path": str(folder), "type": "Directory"}})
            elif "emptyDir" in v:
                base = self.shm if v["emptyDir"].get("medium") == "Memory" else self.workdir / "emptydir"
                folder = base / f"{pod['name']}-{v['name']}"
                folder.mkdir(parents=True, exist_ok=True)
                os.chmod(folder, 0o1777)  # the pods run as uid 10001
                vols.append({"name": v["name"], "hostPath": {"path": str(folder), "type": "Directory"}})
            else:
                raise RuntimeError(f"{pod['name']}: volume {v} has no podman translation")
        spec["volumes"] = vols
        for c in spec.get("initContainers", []) + spec["containers"]:
            env = {}
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                elif "secretKeyRef" in e.get("valueFrom", {}):
                    ref = e["valueFrom"]["secretKeyRef"]
                    env[e["name"]] = self.secrets[ref["name"]][ref["key"]]
                elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                    env[e["name"]] = pod["name"]
                else:
                    raise RuntimeError(f"{pod['name']}: env {e} has no podman translation")
            c["env"] = [{"name": k, "value": v} for k, v in env.items()]
            for key in ("command", "args"):
                if key in c:  # Kubernetes expands $(VAR) from the container's env; podman does not
                    c[key] = [_expand(a, env) for a in c[key]]
            for probe in ("livenessProbe", "readinessProbe"):
                p = c.pop(probe, None)
                if p and "httpGet" in p and probe == "readinessProbe":
                    port = p["httpGet"]["port"]
                    if isinstance(port, str):
                        port = next(x["containerPort"] for x in c.get("ports", []) if x.get("name") == port)
                    pod["probes"].append(f"http://{pod['ip']}:{port}{p['httpGet']['path']}")
            # podman 4.3's kube play publishes every containerPort on the host (Kubernetes does not without
            # hostPort): drop them, the pods reach each other on the network and this script reaches the pods
            c.pop("ports", None)
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                res.get(part, {}).pop("nvidia.com/gpu", None)  # no GPU here: the worker runs CPU actors
            c["imagePullPolicy"] = "Never"
        pod["manifest"] = {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": pod["name"], "labels": pod["labels"]}, "spec": spec}


def _expand(text: str, env: dict[str, str]) -> str:
    for k, v in env.items():
        text = text.replace(f"$({k})", v)
    return text


# --------------------------------------------------------------------------------------------------
# The run


class ImageTest:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.tag = f"localhost/insarcloud:image-test-{os.getpid()}"
        self.base = args.base or f"localhost/insarcloud-base:bookworm-{os.getpid()}"
        self.tmp = Path(tempfile.mkdtemp(prefix="insarcloud-image-test-"))
        self.shm = Path(tempfile.mkdtemp(prefix="insarcloud-image-test-", dir="/dev/shm"))
        self.network = f"insarcloud-image-test-{os.getpid()}"
        self.pods: list[str] = []
        self.moto: subprocess.Popen | None = None
        self.images_before: set[str] = set()
        self.built: set[str] = set()  # image ids (prefixes) the builds of this run printed
        self.pause_before = ""
        self.made_network = False
        self.times: dict[str, float] = {}
        self.summary: dict[str, Any] = {}

    # ---- steps

    def preflight(self) -> None:
        if not shutil.which("podman"):
            raise Skip("podman is not installed (`make image-deps` installs podman, runc and mmdebstrap "
                       "from Debian's registry)")
        info = podman("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}", check=False)
        if info.returncode != 0:
            raise Skip(f"`podman info` fails: {info.stderr.strip()[-300:]}")
        log(f"podman runtime/cgroups: {info.stdout.strip()} (config {os.environ.get('CONTAINERS_CONF')})")
        if not self.a.base and not shutil.which("mmdebstrap"):
            raise Skip("mmdebstrap is not installed (needed for a base image without a public registry; "
                       "`make image-deps`, or pass --base IMAGE)")
        self.images_before = set(podman("images", "-a", "-q", "--no-trunc").stdout.split())
        self.pause_before = podman("images", "--format", "{{.Repository}}", check=False).stdout

    def step(self, name: str, fn, *a) -> Any:
        t0 = time.monotonic()
        log(f"{name} ...")
        try:
            return fn(*a)
        finally:
            self.times[name] = round(time.monotonic() - t0, 1)
            log(f"{name}: {self.times[name]} s")

    def make_base(self) -> None:
        if self.a.base:
            return
        sh([str(REPO / "deploy" / "make_base_image.sh"), self.base], timeout=1800)
        # can this machine run a container at all? (cgroups, runtime, ulimits)
        run = podman("run", "--rm", "--network", "none", self.base, "python3", "-c", "print('ok')", check=False)
        if run.returncode != 0 or run.stdout.strip() != "ok":
            raise Skip(f"podman cannot run a container here: {run.stderr.strip()[-500:]}")

    def build(self) -> None:
        mounts, local_torch = pip_build_config(self.tmp)
        build_args = ["--build-arg", f"BASE_IMAGE={self.base}"]
        if local_torch:  # the machine's CPU wheel through find-links; PyPI for the rest
            build_args += ["--build-arg", "TORCH_INDEX_URL=https://pypi.org/simple"]
        cmd = ["podman", "build", "-f", "deploy/Dockerfile.cpu", "--ignorefile", "deploy/Dockerfile.cpu.dockerignore",
               "--layers", "--network", "host", *build_args, *mounts, "-t", self.tag, str(REPO)]
        log(shlex.join(cmd))
        with (self.tmp / "build.log").open("w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, timeout=3600).returncode
        self.note_build(self.tmp / "build.log")
        if rc != 0:
            raise RuntimeError(f"image build failed ({rc}):\n" + (self.tmp / "build.log").read_text()[-4000:])
        size = podman("image", "inspect", self.tag, "--format", "{{.Size}}").stdout.strip()
        self.summary["image_size_gb"] = round(int(size) / 1e9, 2)

    def note_build(self, build_log: Path) -> None:
        """Remember the image ids a `podman build` printed ("--> <id>": every step's layer and the result)."""
        for line in build_log.read_text(errors="replace").splitlines():
            if line.startswith("--> ") and all(c in "0123456789abcdef" for c in line[4:].strip()):
                self.built.add(line[4:].strip())

    def contents(self) -> None:
        env = {**os.environ, "INSARCLOUD_TEST_IMAGE": self.tag, "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider",
                              "tests/deploy/test_image_contents.py"], cwd=REPO, env=env, text=True,
                             capture_output=True, timeout=1800)
        print(out.stdout[-3000:], flush=True)
        if out.returncode != 0 or "skipped" in out.stdout.splitlines()[-1]:
            raise RuntimeError("image contents tests failed or skipped:\n" + out.stderr[-2000:])
        version = podman("run", "--rm", "--network", "none", self.tag, "insarcloud", "--version", check=False)
        self.summary["insarcloud_version"] = (version.stdout.strip() if version.returncode == 0 else
                                              "no --version on this branch (--help of every sub-command checked)")

    def network_up(self) -> str:
        used = podman("network", "ls", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}").stdout
        for _ in range(50):
            n = random.randint(100, 250)
            if f"10.89.{n}." not in used:
                break
        subnet = f"10.89.{n}"
        podman("network", "create", "--subnet", f"{subnet}.0/24", "--gateway", f"{subnet}.1", self.network)
        self.made_network = True
        return subnet

    def render(self, endpoint: str) -> list[dict]:
        sys.path.insert(0, str(REPO / "tests" / "deploy"))
        from deploy_checks import render, validate_manifest

        repo, tag = self.tag.rsplit(":", 1)
        small = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
        values = {
            "fullnameOverride": "it",
            "image": {"cpu": {"repository": repo, "tag": tag}, "gpu": {"repository": repo, "tag": tag}},
            "storage": {"region": "us-east-1", "endpointUrl": endpoint,
                        "credentials": {"mode": "secret", "existingSecret": "insarcloud-s3"}},
            "dask": {"mode": "deployments", "scheduler": {"resources": small},
                     "worker": {"replicas": 1, "nthreads": 2, "resources": small}},
            "ray": {"shmSizeLimit": "1Gi", "head": {"resources": small},
                    "gpuWorkers": {"resources": small, "tolerations": []}},
            "job": {"logLevel": "INFO"},
            "areaJob": {"config": {
                "version": 1,
                "area": {"name": "galapagos", "description": "image test", "bbox": [-92.5, -1.5, -90.5, 0.5]},
                "frames": [FRAME],
                "source_url": f"s3://{BUCKET}/licsar",
                "output_url": f"s3://{BUCKET}/out",
                # LiCSAR publishes no unw.tif for this frame (tests/data/licsar/README.md): unwrap before invert
                "stages": ["ingest", "qc", "quality", "unwrap", "invert", "noise"],
                "params": {"quality": {"num_actors": 1}, "noise": {"class_size": 256}},
                "report": {"enabled": False},
            }},
        }
        docs = render(values, name="it", namespace="insar")
        for d in docs:
            validate_manifest(d)  # what is played is what the schema tests accept
        (self.tmp / "rendered.yaml").write_text(yaml.safe_dump_all(docs))
        return docs

    def moto_up(self, host: str, port: int) -> str:
        self.moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://{host}:{port}"
        self.endpoint = endpoint
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)  # noqa: S310 (local)
                return endpoint
            except OSError:
                if self.moto.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.3)

    def upload(self, endpoint: str) -> int:
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing")
        fs.mkdir(BUCKET)
        n = 0
        for f in sorted(LICSAR.rglob("*")):
            if f.is_file():
                fs.put_file(str(f), f"{BUCKET}/licsar/106/{FRAME}/{f.relative_to(LICSAR)}")
                n += 1
        return n

    def play(self, pod: dict) -> None:
        path = self.tmp / f"{pod['name']}.yaml"
        path.write_text(yaml.safe_dump(pod["manifest"]))
        self.pods.append(pod["name"])
        podman("kube", "play", "--network", self.network, "--ip", pod["ip"], str(path), timeout=300)

    def wait_ready(self, pods: list[dict], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        for pod in pods:
            for url in pod["probes"]:  # the chart's own readiness probes, polled from here
                while True:
                    try:
                        with urllib.request.urlopen(url, timeout=3) as r:  # noqa: S310 (local)
                            if r.status == 200:
                                log(f"ready: {pod['name']} ({url})")
                                break
                    except OSError:
                        pass
                    state = podman("pod", "inspect", pod["name"], "--format", "{{.State}}", check=False).stdout
                    if time.monotonic() > deadline or "Exited" in state:
                        self.dump_logs(pod["name"])
                        raise RuntimeError(f"{pod['name']} not ready at {url} (pod state {state.strip()})")
                    time.sleep(2)

    def container(self, pod: str) -> str:
        names = podman("ps", "-a", "--filter", f"pod={pod}", "--format", "{{.Names}}").stdout.split()
        return next(n for n in names if not n.endswith("-infra"))

    def dump_logs(self, pod: str, tail: int = 60) -> str:
        out = podman("logs", "--tail", str(tail), self.container(pod), check=False)
        text = out.stdout + out.stderr
        print(f"---- {pod} (last {tail} lines)\n{text}\n----", flush=True)
        return text

    def run_job(self, pods: list[dict]) -> None:
        import warnings

        from distributed import Client

        # this host's Python is 3.11.7, the image's Debian 3.11.2: distributed warns; only a counter is read
        warnings.filterwarnings("ignore", message="Mismatched versions found")

        by_role = {p["role"]: p for p in pods}
        sched = next(p for p in pods if p["role"].endswith("dask-scheduler"))
        servers = [p for p in pods if p["role"] != "submitter"]
        # one after the other, each ready before the next: KubeRay gives Ray workers a wait-for-GCS init
        # container (a worker started before the head's GCS answers exits), Dask workers retry by themselves
        for p in servers:
            if p["name"] not in self.pods:
                self.play(p)
            self.wait_ready([p])
        head = self.container(by_role["ray-head"]["name"])
        status = podman("exec", head, "ray", "status", check=False)
        self.summary["ray_status_before_job"] = status.stdout.strip().splitlines()[-12:]
        with Client(f"tcp://{sched['ip']}:8786", timeout=60) as c:
            before = c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
            self.summary["dask_workers"] = len(c.scheduler_info()["workers"])
        t0 = time.monotonic()
        sub = by_role["submitter"]
        self.play(sub)
        name = self.container(sub["name"])
        rc = podman("wait", name, timeout=self.a.job_timeout).stdout.strip()
        self.times["area_job"] = round(time.monotonic() - t0, 1)
        text = podman("logs", name, check=False)
        (self.tmp / "submitter.log").write_text(text.stdout + text.stderr)
        self.summary["job_log_tail"] = (text.stdout + text.stderr).strip().splitlines()[-25:]
        print("\n".join(self.summary["job_log_tail"]), flush=True)
        if rc != "0":
            self.dump_logs(by_role["ray-head"]["name"], 120)
            self.print_run_log(text.stdout + text.stderr)
            raise RuntimeError(f"the area job's submitter exited with {rc}")
        joblog = text.stdout + text.stderr
        if "exited with 0" not in joblog:
            raise RuntimeError("the driver's exit line is missing from the job log")
        with Client(f"tcp://{sched['ip']}:8786", timeout=60) as c:
            after = c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
        self.summary["dask_transitions_during_job"] = after - before
        if after - before < 50:
            raise RuntimeError(f"the job did not use the Dask scheduler pod ({after - before} transitions)")

    def print_run_log(self, joblog: str) -> None:
        """The area job's own log (on the bucket, named in the driver's 'log:' line): why a frame failed."""
        import fsspec

        url = next((ln.split(None, 1)[1].strip() for ln in joblog.splitlines() if ln.startswith("log:")), None)
        if not url or not url.startswith("s3://"):
            return
        try:
            fs = fsspec.filesystem("s3", endpoint_url=self.endpoint, key="testing", secret="testing")
            lines = fs.cat(url).decode(errors="replace").splitlines()
        except Exception as exc:  # noqa: BLE001 - a diagnostic only; the failure itself is reported anyway
            log(f"could not read the run log {url}: {exc}")
            return
        print(f"---- run log {url} (last 150 lines)\n" + "\n".join(lines[-150:]) + "\n----", flush=True)

    def verify(self, endpoint: str) -> None:
        import numpy as np
        import xarray as xr

        from insarcloud.io import read_marker

        so = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
        cube = f"s3://{BUCKET}/out/cubes/{FRAME}.zarr"
        groups = {}
        for g in ("qc", "quality", "ts_quality_closure", "noise"):
            m = read_marker(cube, g, so) or {}
            if not m.get("complete"):
                raise RuntimeError(f"{cube} group {g} is not complete: {m}")
            groups[g] = True
        ts = xr.open_zarr(cube, group="ts_quality_closure", storage_options=so)
        v = ts["velocity"].values
        finite = float(np.isfinite(v).mean())
        ing = xr.open_zarr(cube, storage_options=so)
        q = xr.open_zarr(cube, group="quality", storage_options=so)
        qv = q[list(q.data_vars)[0]].values
        noise = xr.open_zarr(cube, group="noise", storage_options=so)
        self.summary["cube"] = {
            "ingest_dims": {k: int(n) for k, n in ing.sizes.items()},
            "ts_dims": {k: int(n) for k, n in ts.sizes.items()},
            "velocity_finite_fraction": round(finite, 3),
            "velocity_mm_yr_p5_p95": [round(float(x), 1) for x in np.nanpercentile(v, [5, 95])],
            "quality_range": [round(float(np.nanmin(qv)), 3), round(float(np.nanmax(qv)), 3)],
            "noise_vars": sorted(noise.data_vars)[:8],
        }
        if ing.sizes.get("y") != 320 or ing.sizes.get("x") != 384 or finite < 0.5:
            raise RuntimeError(f"unexpected cube: {self.summary['cube']}")
        if not (0.0 <= np.nanmin(qv) and np.nanmax(qv) <= 1.0):
            raise RuntimeError(f"quality outside [0, 1]: {self.summary['cube']}")
        log(f"cube read back: {self.summary['cube']}")

    # ---- cleanup

    def cleanup(self) -> None:
        for pod in reversed(self.pods):
            podman("pod", "rm", "-f", "-t", "5", pod, check=False, quiet=True)
        if self.made_network:
            podman("network", "rm", "-f", self.network, check=False, quiet=True)
        if self.moto and self.moto.poll() is None:
            self.moto.terminate()
            try:
                self.moto.wait(10)
            except subprocess.TimeoutExpired:
                self.moto.kill()
        if not self.a.keep_images and shutil.which("podman"):
            # only what this run made: its tags, and the layers its own builds printed that did not exist
            # before it started (never -f: an image another run's container uses is left alone)
            podman("rmi", self.tag, check=False, quiet=True)
            if not self.a.base:
                podman("rmi", self.base, check=False, quiet=True)
            if "localhost/podman-pause" not in self.pause_before:  # kube play's infra image, made for this run
                self.built.add(podman("images", "-q", "--no-trunc", "localhost/podman-pause",
                                      check=False).stdout.strip().removeprefix("sha256:")[:12] or "-")
            now = podman("images", "-a", "-q", "--no-trunc", check=False).stdout.split()
            ours = [i for i in now if i not in self.images_before
                    and any(i.removeprefix("sha256:").startswith(b) for b in self.built)]
            while ours:  # a parent layer goes once its children are gone: repeat while something goes
                gone = [i for i in ours if podman("rmi", i, check=False, quiet=True).returncode == 0]
                if not gone:
                    log(f"images left (in use elsewhere?): {ours}")
                    break
                ours = [i for i in ours if i not in gone]
        left = [p for p in self.pods if podman("pod", "exists", p, check=False, quiet=True).returncode == 0]
        shutil.rmtree(self.shm, ignore_errors=True)
        if not self.a.keep_logs:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log(f"logs and rendered manifests kept in {self.tmp}")
        if left:
            raise RuntimeError(f"pods left behind: {left}")

    def run(self) -> int:
        try:
            self.preflight()
            self.step("base image (mmdebstrap + podman import)", self.make_base)
            self.step("image build (podman build deploy/Dockerfile.cpu)", self.build)
            if not self.a.skip_contents:
                self.step("inside the image (--help of every sub-command, lock = venv = image)", self.contents)
            subnet = self.network_up()
            gateway = f"{subnet}.1"
            with socket.socket() as sock:  # a free port for moto, chosen before rendering
                sock.bind(("", 0))
                port = sock.getsockname()[1]
            endpoint = f"http://{gateway}:{port}"
            docs = self.render(endpoint)
            tr = Translator(docs, self.tmp, self.shm,
                            {"insarcloud-s3": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}},
                            secrets.token_hex(16), subnet)
            pods = tr.translate()
            # the gateway address exists once a pod is attached to the network: the Dask scheduler first
            self.play(pods[0])
            self.moto_up(gateway, port)
            n = self.upload(endpoint)
            log(f"moto S3 at {endpoint}: {n} files of the LiCSAR crop uploaded")
            self.summary["pods"] = {p["name"]: {"ip": p["ip"], "role": p["role"],
                                                "command": p["spec"]["containers"][0].get("command")
                                                or p["spec"]["containers"][0].get("args")} for p in pods}
            self.step("area job through the pods (ingest, qc, quality, unwrap, invert, noise)", self.run_job, pods)
            self.step("cube read back and checked", self.verify, endpoint)
            status = 0
            log("PASSED")
        except Skip as why:
            log(f"SKIPPED: {why}")
            status = SKIP
            self.summary["skipped"] = str(why)
        except Exception as exc:  # noqa: BLE001 - the message is the report; cleanup follows
            log(f"FAILED: {type(exc).__name__}: {exc}")
            status = 1
            self.summary["failed"] = f"{type(exc).__name__}: {exc}"[:3000]
        finally:
            self.step("cleanup (pods, network, moto, images)", self.cleanup)
            self.times["total"] = round(time.monotonic() - T0, 1)
            self.summary["seconds"] = self.times
            log(f"times: {json.dumps(self.times)}")
            if self.a.json:
                Path(self.a.json).write_text(json.dumps(self.summary, indent=2, default=str))
        return status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="an existing base image (default: make one with mmdebstrap, removed after)")
    ap.add_argument("--keep-images", action="store_true", help="keep the images (faster re-runs while developing)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the build log, manifests and pod logs")
    ap.add_argument("--job-timeout", type=float, default=2400.0)
    ap.add_argument("--skip-contents", action="store_true", help="development only: skip step 3")
    ap.add_argument("--json", help="write times and results here")
    a = ap.parse_args(argv)
    os.environ.setdefault("CONTAINERS_CONF", str(CONF))
    return ImageTest(a).run()


if __name__ == "__main__":
    sys.exit(main())
