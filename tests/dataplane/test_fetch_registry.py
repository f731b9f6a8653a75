"""oci:// and s3:// against the lab's real servers: the CNCF registry (htpasswd auth, TLS from the
lab's CA) holding mobilenet_v2 pushed with oras, and versitygw (SigV4 verified with the lab's keys,
TLS) holding the same files in bucket `models`. The fetcher CLI runs as the init container would,
credentials from EDGETENANT_CREDENTIAL_* (the Secret via envFrom), reaching both at the node's
address as a pod does (hack/lab: `lab up` starts and seeds them)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetenant import zoo
from tests.lab import REPO, lab_env, lab_session

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stores() -> Iterator[dict[str, str]]:
    """The lab's `env` (it comes up here unless it runs); this process joins its namespace."""
    session = lab_session()
    next(session)
    env = lab_env()
    assert env is not None and env.get("EDGETENANT_LAB_REGISTRY"), "the lab runs without its model stores"
    yield env
    with pytest.raises(StopIteration):
        next(session)


@pytest.fixture(scope="module")
def zoo_dir() -> Path:
    return zoo.ensure_model("mobilenet_v2").parent


def registry_creds(stores: dict[str, str], **override: str | None) -> dict[str, str | None]:
    return {
        "username": stores["EDGETENANT_LAB_REGISTRY_USER"],
        "password": stores["EDGETENANT_LAB_REGISTRY_PASSWORD"],
        "caBundle": Path(stores["EDGETENANT_LAB_CA"]).read_text(),
        **override,
    }


def s3_creds(stores: dict[str, str], **override: str | None) -> dict[str, str | None]:
    return {
        "accessKeyId": stores["EDGETENANT_LAB_S3_ACCESS_KEY"],
        "secretAccessKey": stores["EDGETENANT_LAB_S3_SECRET_KEY"],
        "caBundle": Path(stores["EDGETENANT_LAB_CA"]).read_text(),
        **override,
    }


def fetcher(
    uri: str, repo: Path, credentials: dict[str, str | None], *extra: str, model_format: str = "onnx"
) -> subprocess.CompletedProcess[str]:
    """The fetcher CLI as the tenant's init container runs it (the credentials Secret via envFrom)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGETENANT_CREDENTIAL_")}
    env["PYTHONPATH"] = str(REPO / "operator")
    env.update({f"EDGETENANT_CREDENTIAL_{k}": v for k, v in credentials.items() if v is not None})
    return subprocess.run(
        [
            *(sys.executable, "-m", "edgetenant.dataplane.fetch", "--uri", uri, "--dest", str(repo)),
            *("--model", "m", "--format", model_format, "--retries", "1", "--timeout", "20", *extra),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fetched(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr


def refused(result: subprocess.CompletedProcess[str], reason: str, *secrets: str) -> None:
    assert result.returncode == 1, result.stdout
    assert f"edgetenant fetch: {reason}:" in result.stderr
    for secret in secrets:
        assert secret not in result.stderr + result.stdout


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- oci:// ---


def test_oci_onnx_pulled_with_the_lab_credentials(
    stores: dict[str, str], zoo_dir: Path, tmp_path: Path
) -> None:
    uri = f"oci://{stores['EDGETENANT_LAB_REGISTRY']}/models/mobilenet_v2:onnx"
    fetched(fetcher(uri, tmp_path, registry_creds(stores)))
    assert (tmp_path / "m/1/model.onnx").read_bytes() == (zoo_dir / "mobilenet_v2.onnx").read_bytes()


def test_oci_openvino_pair(stores: dict[str, str], zoo_dir: Path, tmp_path: Path) -> None:
    if not (zoo_dir / "mobilenet_v2.xml").exists():
        pytest.skip("the zoo has no OpenVINO IR of mobilenet_v2 (the lab seeded none)")
    uri = f"oci://{stores['EDGETENANT_LAB_REGISTRY']}/models/mobilenet_v2:openvino"
    fetched(fetcher(uri, tmp_path, registry_creds(stores), model_format="openvino"))
    assert sha(tmp_path / "m/1/model.xml") == sha(zoo_dir / "mobilenet_v2.xml")
    assert sha(tmp_path / "m/1/model.bin") == sha(zoo_dir / "mobilenet_v2.bin")


def test_oci_wrong_password_is_access_denied(stores: dict[str, str], tmp_path: Path) -> None:
    uri = f"oci://{stores['EDGETENANT_LAB_REGISTRY']}/models/mobilenet_v2:onnx"
    refused(fetcher(uri, tmp_path, registry_creds(stores, password="not-the-password")), "ModelAccessDenied")
    refused(fetcher(uri, tmp_path, registry_creds(stores, username=None, password=None)), "ModelAccessDenied")
    assert not (tmp_path / "m").exists()


def test_oci_wrong_tag_is_not_found(stores: dict[str, str], tmp_path: Path) -> None:
    uri = f"oci://{stores['EDGETENANT_LAB_REGISTRY']}/models/mobilenet_v2:no-such-tag"
    refused(
        fetcher(uri, tmp_path, registry_creds(stores)),
        "ModelNotFound",
        stores["EDGETENANT_LAB_REGISTRY_PASSWORD"],
    )


def test_oci_without_the_lab_ca_is_untrusted(stores: dict[str, str], tmp_path: Path) -> None:
    uri = f"oci://{stores['EDGETENANT_LAB_REGISTRY']}/models/mobilenet_v2:onnx"
    refused(fetcher(uri, tmp_path, registry_creds(stores, caBundle=None)), "ModelSourceUntrusted")


def test_oci_digest_mismatch_installs_nothing(stores: dict[str, str], zoo_dir: Path, tmp_path: Path) -> None:
    uri = f"oci://{stores['EDGETENANT_LAB_REGISTRY']}/models/mobilenet_v2:onnx"
    refused(fetcher(uri, tmp_path, registry_creds(stores), "--sha256", "0" * 64), "ModelDigestMismatch")
    assert not (tmp_path / "m/1").exists()
    # The right digest (the layer's: the file's own sha256) passes.
    fetched(fetcher(uri, tmp_path, registry_creds(stores), "--sha256", sha(zoo_dir / "mobilenet_v2.onnx")))


def test_oci_pinned_by_manifest_digest(stores: dict[str, str], zoo_dir: Path, tmp_path: Path) -> None:
    """oci://...@sha256:<manifest digest>: the manifest's bytes are checked against the pin."""
    host = stores["EDGETENANT_LAB_REGISTRY"]
    request = urllib.request.Request(f"https://{host}/v2/models/mobilenet_v2/manifests/onnx")
    request.add_header("Accept", "application/vnd.oci.image.manifest.v1+json")
    pair = f"{stores['EDGETENANT_LAB_REGISTRY_USER']}:{stores['EDGETENANT_LAB_REGISTRY_PASSWORD']}"
    request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    context = ssl.create_default_context(cafile=stores["EDGETENANT_LAB_CA"])
    with urllib.request.urlopen(request, timeout=20, context=context) as response:
        manifest = response.read()
    assert json.loads(manifest)["artifactType"] == "application/vnd.edgetenant.model.v1"
    digest = hashlib.sha256(manifest).hexdigest()
    fetched(fetcher(f"oci://{host}/models/mobilenet_v2@sha256:{digest}", tmp_path, registry_creds(stores)))
    assert sha(tmp_path / "m/1/model.onnx") == sha(zoo_dir / "mobilenet_v2.onnx")
    other = tmp_path / "other"
    refused(
        fetcher(f"oci://{host}/models/mobilenet_v2@sha256:{'0' * 64}", other, registry_creds(stores)),
        "ModelNotFound",
    )


