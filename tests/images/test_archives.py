"""What `make images` wrote: OCI archives a container runtime imports by name, for the right CPU.

Runs on every archive in the definition, including the arm64 ones this machine cannot run: their
executables and shared libraries must all be aarch64 (a wrong-architecture wheel fails here).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hack.images import build

from tests.images.support import built_archive

REPO = Path(__file__).resolve().parents[2]
DEFINITION = build.load_definition()
ARCHIVES = [(spec.name, arch) for spec in DEFINITION.images for arch in spec.archs]
ELF_MACHINE = {"amd64": 62, "arm64": 183}  # e_machine: EM_X86_64, EM_AARCH64


def read_json(tar: tarfile.TarFile, name: str) -> Any:
    member = tar.extractfile(name)
    assert member is not None, name
    return json.load(member)


def blob(tar: tarfile.TarFile, digest: str) -> bytes:
    member = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
    assert member is not None, digest
    data = member.read()
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" == digest, "a blob does not match its digest"
    return data


@pytest.mark.parametrize(("name", "arch"), ARCHIVES, ids=[f"{n}-{a}" for n, a in ARCHIVES])
def test_archive_is_a_named_oci_image_for_its_platform(name: str, arch: str) -> None:
    spec = DEFINITION.image(name)
    archive = built_archive(name, arch)
    with tarfile.open(archive) as tar:
        assert read_json(tar, "oci-layout") == {"imageLayoutVersion": "1.0.0"}
        index = read_json(tar, "index.json")
        (descriptor,) = index["manifests"]
        assert descriptor["annotations"]["io.containerd.image.name"] == spec.reference(DEFINITION.registry)
        assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == spec.tag
        assert descriptor["platform"]["architecture"] == arch
        manifest = json.loads(blob(tar, descriptor["digest"]))
        config = json.loads(blob(tar, manifest["config"]["digest"]))
        for layer in manifest["layers"]:
            blob(tar, layer["digest"])
    assert config["architecture"] == arch
    assert config["config"]["User"] == f"{DEFINITION.uid}:{DEFINITION.uid}" != "0:0"
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == spec.tag
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])


@pytest.mark.parametrize(("name", "arch"), ARCHIVES, ids=[f"{n}-{a}" for n, a in ARCHIVES])
def test_package_list_beside_the_archive(name: str, arch: str) -> None:
    archive = built_archive(name, arch)
    lines = Path(f"{archive}.packages.txt").read_text().splitlines()
    debs = {line.split()[1]: line.split()[3] for line in lines if line.startswith("deb ")}
    pips = {line.split()[1].lower() for line in lines if line.startswith("pypi ")}
    assert debs["libc6"] == arch
    assert "python3.11-minimal" in debs
    if name == "operator":
        assert {"kopf", "kubernetes", "edgetenant"} <= pips
        assert not pips & {"onnx", "onnxruntime", "matplotlib"}
    if DEFINITION.image(name).triton:
        assert "nvidia-pytriton" in pips
        assert "numpy" in pips


@pytest.mark.parametrize(("name", "arch"), ARCHIVES, ids=[f"{n}-{a}" for n, a in ARCHIVES])
def test_every_executable_and_library_is_built_for_the_archive_platform(name: str, arch: str) -> None:
    wrong, checked = [], 0
    with tarfile.open(built_archive(name, arch)) as tar:
        manifest_digest = read_json(tar, "index.json")["manifests"][0]["digest"]
        manifest = json.loads(blob(tar, manifest_digest))
        for layer in manifest["layers"]:
            member = tar.extractfile(f"blobs/sha256/{layer['digest'].removeprefix('sha256:')}")
            assert member is not None
            with tarfile.open(fileobj=member, mode="r|gz") as files:
                for info in files:
                    if not info.isreg() or info.size < 64:
                        continue
                    data = files.extractfile(info)
                    assert data is not None
                    head = data.read(20)
                    if head[:4] != b"\x7fELF":
                        continue
                    checked += 1
                    if int.from_bytes(head[18:20], "little") != ELF_MACHINE[arch]:
                        wrong.append(info.name)
    assert checked > 10
    assert not wrong, f"{len(wrong)} files for another CPU, e.g. {wrong[:5]}"


def test_k3s_airgap_script_stages_the_archives_of_one_architecture(tmp_path: Path) -> None:
    images_dir = tmp_path / "agent-images"
    result = subprocess.run(
        [str(REPO / "hack" / "images" / "k3s-airgap.sh"), "--arch", "arm64"],
        env={**os.environ, "K3S_IMAGES_DIR": str(images_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    staged = sorted(path.name for path in images_dir.iterdir())
    expected = sorted(spec.archive_name("arm64") for spec in DEFINITION.images if "arm64" in spec.archs)
    assert staged == expected
    assert "kubectl apply -k manifests/overlays/k3s-airgap" in result.stdout


def test_dockerfile_build_stage_yields_the_archive_files(tmp_path: Path) -> None:
    """The generated Dockerfiles copy what `build.py rootfs` unpacks: the same files, modes and links
    as the archive `make images` wrote (shown on the smallest image)."""
    out = tmp_path / "rootfs"
    subprocess.run(
        [sys.executable, str(REPO / "hack" / "images" / "build.py"), "rootfs", "--image", "model-fetcher",
         "--arch", "amd64", "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    unpacked = {
        path.relative_to(out).as_posix(): (
            path.lstat().st_mode,
            path.lstat().st_size if stat.S_ISREG(path.lstat().st_mode) else 0,
        )
        for path in out.rglob("*")
    }
    archived = {}
    with tarfile.open(built_archive("model-fetcher", "amd64")) as tar:
        manifest = json.loads(blob(tar, read_json(tar, "index.json")["manifests"][0]["digest"]))
        for layer in manifest["layers"]:
            member = tar.extractfile(f"blobs/sha256/{layer['digest'].removeprefix('sha256:')}")
            with tarfile.open(fileobj=member, mode="r|gz") as files:
                for info in files:
                    kind = stat.S_IFDIR if info.isdir() else stat.S_IFLNK if info.issym() else stat.S_IFREG
                    archived[info.name] = (kind | info.mode, info.size if info.isreg() else 0)
    assert unpacked == archived
