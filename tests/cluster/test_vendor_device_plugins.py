"""The vendor device-plugin manifests and the gpu-feature-discovery component, checked by the lab's real
API server (server-side dry run: schema, defaulting, admission) and its kubectl's kustomize."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tests.lab import Lab

REPO = Path(__file__).resolve().parents[2]


def test_the_vendor_device_plugins_are_accepted_by_the_api_server(lab: Lab) -> None:
    result = lab.kubectl(
        "apply", "--dry-run=server", "-k", str(REPO / "manifests" / "vendor-device-plugins"), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "daemonset.apps/edgetenant-usb-accelerators created (server dry run)" in result.stdout
    assert "configmap/nvidia-device-plugin-config created (server dry run)" in result.stdout


def test_the_gfd_component_selects_the_shared_products(lab: Lab, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes only relative paths
                "resources": [os.path.relpath(REPO / "manifests" / "acceleratorclasses", overlay)],
                "components": [
                    os.path.relpath(
                        REPO / "manifests" / "acceleratorclasses" / "gpu-feature-discovery", overlay
                    )
                ],
            }
        )
    )
    rendered = lab.kubectl("kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay)).stdout
    selectors = {
        d["metadata"]["name"]: d["spec"].get("nodeSelector") for d in yaml.safe_load_all(rendered) if d
    }
    assert selectors["jetson-tx2"] == {"nvidia.com/gpu.product": "Jetson-TX2-SHARED"}
    assert selectors["jetson-nano"] == {"nvidia.com/gpu.product": "Jetson-Nano-SHARED"}
    assert selectors["jetson-orin"] == {"nvidia.com/gpu.product": "Jetson-AGX-Orin-SHARED"}
    assert selectors["x86-cpu"] == {"kubernetes.io/arch": "amd64"}
    # The same classes are accepted by the API server as they are.
    dry = lab.kubectl("apply", "--dry-run=server", "-f", "-", input_text=rendered, check=False)
    assert dry.returncode == 0, dry.stderr
