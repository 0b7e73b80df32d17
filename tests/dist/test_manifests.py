"""deploy/'s Kubernetes manifests as `kubectl apply -k` renders them (the real kustomize: tests/beds/manifests.py) for
`deploy/` and `deploy/gke`, against the API schemas of every Kubernetes version we claim (docs/install.md, Install
on a cluster), with a maintained validator in strict mode (kubernetes-validate: unknown fields are errors). The Multus
NetworkAttachmentDefinition is a custom resource whose schema the validator does not ship; test_deploy.py checks
the chain it carries. The sample pod of docs/quickstart.md is validated as it is."""
import os

import pytest
import yaml
from conftest import REPO
from beds.manifests import VARIANTS, daemonset, render

try:
    import kubernetes_validate
except ImportError:  # CI installs requirements-dev.txt (tools/setup.sh); elsewhere say what is missing
    if os.environ.get("CI"):
        raise
    pytest.skip("kubernetes-validate is not installed: pip install -r requirements-dev.txt", allow_module_level=True)

KUBERNETES = [f"1.{minor}" for minor in range(30, 38)]  # docs/install.md: "Kubernetes 1.30 to 1.37"


@pytest.fixture(scope="module")
def rendered():
    return {variant: render(variant) for variant in VARIANTS}


def test_the_install_page_claims_the_versions_tested():
    assert f"Kubernetes {KUBERNETES[0]} to {KUBERNETES[-1]}" in (REPO / "docs" / "install.md").read_text()


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_manifest_is_valid_for_every_claimed_kubernetes(version, variant, rendered):
    for document in rendered[variant]:
        assert kubernetes_validate.validate(document, version, strict=True) == version


@pytest.mark.parametrize("version", KUBERNETES)
def test_the_sample_pod_is_valid_for_every_claimed_kubernetes(version):
    pod = yaml.safe_load((REPO / "deploy" / "sample-pod.yaml").read_text())
    assert kubernetes_validate.validate(pod, version, strict=True) == version


def test_strict_validation_rejects_an_unknown_field():
    """What makes the check worth having: a misspelt field passes a YAML parser and non-strict validation."""
    document = daemonset()
    document["spec"]["template"]["spec"]["initContainers"][0]["terminationMessagePolicyy"] = "FallbackToLogsOnError"
    kubernetes_validate.validate(document, KUBERNETES[0], strict=False)
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationMessagePolicyy"):
        kubernetes_validate.validate(document, KUBERNETES[0], strict=True)


def test_the_gke_overlay_changes_only_the_cni_bin_dir(rendered):
    [document], [patched] = rendered["deploy"], rendered["deploy/gke"]
    assert document["kind"] == "DaemonSet"
    assert document["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] == "/opt/cni/bin"
    assert patched["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] == "/home/kubernetes/bin"
    patched["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] = "/opt/cni/bin"
    assert patched == document
