"""The samples and the demo pin their models by sha256: every digest must be the digest of the file the
lab's model store serves (the zoo's), and the zoo must build the same bytes every time, or the samples
would fail with ModelDigestMismatch on a fresh machine."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from edgetenant import zoo

REPO = Path(__file__).resolve().parents[2]
PINNED = [
    *sorted((REPO / "manifests" / "samples").glob("*.yaml")),
    *sorted((REPO / "hack" / "demo").glob("*.yaml")),
]


def pinned_models() -> list[tuple[str, str, str]]:
    """(file, served model file name, sha256) for every tenant that pins a lab model-store URI."""
    found = []
    for path in PINNED:
        for doc in yaml.safe_load_all(path.read_text()):
            model = ((doc or {}).get("spec") or {}).get("model") or {}
            if "sha256" in model:
                name = re.sub(r"^http://10\.42\.0\.1:8080/", "", model["uri"])
                assert name != model["uri"], f"{path.name}: a pinned sample names the lab's model store"
                found.append((path.name, name, model["sha256"]))
    return found


def test_the_samples_pin_their_models() -> None:
    names = {name for _, name, _ in pinned_models()}
    assert {"mobilenet_v2.onnx", "resnet18.onnx", "resnet50.onnx", "inception_v3.onnx"} <= names


@pytest.mark.parametrize(("where", "name", "digest"), pinned_models())
def test_a_pinned_digest_is_the_served_files(
    zoo_models: dict[str, Path], where: str, name: str, digest: str
) -> None:
    served = zoo_models[Path(name).stem]
    assert hashlib.sha256(served.read_bytes()).hexdigest() == digest, f"{where}: {name}"


def test_the_zoo_builds_the_same_bytes_again(zoo_models: dict[str, Path]) -> None:
    model, _ = zoo.build_model("mobilenet_v2")
    assert model.SerializeToString() == zoo_models["mobilenet_v2"].read_bytes()
