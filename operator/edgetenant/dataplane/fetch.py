"""The model fetcher (the tenant pod's init container): put a model file into Triton's repository.

    python -m edgetenant.dataplane.fetch --uri URI --dest FILE [--backend python] [--sha256 HEX]
    python -m edgetenant.dataplane.fetch --uri URI --dest REPO --model NAME [--format onnx]
    [--max-bytes N] [--timeout S] [--retries N]

URIs: ``file:///path`` or a plain path (node-local), ``pvc://<claim>/<path>`` (a claim mounted
at ``<pvc-root>/<claim>``, default ``/pvc``), ``http://`` and ``https://`` (retried with
backoff). ``oci://`` is refused with an explanation. The file is streamed to a temporary
name beside the target, checked against ``--sha256`` when given, and renamed into place, so
Triton never sees half a model. OpenVINO IR is two files: the weights (``.bin``, named like the
``.xml``) are fetched first from the same place. With ``--backend python`` the Python-backend
shim for the format is copied beside it as ``model.py``.

Hostile or broken sources are bounded: a model larger than ``--max-bytes`` (default 8 GiB) is
refused, before the download when Content-Length announces it and as soon as the stream passes
it otherwise; every socket operation has ``--timeout``. Credentials in a URI (``user:pass@``,
query tokens such as a presigned URL's signature) are used but never printed: every message
shows the URI through ``redact``. Userinfo becomes an Authorization header (urllib cannot send it).

Standard library only: the fetcher image has nothing else. Errors exit 1 with one clear line
on stderr, also written to the Kubernetes termination log when there is one.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
DEFAULT_MAX_BYTES = 8 << 30  # larger than any edge model; the node's disk is the real bound
FORMAT_BY_SUFFIX = {".onnx": "onnx", ".plan": "tensorrt", ".tflite": "tflite", ".xml": "openvino"}
DEFAULT_FILENAMES = {
    "onnx": "model.onnx",
    "tensorrt": "model.plan",
    "tflite": "model.tflite",
    "openvino": "model.xml",
}
SHIMS = {"onnx": "onnx_model.py", "tflite": "tflite_model.py", "openvino": "openvino_model.py"}
# Files a format keeps beside its main file, named like it: OpenVINO IR's weights.
COMPANIONS = {"openvino": (".xml", ".bin")}
TERMINATION_LOG = Path("/dev/termination-log")


class FetchError(Exception):
    """The model could not be fetched; the message says what and from where."""


def redact(uri: str) -> str:
    """``uri`` without what may be a credential: userinfo and the query become ``***``.

    The fragment is dropped (it never reaches the server). A plain path is returned as is."""
    try:
        parsed = urllib.parse.urlsplit(uri)
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port is not None else ""
    except ValueError:  # a malformed netloc (bad port, bracket): show no part of it
        parsed = urllib.parse.urlsplit(uri)
        return f"{parsed.scheme}://***" if parsed.netloc else parsed.path
    if ":" in host:
        host = f"[{host}]"
    netloc = parsed.netloc
    if "@" in netloc:
        netloc = f"***@{host}{port}"
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, "***" if parsed.query else "", ""))


def _request(uri: str) -> urllib.request.Request:
    """The request for ``uri``, its userinfo moved to a Basic Authorization header.

    NB: an *unredirected* header: urllib copies ordinary headers onto a redirect, to any host."""
    parsed = urllib.parse.urlsplit(uri)
    if "@" not in parsed.netloc:
        return urllib.request.Request(uri)
    userinfo, _, hostport = parsed.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode())
    request = urllib.request.Request(urllib.parse.urlunsplit(parsed._replace(netloc=hostport)))
    request.add_unredirected_header("Authorization", f"Basic {token.decode()}")
    return request


def resolve_local(uri: str, *, pvc_root: Path) -> Path | None:
    """The local path a file://, pvc:// or plain-path URI names; None for remote schemes."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.netloc + parsed.path))
    if parsed.scheme == "pvc":
        if not parsed.netloc or not parsed.path.strip("/"):
            raise FetchError(f"{redact(uri)}: expected pvc://<claim>/<path inside the claim>")
        return pvc_root / parsed.netloc / urllib.parse.unquote(parsed.path).lstrip("/")
    if parsed.scheme == "":
        return Path(uri)
    return None


