"""The model fetcher: every URI scheme, checksums, atomic placement, clear errors; its output serves."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import shim_spec

from edgetenant.adapters.triton import TritonClient
from edgetenant.dataplane import fetch
from edgetenant.dataplane.local import TritonProcess
from edgetenant.dataplane.repository import write_text_atomic
from edgetenant.render.triton import render_model_config

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(scope="module")
def served_dir(tmp_path_factory: pytest.TempPathFactory, zoo_models: dict[str, Path]) -> Path:
    root = tmp_path_factory.mktemp("http")
    (root / "mobilenet_v1.onnx").write_bytes(zoo_models["mobilenet_v1"].read_bytes())
    return root


@pytest.fixture(scope="module")
def http_url(served_dir: Path) -> Iterator[str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_plain_path_and_pvc_uris(tmp_path: Path, zoo_models: dict[str, Path]) -> None:
    source = zoo_models["mobilenet_v1"]
    expected = _sha(source)
    assert fetch.fetch(source.as_uri(), tmp_path / "a" / "model.onnx") == expected
    assert fetch.fetch(str(source), tmp_path / "b" / "model.onnx") == expected
    claim = tmp_path / "pvc" / "models" / "zoo"
    claim.mkdir(parents=True)
    (claim / "m.onnx").write_bytes(source.read_bytes())
    got = fetch.fetch("pvc://models/zoo/m.onnx", tmp_path / "c" / "model.onnx", pvc_root=tmp_path / "pvc")
    assert got == expected
    assert (tmp_path / "c" / "model.onnx").read_bytes() == source.read_bytes()


def test_http_download_with_checksum(tmp_path: Path, http_url: str, served_dir: Path) -> None:
    expected = _sha(served_dir / "mobilenet_v1.onnx")
    dest = tmp_path / "model.onnx"
    assert fetch.fetch(f"{http_url}/mobilenet_v1.onnx", dest, sha256=expected) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no partial file left


def test_checksum_mismatch_installs_nothing(tmp_path: Path, http_url: str) -> None:
    dest = tmp_path / "model.onnx"
    with pytest.raises(fetch.FetchError, match=r"sha256 is [0-9a-f]{64}, expected 00"):
        fetch.fetch(f"{http_url}/mobilenet_v1.onnx", dest, sha256="00" * 32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("uri", "complaint", "reason"),
    [
        ("ftp://models.example/resnet.onnx", "unsupported scheme 'ftp'", fetch.INVALID),
        ("pvc://only-a-claim", r"expected pvc://<claim>/<path", fetch.INVALID),
        ("pvc://models/missing.onnx", "is the claim mounted", fetch.NOT_FOUND),
        ("file:///nonexistent/model.onnx", "is not a file", fetch.NOT_FOUND),
    ],
)
def test_bad_uris_fail_with_a_clear_reason(tmp_path: Path, uri: str, complaint: str, reason: str) -> None:
    with pytest.raises(fetch.FetchError, match=complaint) as caught:
        fetch.fetch(uri, tmp_path / "model.onnx", pvc_root=tmp_path)
    assert caught.value.reason == reason


def test_http_not_found_is_not_retried(tmp_path: Path, http_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(fetch.FetchError, match="HTTP 404") as caught:
        fetch.fetch(f"{http_url}/nope.onnx", tmp_path / "model.onnx", retries=3)
    assert caught.value.reason == fetch.NOT_FOUND
    assert time.monotonic() - started < 2, "a retry would have slept 2 s first"


def test_cli_failure_exits_1_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetenant.dataplane.fetch",
            "--uri",
            "ftp://x/y.onnx",
            "--dest",
            str(tmp_path / "m.onnx"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "edgetenant fetch: ModelSourceInvalid: ftp://x/y.onnx: unsupported scheme"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_fetched_model_with_shim_loads_in_triton(
    triton: TritonProcess, model_repository: Path, http_url: str, run: Run
) -> None:
    """What the tenant pod does: the init container fetches, the ConfigMap holds the config."""
    spec = shim_spec("fetched-mobilenet")
    dest = model_repository / spec.name / "1" / "model.onnx"
    result = subprocess.run(
        [
            sys.executable, "-m", "edgetenant.dataplane.fetch",
            f"--uri={http_url}/mobilenet_v1.onnx", f"--dest={dest}", "--backend=python",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (dest.parent / "model.py").is_file()
    write_text_atomic(model_repository / spec.name / "config.pbtxt", render_model_config(spec))
    client = TritonClient()
    run(client.load_model(triton.url, spec.name))
    ready, why = run(client.model_ready(triton.url, spec.name))
    run(client.unload_model(triton.url, spec.name))
    assert ready, why
