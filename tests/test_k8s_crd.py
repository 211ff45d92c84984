"""The rendered RayJobs against KubeRay's own CRD schemas (../shared/kuberay-crds).

A CRD's openAPIV3Schema accepts unknown fields (the API server prunes them, and kubectl's
default strict field validation rejects them); here every object with declared properties
is closed, so a misspelt field fails as it would on `kubectl apply`. CEL rules
(x-kubernetes-validations) are not evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

import jsonschema
import pytest
import yaml

from tests.conftest import REPO
from tests.test_k8s import TARGETS, one, render_all

CRD_DIR = REPO.parent / "shared" / "kuberay-crds"


def closed(schema):
    """The schema with `nullable` spelt for JSON Schema and every declared object closed."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if result.pop("nullable", False) and "type" in result:
        result["type"] = [result["type"], "null"]
    open_ended = "additionalProperties" in result or result.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in result and not open_ended:
        result["additionalProperties"] = False
    return result


def crd_validator(kind: str) -> Callable[[dict], list[str]]:
    """A function from a manifest to its schema errors ("dotted.path: message")."""
    crd = yaml.load((CRD_DIR / f"ray.io_{kind.lower()}s.yaml").read_text(), Loader=yaml.CSafeLoader)
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1" and v["served"])
    validator = jsonschema.Draft4Validator(closed(version["schema"]["openAPIV3Schema"]))

    def errors(manifest: dict) -> list[str]:
        found = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
        if manifest.get("apiVersion") != "ray.io/v1" or manifest.get("kind") != kind:
            found.append(f"apiVersion/kind: {manifest.get('apiVersion')}/{manifest.get('kind')}")
        return found

    return errors


@pytest.fixture(scope="module")
def validators():
    if not CRD_DIR.is_dir():
        pytest.skip(f"{CRD_DIR} is absent (KubeRay's CRDs live beside the checkout in CI)")
    return {kind: crd_validator(kind) for kind in ("RayJob", "RayCluster")}


@pytest.fixture(scope="module")
def rendered():
    return render_all()


@pytest.mark.parametrize("target", TARGETS)
def test_the_rayjob_and_its_cluster_spec_validate_against_kuberay_crds(rendered, validators, target):
    rayjob = one(rendered[target], "RayJob")
    assert validators["RayJob"](rayjob) == []
    # The embedded cluster spec is a RayCluster spec as it stands (rayjob.yaml says so).
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "winnow"}}
    assert validators["RayCluster"]({**cluster, "spec": rayjob["spec"]["rayClusterSpec"]}) == []


def test_the_validation_catches_a_misspelt_field_a_wrong_type_and_a_wrong_kind(rendered, validators):
    rayjob = one(rendered["base"], "RayJob")
    misspelt = {**rayjob, "spec": {**rayjob["spec"], "shutdownAfterJobFinish": True}}
    assert any("shutdownAfterJobFinish" in error for error in validators["RayJob"](misspelt))
    wrong_type = {**rayjob, "spec": {**rayjob["spec"], "backoffLimit": "one"}}
    assert any(error.startswith("spec.backoffLimit") for error in validators["RayJob"](wrong_type))
    assert validators["RayCluster"](rayjob)  # a RayJob is not a RayCluster
