"""OpenVINO IR is two files: the fetcher brings the weights (`.bin`) beside the `.xml`, first, from the
same place, and installs the OpenVINO shim; a URI that does not name an `.xml` is refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetenant.dataplane import fetch


@pytest.fixture
def store(tmp_path: Path) -> Path:
    source = tmp_path / "store"
    source.mkdir()
    (source / "mobilenet.xml").write_text("<net/>")
    (source / "mobilenet.bin").write_bytes(b"\x00" * 64)
    return source


def fetch_ir(store: Path, repo: Path) -> list[str]:
    """The fetcher's arguments for the store's IR as model `m` of the repository `repo`."""
    return [
        "--uri",
        f"file://{store}/mobilenet.xml",
        "--dest",
        str(repo),
        "--model",
        "m",
        "--format",
        "openvino",
    ]


def test_openvino_ir_arrives_with_its_weights_and_shim(store: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    assert fetch.main([*fetch_ir(store, repo), "--backend", "python"]) == 0
    version = repo / "m" / "1"
    assert (version / "model.xml").read_text() == "<net/>"
    assert (version / "model.bin").read_bytes() == b"\x00" * 64
    assert (version / "model.py").is_file()


def test_missing_weights_fail_before_the_model_lands(store: Path, tmp_path: Path) -> None:
    (store / "mobilenet.bin").unlink()
    repo = tmp_path / "models"
    assert fetch.main(fetch_ir(store, repo)) == 1
    assert not (repo / "m" / "1" / "model.xml").exists()  # Triton never sees an IR without weights


def test_a_non_xml_uri_for_openvino_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(fetch.FetchError, match=r"does not name a \.xml"):
        fetch.companion_uri("https://user:pw@models.example/m.onnx", "openvino")
    assert (
        fetch.companion_uri("https://models.example/m.xml?v=2", "openvino")
        == "https://models.example/m.bin?v=2"
    )
    assert fetch.companion_uri("https://models.example/m.onnx", "onnx") is None
