"""The image definition, the Dockerfiles and the manifests agree (no built image needed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hack.images import build

from edgetenant.render.kube import RenderSettings
from edgetenant.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# Vendor images the shipped classes may name as they are (users bring them; no Dockerfile here).
OFFICIAL = re.compile(r"^nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3(-igpu)?$")
# Device plugins we configure but do not build, each only where manifests/vendor-device-plugins names it
# (squat/generic-device-plugin publishes no release tags: the manifest says to pin a checked digest).
VENDOR_DEVICE_PLUGINS = {"docker.io/squat/generic-device-plugin:latest"}
VENDOR_DIR = "manifests/vendor-device-plugins/"


def built_references() -> set[str]:
    definition = build.load_definition()
    return {spec.reference(definition.registry) for spec in definition.images}


def runtime_references() -> set[str]:
    definition = build.load_definition()
    return {f"{definition.registry}/{name}:{runtime['tag']}" for name, runtime in definition.runtimes.items()}


def manifest_images() -> dict[str, set[str]]:
    """Every image reference in manifests/ (classes, overlay patches, the operator) -> files naming it."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "manifests").rglob("*.yaml")):
        for match in re.finditer(r"image:\s*\"?([a-z0-9./_-]+:[A-Za-z0-9._-]+)", path.read_text()):
            found.setdefault(match.group(1), set()).add(str(path.relative_to(REPO)))
    return found


def test_generated_dockerfiles_are_current() -> None:
    """The built images' Dockerfiles come from images/images.toml and run the same builder."""
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "images" / "build.py"), "dockerfiles", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_defined_image_has_a_dockerfile() -> None:
    definition = build.load_definition()
    names = [spec.name for spec in definition.images] + list(definition.runtimes)
    missing = [name for name in names if not (REPO / "images" / name / "Dockerfile").is_file()]
    assert not missing
    on_disk = {path.parent.name for path in (REPO / "images").glob("*/Dockerfile")}
    assert on_disk == set(names), "a Dockerfile under images/ that images.toml does not define"


@pytest.mark.parametrize(
    "dockerfile", sorted((REPO / "images").glob("*/Dockerfile")), ids=lambda p: p.parent.name
)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_dockerfiles_use_their_pinned_base_and_tag() -> None:
    definition = build.load_definition()
    for name, runtime in definition.runtimes.items():
        text = (REPO / "images" / name / "Dockerfile").read_text()
        assert f"FROM {runtime['base']}" in text or f"{runtime['base']}" in text, name
        assert f"{definition.registry}/{name}:{runtime['tag']}" in text, f"{name}: the build command's tag"


def test_triton_images_pin_what_the_lab_serves_with() -> None:
    """The data-plane runtime of the lab and the Triton images run the same Triton, runtimes and numpy."""
    pins = dict(
        line.split("==", 1)
        for line in (REPO / "hack" / "dataplane" / "requirements.txt").read_text().split()
        if "==" in line
    )
    definition = build.load_definition()
    for spec in definition.images:
        if not spec.triton:
            continue
        pinned = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", (REPO / spec.python).read_text(), re.MULTILINE)
        assert pinned, spec.python
        for package, version in pinned:
            assert pins.get(package) == version, (
                f"{spec.python}: {package}=={version} vs the lab's {pins.get(package)}"
            )
        assert any(package == "numpy" and version.startswith("1.") for package, version in pinned)


def test_manifests_name_only_images_that_are_built_or_have_a_dockerfile() -> None:
    """What `kubectl apply -k` pulls is exactly what `make images` produces (or a device runtime's
    Dockerfile, or NVIDIA's own Triton image)."""
    ours = built_references() | runtime_references()
    for reference, files in manifest_images().items():
        if reference in VENDOR_DEVICE_PLUGINS:
            assert all(f.startswith(VENDOR_DIR) for f in files), f"{reference} outside {VENDOR_DIR}: {files}"
            continue
        assert reference in ours or OFFICIAL.match(reference), (
            f"{reference} (in {sorted(files)}) is built nowhere"
        )
    assert Settings().fetcher_image in built_references()
    assert RenderSettings().fetcher_image in built_references()


def test_operator_deployment_runs_the_built_operator_image() -> None:
    deployment = yaml.safe_load((REPO / "manifests" / "operator" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    definition = build.load_definition()
    assert container["image"] == definition.image("operator").reference(definition.registry)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_operator_image_installs_only_base_dependencies() -> None:
    """No zoo builder, ONNX Runtime or plotting in the operator (they are optional extras)."""
    definition = build.load_definition()
    requirements = build.Builder(definition).requirements(definition.image("operator"))
    names = {line.split("==")[0] for line in requirements.splitlines() if "==" in line}
    assert "kopf" in names
    assert "kubernetes" in names
    assert not names & {"onnx", "onnxruntime", "matplotlib"}


def test_layers_are_reproducible(tmp_path: Path) -> None:
    """Same content, other mtimes and creation order -> the same layer digest (what the cache relies on)."""
    digests = []
    for attempt in range(2):
        root = tmp_path / f"root{attempt}"
        names = ["b.txt", "a.txt"] if attempt else ["a.txt", "b.txt"]
        (root / "usr" / "bin").mkdir(parents=True)
        for name in names:
            (root / "usr" / name).write_text(name)
            os.utime(root / "usr" / name, (1000 + attempt, 1000 + attempt))
        (root / "usr" / "bin" / "link").symlink_to("../a.txt")
        digests.append(build.write_layer(root, tmp_path / f"layer{attempt}.tar.gz")[:2])
    assert digests[0] == digests[1]


def test_airgap_overlay_serves_cpu_classes_from_images_built_for_their_nodes() -> None:
    """manifests/overlays/k3s-airgap points the CPU classes at an image `make images` builds for that CPU."""
    definition = build.load_definition()
    archs = {spec.reference(definition.registry): set(spec.archs) for spec in definition.images}
    overlay = yaml.safe_load(
        (REPO / "manifests" / "overlays" / "k3s-airgap" / "kustomization.yaml").read_text()
    )
    node_arch = {"x86-cpu": "amd64", "arm64-cpu": "arm64"}
    patched = set()
    for patch in overlay["patches"]:
        for op in yaml.safe_load(patch["patch"]):
            formats = op["value"] if isinstance(op["value"], list) else [op["value"]]
            for entry in formats:
                assert node_arch[patch["target"]["name"]] in archs[entry["image"]], entry
                patched.add(patch["target"]["name"])
    assert patched == set(node_arch)
