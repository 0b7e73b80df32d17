"""deploy/'s Kubernetes manifests as a cluster gets them: rendered by the real kustomize (`kubectl kustomize`,
what `kubectl apply -k` runs), so that a test reads what is applied, overlays and all."""
from __future__ import annotations

import shutil
import subprocess
from typing import Any

import yaml

from . import REPO

DEPLOY = REPO / "deploy"
VARIANTS = ("deploy", "deploy/gke")  # `kubectl apply -k deploy`, and on GKE `kubectl apply -k deploy/gke`


def render(variant: str = "deploy") -> list[dict[str, Any]]:
    """The documents `kubectl kustomize <variant>` prints; AssertionError with kustomize's words if it fails."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "the manifests are rendered by `kubectl kustomize`: install kubectl"
    proc = subprocess.run([kubectl, "kustomize", str(REPO / variant)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {variant} failed: {proc.stderr.strip()}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]


def daemonset(variant: str = "deploy") -> dict[str, Any]:
    """The one DaemonSet of the rendered `variant`."""
    [found] = [doc for doc in render(variant) if doc["kind"] == "DaemonSet"]
    return found