# --- s3:// ---


def s3(
    stores: dict[str, str],
    uri: str,
    repo: Path,
    creds: dict[str, str | None],
    *extra: str,
    model_format: str = "onnx",
) -> subprocess.CompletedProcess[str]:
    endpoint = ["--s3-endpoint", stores["EDGETENANT_LAB_S3_ENDPOINT"]]
    return fetcher(uri, repo, creds, *endpoint, *extra, model_format=model_format)


def test_s3_onnx_signed_with_the_lab_keys(stores: dict[str, str], zoo_dir: Path, tmp_path: Path) -> None:
    fetched(s3(stores, "s3://models/mobilenet_v2.onnx", tmp_path, s3_creds(stores)))
    assert (tmp_path / "m/1/model.onnx").read_bytes() == (zoo_dir / "mobilenet_v2.onnx").read_bytes()


def test_s3_openvino_pair(stores: dict[str, str], zoo_dir: Path, tmp_path: Path) -> None:
    if not (zoo_dir / "mobilenet_v2.xml").exists():
        pytest.skip("the zoo has no OpenVINO IR of mobilenet_v2 (the lab seeded none)")
    fetched(s3(stores, "s3://models/mobilenet_v2.xml", tmp_path, s3_creds(stores), model_format="openvino"))
    assert sha(tmp_path / "m/1/model.xml") == sha(zoo_dir / "mobilenet_v2.xml")
    assert sha(tmp_path / "m/1/model.bin") == sha(zoo_dir / "mobilenet_v2.bin")


def test_s3_checks_the_signature(stores: dict[str, str], tmp_path: Path) -> None:
    """versitygw verifies SigV4: a wrong secret, or no keys (anonymous), is refused."""
    secret = "wrong-secret-0123456789"
    refused(
        s3(stores, "s3://models/mobilenet_v2.onnx", tmp_path, s3_creds(stores, secretAccessKey=secret)),
        "ModelAccessDenied",
        secret,
    )
    anonymous = s3_creds(stores, accessKeyId=None, secretAccessKey=None)
    refused(s3(stores, "s3://models/mobilenet_v2.onnx", tmp_path, anonymous), "ModelAccessDenied")
    assert not (tmp_path / "m").exists()


def test_s3_missing_key_untrusted_and_mismatch(stores: dict[str, str], tmp_path: Path) -> None:
    refused(s3(stores, "s3://models/no-such-model.onnx", tmp_path, s3_creds(stores)), "ModelNotFound")
    no_ca = s3_creds(stores, caBundle=None)
    refused(s3(stores, "s3://models/mobilenet_v2.onnx", tmp_path, no_ca), "ModelSourceUntrusted")
    mismatch = s3(stores, "s3://models/mobilenet_v2.onnx", tmp_path, s3_creds(stores), "--sha256", "0" * 64)
    refused(mismatch, "ModelDigestMismatch")
    assert not (tmp_path / "m/1").exists()