@contextmanager
def _staged(dest: Path) -> Iterator[BinaryIO]:
    """A temporary file beside ``dest``; renamed onto it only if the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.partial")
    try:
        with staging.open("wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, dest)
    finally:
        staging.unlink(missing_ok=True)


def _too_large(uri: str, size: int | str, max_bytes: int) -> FetchError:
    return FetchError(
        f"{redact(uri)}: the model is {size} bytes, over the limit of {max_bytes} (--max-bytes)"
    )


def _copy(uri: str, source: BinaryIO, out: BinaryIO, max_bytes: int) -> str:
    """Stream ``source`` to ``out``; refuse as soon as more than ``max_bytes`` arrived (the
    staged file is then removed), whatever the source announced."""
    digest = hashlib.sha256()
    total = 0
    while chunk := source.read(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(uri, f"more than {max_bytes}", max_bytes)
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def _check(uri: str, actual: str, expected: str | None) -> None:
    if expected and actual.lower() != expected.lower():
        raise FetchError(f"{redact(uri)}: sha256 is {actual}, expected {expected}; not installed")


def _fetch_http(
    uri: str, dest: Path, *, sha256: str | None, timeout: float, retries: int, max_bytes: int
) -> str:
    last: str = ""
    request = _request(uri)
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2**attempt, 30))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                announced = response.headers.get("Content-Length", "")
                if announced.isdigit() and int(announced) > max_bytes:
                    raise _too_large(uri, int(announced), max_bytes)
                with _staged(dest) as out:
                    digest = _copy(uri, response, out, max_bytes)
                    _check(uri, digest, sha256)
                return digest
        except (http.client.InvalidURL, ValueError):
            # Not worth a retry; NB: these errors quote the URL they were given.
            raise FetchError(f"{redact(uri)}: not a valid URL") from None
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise FetchError(f"{redact(uri)}: HTTP {exc.code} {exc.reason}") from None
            last = f"HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            # NB: only the reason: str(exc) of some errors (http.client.InvalidURL) holds the URL.
            last = _reason(exc.reason)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            last = _reason(exc)
    raise FetchError(f"{redact(uri)}: gave up after {retries + 1} attempts: {last}")


def _reason(error: object) -> str:
    """What went wrong, without echoing a URL: a few error types quote the URL they were given."""
    if isinstance(error, http.client.InvalidURL):
        return "invalid URL"
    if isinstance(error, TimeoutError):
        return "timed out"
    return type(error).__name__ if isinstance(error, http.client.HTTPException) else str(error)


def fetch(
    uri: str,
    dest: Path,
    *,
    sha256: str | None = None,
    pvc_root: Path = Path("/pvc"),
    timeout: float = 60.0,
    retries: int = 4,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> str:
    """Put the model at ``uri`` at ``dest`` atomically; returns its sha256."""
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "oci":
        raise FetchError(
            f"{redact(uri)}: oci:// is not supported by this fetcher (it would need an OCI registry client); "
            "serve the model from a PVC (pvc://), a node path (file://) or an HTTP server"
        )
    if scheme in {"http", "https"}:
        return _fetch_http(uri, dest, sha256=sha256, timeout=timeout, retries=retries, max_bytes=max_bytes)
    source = resolve_local(uri, pvc_root=pvc_root)
    if source is None:
        raise FetchError(f"{redact(uri)}: unsupported scheme {scheme!r} (use file, pvc, http or https)")
    if not source.is_file():
        hint = " (is the claim mounted?)" if scheme == "pvc" else ""
        raise FetchError(f"{redact(uri)}: {source} is not a file{hint}")
    if (size := source.stat().st_size) > max_bytes:
        raise _too_large(uri, size, max_bytes)
    with source.open("rb") as stream, _staged(dest) as out:
        digest = _copy(uri, stream, out, max_bytes)
        _check(uri, digest, sha256)
    return digest


def companion_uri(uri: str, model_format: str) -> str | None:
    """The URI of the file a format keeps beside the model (the IR's ``.bin``), or None."""
    if model_format not in COMPANIONS:
        return None
    main_suffix, companion = COMPANIONS[model_format]
    parsed = urllib.parse.urlparse(uri)
    if not parsed.path.endswith(main_suffix):
        raise FetchError(
            f"{redact(uri)}: format {model_format} is OpenVINO IR, a {main_suffix} file with its {companion} "
            f"beside it; this URI does not name a {main_suffix} (an ONNX file is format onnx)"
        )
    return urllib.parse.urlunparse(parsed._replace(path=parsed.path[: -len(main_suffix)] + companion))


def install_shim(model_format: str, version_dir: Path) -> Path:
    """Copy the Python-backend shim for ``model_format`` to ``version_dir/model.py``."""
    try:
        source = Path(__file__).with_name(SHIMS[model_format])
    except KeyError:
        raise FetchError(f"no Python-backend shim for format {model_format!r}") from None
    target = version_dir / "model.py"
    with source.open("rb") as stream, _staged(target) as out:
        shutil.copyfileobj(stream, out)
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edgetenant.dataplane.fetch", description=__doc__)
    parser.add_argument("--uri", required=True)
    parser.add_argument(
        "--dest", required=True, type=Path, help="the model file, or the repository with --model"
    )
    parser.add_argument("--model", help="served name: --dest is then the repository root")
    parser.add_argument("--version", default="1")
    parser.add_argument("--format", choices=sorted(DEFAULT_FILENAMES), help="default: from the file suffix")
    parser.add_argument("--backend", default="", help="'python' also installs the shim as model.py")
    parser.add_argument("--sha256", help="expected checksum of the model file")
    parser.add_argument("--pvc-root", type=Path, default=Path(os.environ.get("EDGETENANT_PVC_ROOT", "/pvc")))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per socket operation")
    parser.add_argument("--retries", type=int, default=4)
    parser.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="refuse a larger model (default 8 GiB)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        model_format = args.format
        if args.model:
            model_format = model_format or "onnx"
            dest = args.dest / args.model / args.version / DEFAULT_FILENAMES[model_format]
        else:
            dest = args.dest
            model_format = model_format or FORMAT_BY_SUFFIX.get(dest.suffix)
        started = time.monotonic()
        companion = companion_uri(args.uri, model_format or "")
        if companion is not None:  # first, so the model file never stands without it
            weights = dest.with_suffix(COMPANIONS[model_format][1])
            fetch(
                companion,
                weights,
                pvc_root=args.pvc_root,
                timeout=args.timeout,
                retries=args.retries,
                max_bytes=args.max_bytes,
            )
            print(f"fetched {redact(companion)} -> {weights} ({weights.stat().st_size} bytes)")
        digest = fetch(
            args.uri,
            dest,
            sha256=args.sha256,
            pvc_root=args.pvc_root,
            timeout=args.timeout,
            retries=args.retries,
            max_bytes=args.max_bytes,
        )
        size = dest.stat().st_size
        took = time.monotonic() - started
        print(f"fetched {redact(args.uri)} -> {dest} ({size} bytes, sha256 {digest}, {took:.1f}s)")
        if args.backend == "python":
            if model_format is None:
                raise FetchError(f"cannot tell the model format of {dest}; pass --format")
            print(f"installed shim {install_shim(model_format, dest.parent)}")
    except FetchError as exc:
        message = f"edgetenant fetch: {exc}"
        print(message, file=sys.stderr)
        with suppress(OSError):
            TERMINATION_LOG.write_text(message + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
