"""The model fetcher against a hostile or broken HTTP server on 127.0.0.1: size limits (announced and
not), timeouts, and credentials that are used but never printed."""

from __future__ import annotations

import base64
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetenant.dataplane import fetch

SECRET = "s3cr3t-pa55"
TOKEN = "X-Amz-Signature=deadbeefcafe"
MODEL = b"onnx" * 1000  # 4,000 bytes


class Server(http.server.ThreadingHTTPServer):
    """Records the Authorization header of every request (path -> header)."""

    seen: dict[str, str | None]

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the fetcher hangs up on purpose (limits, timeouts): a broken pipe here is expected


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.seen[path] = self.headers.get("Authorization")
        if path == "/model.onnx":
            self._send(200, MODEL)
        elif path == "/announced-huge":  # says 1 TiB up front; sends a little
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            self.wfile.write(b"x" * 100)
        elif path == "/unannounced":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"x" * 1024)
            self.close_connection = True
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, MODEL)
        elif path == "/private.onnx":
            expected = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
            self._send(200, MODEL) if self.headers.get("Authorization") == expected else self._send(401, b"")
        elif path == "/bearer.onnx":
            good = self.headers.get("Authorization") == f"Bearer {SECRET}"
            self._send(200, MODEL) if good else self._send(403, b"")
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/model.onnx")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/broken":
            self._send(503, b"")
        else:
            self._send(404, b"")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.seen = {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def url(server: Server, path: str, userinfo: str = "") -> str:
    return f"http://{userinfo}127.0.0.1:{server.server_address[1]}{path}"


def test_a_model_within_the_limit_is_installed(tmp_path: Path, server: Server) -> None:
    dest = tmp_path / "model.onnx"
    fetch.fetch(url(server, "/model.onnx"), dest, max_bytes=len(MODEL), retries=0)
    assert dest.read_bytes() == MODEL


def test_an_announced_size_over_the_limit_is_refused_before_the_download(
    tmp_path: Path, server: Server
) -> None:
    with pytest.raises(
        fetch.FetchError, match=rf"is {1 << 40} bytes, over the limit of 1000 \(--max-bytes\)"
    ):
        fetch.fetch(url(server, "/announced-huge"), tmp_path / "model.onnx", max_bytes=1000, retries=3)
    assert list(tmp_path.iterdir()) == []  # not even a partial file


def test_a_stream_past_the_limit_is_cut_off_and_leaves_nothing(tmp_path: Path, server: Server) -> None:
    with pytest.raises(fetch.FetchError, match="more than 10000 bytes, over the limit"):
        fetch.fetch(url(server, "/unannounced"), tmp_path / "model.onnx", max_bytes=10_000, retries=3)
    assert list(tmp_path.iterdir()) == []
    # The same stream fits a larger limit (the check counts bytes, it does not refuse unannounced sizes).
    fetch.fetch(url(server, "/unannounced"), tmp_path / "model.onnx", max_bytes=64 * 1024, retries=0)
    assert (tmp_path / "model.onnx").stat().st_size == 64 * 1024


def test_a_local_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "big.onnx"
    source.write_bytes(MODEL)
    with pytest.raises(fetch.FetchError, match=f"is {len(MODEL)} bytes, over the limit of 100"):
        fetch.fetch(source.as_uri(), tmp_path / "out" / "model.onnx", max_bytes=100)
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_a_server_slower_than_the_timeout_fails_with_a_reason(tmp_path: Path, server: Server) -> None:
    started = time.monotonic()
    with pytest.raises(fetch.FetchError, match="gave up after 1 attempts: timed out"):
        fetch.fetch(url(server, "/slow"), tmp_path / "model.onnx", timeout=0.3, retries=0)
    assert time.monotonic() - started < 1.4  # the timeout, not the server, ended it


def test_userinfo_authenticates_but_is_not_sent_on_a_redirect(tmp_path: Path, server: Server) -> None:
    fetch.fetch(url(server, "/private.onnx", f"alice:{SECRET}@"), tmp_path / "a.onnx", retries=0)
    assert (tmp_path / "a.onnx").read_bytes() == MODEL
    server.seen.clear()
    fetch.fetch(url(server, "/redirect", f"alice:{SECRET}@"), tmp_path / "b.onnx", retries=0)
    assert server.seen["/redirect"] is not None
    assert server.seen["/model.onnx"] is None  # urllib would copy an ordinary header to any host


def test_credentials_from_the_secret_authenticate_and_a_refusal_says_so(
    tmp_path: Path, server: Server
) -> None:
    """What the tenant's credentialsSecret gives the fetcher (EDGETENANT_CREDENTIAL_* env)."""
    prefix = fetch.CREDENTIAL_ENV_PREFIX
    basic = fetch.Credentials.from_env({f"{prefix}username": "alice", f"{prefix}password": SECRET})
    fetch.fetch(url(server, "/private.onnx"), tmp_path / "a.onnx", retries=0, credentials=basic)
    assert (tmp_path / "a.onnx").read_bytes() == MODEL
    bearer = fetch.Credentials.from_env({f"{prefix}token": SECRET})
    fetch.fetch(url(server, "/bearer.onnx"), tmp_path / "b.onnx", retries=0, credentials=bearer)
    with pytest.raises(fetch.FetchError, match="HTTP 401") as denied:
        fetch.fetch(url(server, "/private.onnx"), tmp_path / "c.onnx", retries=0)
    assert denied.value.reason == fetch.ACCESS_DENIED
    assert not (tmp_path / "c.onnx").exists()


@pytest.mark.parametrize(
    ("path", "kwargs", "complaint"),
    [
        ("/missing.onnx", {}, "HTTP 404"),
        ("/broken", {"retries": 0}, "gave up after 1 attempts: HTTP 503"),
        ("/announced-huge", {"max_bytes": 10}, "over the limit"),
        ("/unannounced", {"max_bytes": 10}, "over the limit"),
        ("/model.onnx", {"sha256": "00" * 32}, "sha256 is"),
        ("/slow", {"timeout": 0.2, "retries": 0}, "timed out"),
    ],
)
def test_no_error_prints_a_credential(
    tmp_path: Path, server: Server, path: str, kwargs: dict[str, object], complaint: str
) -> None:
    uri = url(server, f"{path}?{TOKEN}", f"alice:{SECRET}@")
    with pytest.raises(fetch.FetchError, match=complaint) as error:
        fetch.fetch(uri, tmp_path / "model.onnx", **kwargs)  # type: ignore[arg-type]
    message = str(error.value)
    assert SECRET not in message and "deadbeef" not in message and "alice" not in message, message
    assert f"http://***@127.0.0.1:{server.server_address[1]}{path}?***" in message


def test_the_cli_prints_no_credential_on_success_or_failure(tmp_path: Path, server: Server) -> None:
    def run(path: str, *extra: str) -> subprocess.CompletedProcess[str]:
        uri = url(server, f"{path}?{TOKEN}", f"alice:{SECRET}@")
        command = [sys.executable, "-m", "edgetenant.dataplane.fetch", "--uri", uri, *extra]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)

    ok = run("/private.onnx", "--dest", str(tmp_path / "ok.onnx"))
    assert ok.returncode == 0, ok.stderr
    refused = run("/announced-huge", "--dest", str(tmp_path / "no.onnx"), "--max-bytes", "1000")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "over the limit of 1000 (--max-bytes)" in refused.stderr
    for out in (ok.stdout, ok.stderr, refused.stdout, refused.stderr):
        assert SECRET not in out and "deadbeef" not in out, out


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://u:p@host:8443/m.onnx?sig=abc#frag", "https://***@host:8443/m.onnx?***"),
        ("https://token@host/m.onnx", "https://***@host/m.onnx"),
        ("http://[::1]:80/a?x", "http://[::1]:80/a?***"),
        ("http://host/plain.onnx", "http://host/plain.onnx"),
        ("http://u:p@host:notaport/m", "http://***"),
        ("/models/m.onnx", "/models/m.onnx"),
        ("pvc://claim/dir/m.onnx", "pvc://claim/dir/m.onnx"),
    ],
)
def test_redact(uri: str, shown: str) -> None:
    assert fetch.redact(uri) == shown
