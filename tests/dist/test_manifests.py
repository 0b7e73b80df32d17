"""deploy/'s Kubernetes manifests against the API schemas of every Kubernetes version we claim (docs/install.md,
Install on a cluster), with a maintained validator in strict mode (kubernetes-validate: unknown fields are errors): the
DaemonSet as it is, and as the GKE overlay patches it. The Multus NetworkAttachmentDefinition is a custom resource
whose schema the validator does not ship; test_deploy.py checks the chain it carries."""
import copy
import os

import pytest
import yaml
from conftest import REPO

try:
    import kubernetes_validate
except ImportError:  # CI installs requirements-dev.txt (tools/setup.sh); elsewhere say what is missing
    if os.environ.get("CI"):
        raise
    pytest.skip("kubernetes-validate is not installed: pip install -r requirements-dev.txt", allow_module_level=True)

DEPLOY = REPO / "deploy"
KUBERNETES = [f"1.{minor}" for minor in range(30, 38)]  # docs/install.md: "Kubernetes 1.30 to 1.37"


def daemonset():
    return yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())


def with_gke_overlay(document):
    """The DaemonSet as `kubectl apply -k deploy/gke` makes it: the overlay's JSON patch applied."""
    overlay = yaml.safe_load((DEPLOY / "gke" / "kustomization.yaml").read_text())
    patched = copy.deepcopy(document)
    for patch in overlay["patches"]:
        for op in yaml.safe_load(patch["patch"]):
            assert op["op"] == "replace", op
            *parents, last = op["path"].lstrip("/").split("/")
            target = patched
            for key in parents:
                target = target[int(key)] if isinstance(target, list) else target[key]
            target[int(last) if isinstance(target, list) else last] = op["value"]
    return patched


def test_the_install_page_claims_the_versions_tested():
    assert f"Kubernetes {KUBERNETES[0]} to {KUBERNETES[-1]}" in (REPO / "docs" / "install.md").read_text()


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("variant", ["deploy", "deploy/gke"])
def test_the_daemonset_is_valid_for_every_claimed_kubernetes(version, variant):
    document = daemonset() if variant == "deploy" else with_gke_overlay(daemonset())
    assert kubernetes_validate.validate(document, version, strict=True) == version


def test_strict_validation_rejects_an_unknown_field():
    """What makes the check worth having: a misspelt field passes a YAML parser and non-strict validation."""
    document = daemonset()
    document["spec"]["template"]["spec"]["initContainers"][0]["terminationMessagePolicyy"] = "FallbackToLogsOnError"
    kubernetes_validate.validate(document, KUBERNETES[0], strict=False)
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationMessagePolicyy"):
        kubernetes_validate.validate(document, KUBERNETES[0], strict=True)


def test_the_gke_overlay_changes_only_the_cni_bin_dir():
    document, patched = daemonset(), with_gke_overlay(daemonset())
    assert patched["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] == "/home/kubernetes/bin"
    patched["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] = "/opt/cni/bin"
    assert patched == document
