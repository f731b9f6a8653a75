"""Multi-file models: archives (tar, tar.gz, zip) and directories arrive whole, renamed to the names
Triton looks for; an archive that reaches outside itself or is too large unpacked is refused, and every
failure says its reason first (the operator's ModelLoaded reason)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from edgetenant.dataplane import fetch


def tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_onnx_with_external_data_arrives_from_a_tar_gz(tmp_path: Path) -> None:
    archive = tar_gz(tmp_path / "bert.tar.gz", {"bert/bert.onnx": b"graph", "bert/weights.data": b"w" * 100})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    version = tmp_path / "repo" / "bert" / "1"
    main = fetch.fetch_model(archive.as_uri(), version, model_format="onnx", sha256=digest)
    assert main == version / "model.onnx"
    assert main.read_bytes() == b"graph"
    assert (version / "weights.data").read_bytes() == b"w" * 100, "external data keeps its name, beside it"
    assert not any(p.name.startswith(".") for p in version.parent.iterdir()), "no staging left behind"


def test_an_openvino_pair_from_a_zip_is_renamed_together(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "ir.zip", "w") as zipped:
        zipped.writestr("net.xml", "<net/>")
        zipped.writestr("net.bin", b"\x01" * 8)
    main = fetch.fetch_model((tmp_path / "ir.zip").as_uri(), tmp_path / "v", model_format="openvino")
    assert main.name == "model.xml"
    assert (tmp_path / "v" / "model.bin").read_bytes() == b"\x01" * 8


def test_a_directory_on_a_claim_is_copied_whole(tmp_path: Path) -> None:
    source = tmp_path / "pvc" / "store" / "resnet"
    source.mkdir(parents=True)
    (source / "model.onnx").write_bytes(b"g")
    (source / "extra.data").write_bytes(b"d")
    main = fetch.fetch_model(
        "pvc://store/resnet/", tmp_path / "v", model_format="onnx", pvc_root=tmp_path / "pvc"
    )
    assert sorted(p.name for p in main.parent.iterdir()) == ["extra.data", "model.onnx"]


def test_a_node_path_is_read_under_the_host_root(tmp_path: Path) -> None:
    (tmp_path / "host" / "srv").mkdir(parents=True)
    (tmp_path / "host" / "srv" / "m.onnx").write_bytes(b"onnx")
    main = fetch.fetch_model(
        "file:///srv/m.onnx", tmp_path / "v", model_format="onnx", host_root=tmp_path / "host"
    )
    assert main.read_bytes() == b"onnx"


@pytest.mark.parametrize(
    ("files", "reason", "words"),
    [
        ({"../evil.onnx": b"x"}, fetch.INVALID, "names a path outside it"),
        ({"a.onnx": b"x", "b.onnx": b"y"}, fetch.INVALID, "expected exactly one model.onnx"),
        ({"big.onnx": b"x" * 5000}, fetch.TOO_LARGE, "over the limit"),
    ],
)
def test_bad_archives_are_refused_with_their_reason(
    tmp_path: Path, files: dict[str, bytes], reason: str, words: str
) -> None:
    archive = tar_gz(tmp_path / "m.tgz", files)
    with pytest.raises(fetch.FetchError, match=words) as caught:
        fetch.fetch_model(archive.as_uri(), tmp_path / "v", model_format="onnx", max_bytes=4096)
    assert caught.value.reason == reason
    assert not (tmp_path / "evil.onnx").exists()
    assert not (tmp_path / "v").exists() or not any((tmp_path / "v").iterdir()), "nothing installed"


def test_a_digest_cannot_pin_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "model.onnx").write_bytes(b"g")
    with pytest.raises(fetch.FetchError, match="serve a directory as an archive") as caught:
        fetch.fetch_model(f"file://{tmp_path}/d/", tmp_path / "v", model_format="onnx", sha256="0" * 64)
    assert caught.value.reason == fetch.INVALID


def test_the_cli_puts_the_reason_first(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetenant.dataplane.fetch",
            f"--uri=file://{tmp_path}/missing.onnx",
            f"--dest={tmp_path}/repo",
            "--model=m",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("edgetenant fetch: ModelNotFound: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_older_python_without_tar_filters_still_refuses_escapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetcher image's Debian Python (3.11.2) has no tarfile filters; a real kubelet found it."""
    monkeypatch.delattr(tarfile, "data_filter")
    archive = tar_gz(tmp_path / "m.tgz", {"m/model.onnx": b"g", "m/w.data": b"w"})
    assert fetch.fetch_model(archive.as_uri(), tmp_path / "v", model_format="onnx").read_bytes() == b"g"
    evil = tar_gz(tmp_path / "evil.tgz", {"/tmp/abs.onnx": b"x"})
    with pytest.raises(fetch.FetchError, match="names a path outside it"):
        fetch.fetch_model(evil.as_uri(), tmp_path / "w", model_format="onnx")
