"""The fences around Winnow's pods, on the rendered manifests (see tests/test_k8s.py):
who may connect to them (NetworkPolicy), where a Kubernetes API token is mounted, and where a
read-only root filesystem leaves room to write.

Pods are described with the labels KubeRay gives them (its labelPod in
ray-operator/controllers/ray/common/pod.go), since the policies select those pods, not the
RayJob; no cluster runs here, so whether a network plugin enforces the policies is not tested.
"""

from __future__ import annotations

import os
import re
import tempfile

import pytest
from ray.autoscaler._private.kuberay import node_provider

from pipelines import views
from tests.conftest import REPO
from tests.test_k8s import TARGETS, containers, one, pod_templates, render_all

DASHBOARD = 8265
RAY_PORTS = (6379, DASHBOARD, 10001, 52365, 8080, 12345)  # GCS, dashboard, client, agent, metrics, a worker
TOKEN_DIR = os.path.dirname(node_provider.IN_CLUSTER_TOKEN_PATH)  # where Ray's autoscaler reads it
CACHE_VARIABLES = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TRITON_HOME", "CUDA_CACHE_PATH", "NUMBA_CACHE_DIR")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return render_all()


def kuberay_pods(rayjob: dict) -> dict[str, dict]:
    """{role: the labels of its pods once KubeRay creates them} (the cluster's name is random)."""
    pods = {}
    for role, template in pod_templates(rayjob).items():
        labels = dict(template["metadata"]["labels"])
        if role == "submitter":
            labels["batch.kubernetes.io/job-name"] = rayjob["metadata"]["name"]
        else:
            group = role.split("/")[-1] if "/" in role else "headgroup"
            node_type = "head" if role == "head" else "worker"
            labels.update({"ray.io/cluster": "winnow-x7k2p", "ray.io/node-type": node_type, "ray.io/group": group})
            labels.update({"ray.io/is-ray-node": "yes", "app.kubernetes.io/created-by": "kuberay-operator"})
        pods[role] = labels
    return pods


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes' label selector semantics ({} selects everything)."""
    matched = all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched &= {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
    return matched


def admitted(policies: list[dict], pod: dict, port: int, peer_pod: dict, peer_namespace: str = "same") -> bool:
    """Whether a pod (labels `peer_pod`, in `peer_namespace`) may connect to `pod` on `port`."""
    covering = [p for p in policies if selects(p["spec"]["podSelector"], pod) and "Ingress" in p["spec"]["policyTypes"]]
    if not covering:
        return True  # a pod no policy selects is open to all
    for policy in covering:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
                continue
            for peer in rule.get("from", [{"namespaceSelector": {}}]):  # no `from`: everyone
                assert "ipBlock" not in peer, f"{policy['metadata']['name']}: an ipBlock admits by address"
                if "namespaceSelector" in peer:
                    namespace_labels = {"kubernetes.io/metadata.name": peer_namespace}
                    in_namespace = selects(peer["namespaceSelector"], namespace_labels)
                else:
                    in_namespace = peer_namespace == "same"
                if in_namespace and selects(peer.get("podSelector", {}), peer_pod):
                    return True
    return False


@pytest.mark.parametrize("target", TARGETS)
def test_ray_ports_admit_the_clusters_own_pods_and_the_dashboard_the_operator(rendered, target):
    objects = rendered[target]
    rayjob = one(objects, "RayJob")
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods = kuberay_pods(rayjob)
    for role, pod in pods.items():
        for port in RAY_PORTS:
            for peer_role, peer in pods.items():  # head, workers and submitter reach each other
                assert admitted(policies, pod, port, peer), f"{peer_role} -> {role}:{port}"
            assert not admitted(policies, pod, port, {"app": "something-else"}), f"a stranger -> {role}:{port}"
            assert not admitted(policies, pod, port, {}, "other"), f"another namespace -> {role}:{port}"
            if target != "base":  # another Winnow deployment in the same namespace
                other = {**pods["head"], "app.kubernetes.io/instance": "winnow-other"}
                assert not admitted(policies, pod, port, other), f"winnow-other -> {role}:{port}"

    # The operator asks the head's dashboard for the job's status; job submitters may opt in.
    # The namespace is the one docs/deploy.md installs the operator in.
    namespace = re.search(r"helm install kuberay-operator .*?--namespace (\S+)", deploy_doc(), re.DOTALL)[1]
    operator = {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator"}
    client = {"winnow/ray-client": "true"}
    for port in RAY_PORTS:
        head, worker = pods["head"], pods["worker/cpu"]
        assert admitted(policies, head, port, operator, namespace) == (port == DASHBOARD), port
        assert admitted(policies, head, port, client) == (port == DASHBOARD), port
        assert not admitted(policies, worker, port, operator, namespace), port
        assert not admitted(policies, worker, port, client), port
        assert not admitted(policies, head, port, operator, "default")


def deploy_doc() -> str:
    return (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("target", TARGETS)
def test_only_the_autoscaler_container_holds_a_kubernetes_api_token(rendered, target):
    rayjob = one(rendered[target], "RayJob")
    cluster = rayjob["spec"]["rayClusterSpec"]
    for role, template in pod_templates(rayjob).items():
        assert template["spec"]["automountServiceAccountToken"] is False, role
    head_volumes = {v["name"]: v for v in cluster["headGroupSpec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in cluster["autoscalerOptions"]["volumeMounts"]}
    assert mounts[TOKEN_DIR]["readOnly"] is True
    sources = head_volumes[mounts[TOKEN_DIR]["name"]]["projected"]["sources"]
    token = next(s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s)
    assert "audience" not in token and 600 <= token["expirationSeconds"] <= 3600  # the API server's, short-lived
    files = {item["path"] for s in sources for item in next(iter(s.values())).get("items", [])} | {token["path"]}
    for wanted in (node_provider.IN_CLUSTER_TOKEN_PATH, node_provider.IN_CLUSTER_CA_CERT_PATH):
        assert os.path.relpath(wanted, TOKEN_DIR) in files, wanted
    for name, c in containers(rayjob):  # no Ray container, init or submitter sees it
        for mount in c.get("volumeMounts", []):
            assert mount["name"] != mounts[TOKEN_DIR]["name"] and not mount["mountPath"].startswith("/var/run"), name


def on_scratch(path: str, mounts: list[dict], volumes: dict[str, dict]) -> bool:
    """Whether `path` lies on a writable emptyDir: the deepest mount holding it decides."""
    holding = [m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not holding:
        return False  # the root filesystem, read-only
    mount = max(holding, key=lambda m: len(m["mountPath"]))
    return "emptyDir" in volumes[mount["name"]] and not mount.get("readOnly", False)


@pytest.mark.parametrize("target", TARGETS)
def test_a_read_only_root_leaves_an_emptydir_wherever_ray_and_the_code_write(rendered, target):
    rayjob = one(rendered[target], "RayJob")
    # DuckDB (pipelines.views) spills under Python's temporary folder, checked below as TMPDIR.
    duckdb_spill = views.duckdb_connection().execute("SELECT current_setting('temp_directory')").fetchone()[0]
    assert os.path.dirname(duckdb_spill) == tempfile.gettempdir()
    head_volumes = {}
    for role, template in pod_templates(rayjob).items():
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        head_volumes = volumes if role == "head" else head_volumes
        for c in template["spec"]["containers"]:
            name, mounts = f"{role}/{c['name']}", c.get("volumeMounts", [])
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
            # KubeRay mounts a memory-backed /dev/shm sized to the memory limit unless one is there.
            assert "/dev/shm" not in [m["mountPath"] for m in mounts], name
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            written = [env.get("TMPDIR", "/tmp")]  # Python's tempfile: checkpoints, logs of s3 runs
            if role != "submitter":
                assert set(CACHE_VARIABLES) <= set(env), name
                written += ["/tmp/ray", *(env[v] for v in CACHE_VARIABLES)]
                written.append(os.path.join(env["XDG_CACHE_HOME"], "huggingface"))  # HF's default home
            for path in written:
                assert on_scratch(path, mounts, volumes), f"{name}: {path} is not on a writable emptyDir"
    autoscaler = rayjob["spec"]["rayClusterSpec"]["autoscalerOptions"]
    assert autoscaler["securityContext"]["readOnlyRootFilesystem"] is True
    assert on_scratch("/tmp", autoscaler["volumeMounts"], head_volumes)
