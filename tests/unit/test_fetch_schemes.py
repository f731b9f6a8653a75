"""The oci:// and s3:// clients' pure parts: SigV4 against AWS's published example, OCI reference
parsing, refused file names and endpoints; the registry's Bearer token flow against a stub registry
on 127.0.0.1 (the lab's real registry answers Basic; tests/dataplane/test_fetch_registry.py)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edgetenant.dataplane import fetch_oci, fetch_s3
from edgetenant.dataplane.fetch import (
    ACCESS_DENIED,
    DIGEST_MISMATCH,
    INVALID,
    NOT_FOUND,
    TOO_LARGE,
    Credentials,
    FetchError,
)


def test_sigv4_matches_aws_published_get_object_example() -> None:
    # AWS S3 API reference, "Signature Calculations for the Authorization Header", Example: GET Object.
    headers = fetch_s3.sign(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"Range": "bytes=0-9"},
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        now=datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC),
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert headers["x-amz-date"] == "20130524T000000Z"


def test_sigv4_signs_the_session_token() -> None:
    common: dict[str, Any] = {
        "access_key_id": "AKID",
        "secret_access_key": "secret",
        "region": "eu-west-1",
        "now": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    }
    plain = fetch_s3.sign("GET", "https://s3.example:9000/models/a%20b.onnx", {}, **common)
    with_token = fetch_s3.sign(
        "GET", "https://s3.example:9000/models/a%20b.onnx", {}, session_token="TOKEN", **common
    )
    assert with_token["x-amz-security-token"] == "TOKEN"
    assert "x-amz-security-token" in with_token["authorization"]
    assert plain["authorization"] != with_token["authorization"]
    assert "eu-west-1/s3/aws4_request" in plain["authorization"]


@pytest.mark.parametrize(
    ("uri", "host", "repository", "reference"),
    [
        ("oci://10.42.0.1:5000/models/mobilenet_v2:onnx", "10.42.0.1:5000", "models/mobilenet_v2", "onnx"),
        ("oci://registry.example/a/b/c", "registry.example", "a/b/c", "latest"),
        ("oci://localhost:5000/m.v2__x-y:v1.0_rc", "localhost:5000", "m.v2__x-y", "v1.0_rc"),
        ("oci://r.example/m@sha256:" + "a" * 64, "r.example", "m", "sha256:" + "a" * 64),
    ],
)
def test_oci_references(uri: str, host: str, repository: str, reference: str) -> None:
    assert fetch_oci.parse_reference(uri) == fetch_oci.Reference(host, repository, reference)


@pytest.mark.parametrize(
    "uri",
    [
        "https://r.example/m:1",  # not oci
        "oci://user:pw@r.example/m:1",  # credentials belong in the Secret
        "oci://r.example/Models:1",  # upper case repository
        "oci://r.example/m:bad/tag",  # a tag cannot hold a slash (nor is 'bad/tag' a name then)
        "oci://r.example/m:-1",  # a tag cannot start with '-'
        "oci://r.example/m@sha256:abc",  # a short digest
        "oci://r.example/m@md5:" + "a" * 32,  # sha256 only
        "oci://r.example/",  # no repository
        "oci:///m:1",  # no host
        "oci://r.example/m:1?x=y",  # no query
        "oci://r.example:99999/m:1",  # a port out of range
        "oci://r.example/../m:1",  # no path tricks
    ],
)
def test_oci_references_refused(uri: str) -> None:
    with pytest.raises(FetchError) as caught:
        fetch_oci.parse_reference(uri)
    assert caught.value.reason == INVALID
    assert "pw" not in str(caught.value)


def test_loopback_registries() -> None:
    assert fetch_oci.parse_reference("oci://127.0.0.1:5000/m").loopback
    assert fetch_oci.parse_reference("oci://localhost/m").loopback
    assert fetch_oci.parse_reference("oci://[::1]:5000/m").loopback
    assert not fetch_oci.parse_reference("oci://10.42.0.1:5000/m").loopback


@pytest.mark.parametrize("title", ["../x.onnx", "a/b.onnx", "..", ".", "", ".hidden", "a\\b", None, 7])
def test_titles_that_are_not_plain_names_are_refused(title: object) -> None:
    with pytest.raises(FetchError) as caught:
        fetch_oci.safe_title(title, "oci://r/m")
    assert caught.value.reason == INVALID


def test_s3_uris() -> None:
    assert fetch_s3.parse_s3_uri("s3://models/zoo/mobilenet%20v2.onnx") == ("models", "zoo/mobilenet v2.onnx")
    for bad in ("s3://models", "s3://models/", "s3://k:s@models/m.onnx", "https://models/m.onnx"):
        with pytest.raises(FetchError) as caught:
            fetch_s3.parse_s3_uri(bad)
        assert caught.value.reason == INVALID


@pytest.mark.parametrize("endpoint", ["ftp://s3.example", "s3.example:9000", "https://", "file:///tmp"])
def test_s3_endpoints_are_http_urls(endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as caught:
        fetch_s3.fetch_s3(
            "s3://models/m.onnx",
            tmp_path,
            model_format="onnx",
            sha256=None,
            credentials=Credentials(access_key_id="AKID", secret_access_key="secret"),
            endpoint=endpoint,
            region="us-east-1",
            timeout=1,
            retries=0,
            max_bytes=1 << 20,
        )
    assert caught.value.reason == INVALID
    assert not list(tmp_path.iterdir())


# --- the Bearer token flow, against a stub registry on 127.0.0.1 (plain HTTP: a loopback host) ---

MODEL = b"not really onnx, but bytes with a digest"
TOKEN = "stub-registry-token"


class StubRegistry(http.server.BaseHTTPRequestHandler):
    """/v2/ asks for a Bearer token from /token, which wants Basic lab:pw and the pull scope."""

    # Set per test (the fixture makes a subclass); the test reads what the stub saw.
    manifest: ClassVar[dict[str, Any]] = {}
    blob: ClassVar[bytes] = MODEL
    token_requests: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            self.token_requests.append(self.path)
            basic = base64.b64encode(b"lab:pw").decode()
            ok = (
                self.headers.get("Authorization") == f"Basic {basic}"
                and "repository%3Amodels%2Fm%3Apull" in self.path
            )
            self._send(200, json.dumps({"token": TOKEN}).encode()) if ok else self._send(401)
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            realm = f'Bearer realm="http://127.0.0.1:{port}/token",service="stub"'
            self._send(401, b"{}", {"WWW-Authenticate": realm})
        elif self.path == "/v2/":
            self._send(200, b"{}")
        elif self.path.startswith("/v2/models/m/manifests/"):
            body = json.dumps(self.manifest).encode()
            self._send(200, body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        elif self.path.startswith("/v2/models/m/blobs/"):
            self._send(200, self.blob)
        else:
            self._send(404)


def manifest(title: str, blob: bytes = MODEL) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.edgetenant.model.v1",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:" + "4" * 64,
            "size": 2,
        },
        "layers": [
            {
                "mediaType": "application/octet-stream",
                "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
                "size": len(blob),
                "annotations": {"org.opencontainers.image.title": title},
            }
        ],
    }


@pytest.fixture
def stub() -> Iterator[tuple[str, type[StubRegistry]]]:
    handler = type(
        "Stub", (StubRegistry,), {"manifest": manifest("m.onnx"), "blob": MODEL, "token_requests": []}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def pull(host: str, dest: Path, credentials: Credentials, sha256: str | None = None) -> Path:
    return fetch_oci.fetch_oci(
        f"oci://{host}/models/m:1",
        dest,
        model_format="onnx",
        sha256=sha256,
        credentials=credentials,
        timeout=5,
        retries=0,
        max_bytes=1 << 20,
    )


def test_bearer_token_flow(stub: tuple[str, type[StubRegistry]], tmp_path: Path) -> None:
    host, handler = stub
    got = pull(host, tmp_path, Credentials(username="lab", password="pw"))
    assert got == tmp_path / "m.onnx"
    assert got.read_bytes() == MODEL
    assert handler.token_requests and "service=stub" in handler.token_requests[0]


def test_bearer_token_refused_without_the_right_password(
    stub: tuple[str, type[StubRegistry]], tmp_path: Path
) -> None:
    with pytest.raises(FetchError) as caught:
        pull(stub[0], tmp_path, Credentials(username="lab", password="wrong"))
    assert caught.value.reason == ACCESS_DENIED
    assert "wrong" not in str(caught.value)


def test_a_blob_that_is_not_its_digest_is_not_installed(
    stub: tuple[str, type[StubRegistry]], tmp_path: Path
) -> None:
    host, handler = stub
    handler.blob = b"tampered" + MODEL[8:]  # same size, other bytes
    with pytest.raises(FetchError) as caught:
        pull(host, tmp_path, Credentials(username="lab", password="pw"))
    assert caught.value.reason == DIGEST_MISMATCH
    assert not (tmp_path / "m.onnx").exists()


def test_a_title_that_climbs_out_is_refused(stub: tuple[str, type[StubRegistry]], tmp_path: Path) -> None:
    host, handler = stub
    handler.manifest = manifest("../m.onnx")
    with pytest.raises(FetchError) as caught:
        pull(host, tmp_path / "v", Credentials(username="lab", password="pw"))
    assert caught.value.reason == INVALID
    assert not (tmp_path / "m.onnx").exists()


def test_the_spec_digest_is_the_model_layer_digest(
    stub: tuple[str, type[StubRegistry]], tmp_path: Path
) -> None:
    host, _ = stub
    creds = Credentials(username="lab", password="pw")
    assert pull(host, tmp_path / "a", creds, sha256=hashlib.sha256(MODEL).hexdigest()).read_bytes() == MODEL
    with pytest.raises(FetchError) as caught:
        pull(host, tmp_path / "b", creds, sha256="0" * 64)
    assert caught.value.reason == DIGEST_MISMATCH
    assert not (tmp_path / "b").exists()


def test_a_title_named_twice_is_refused(stub: tuple[str, type[StubRegistry]], tmp_path: Path) -> None:
    host, handler = stub
    twice = manifest("m.onnx")
    twice["layers"] = twice["layers"] * 2
    handler.manifest = twice
    with pytest.raises(FetchError) as caught:
        pull(host, tmp_path, Credentials(username="lab", password="pw"))
    assert caught.value.reason == INVALID


def test_a_blob_longer_than_its_descriptor_says_is_cut_off(
    stub: tuple[str, type[StubRegistry]], tmp_path: Path
) -> None:
    host, handler = stub
    handler.manifest = manifest("m.onnx", MODEL[:10])  # announces 10 bytes; the registry sends more
    with pytest.raises(FetchError) as caught:
        pull(host, tmp_path, Credentials(username="lab", password="pw"))
    assert caught.value.reason == TOO_LARGE
    assert not (tmp_path / "m.onnx").exists()


def test_the_artifact_must_hold_the_formats_file(
    stub: tuple[str, type[StubRegistry]], tmp_path: Path
) -> None:
    host, handler = stub
    handler.manifest = manifest("m.tflite")
    with pytest.raises(FetchError) as caught:
        pull(host, tmp_path, Credentials(username="lab", password="pw"))
    assert caught.value.reason == NOT_FOUND
    assert "m.tflite" in str(caught.value)
