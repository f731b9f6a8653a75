"""The model fetcher (the tenant pod's init container): put a model file into Triton's repository.

    python -m edgetenant.dataplane.fetch --uri URI --dest FILE [--backend python] [--sha256 HEX]
    python -m edgetenant.dataplane.fetch --uri URI --dest REPO --model NAME [--format onnx]

URIs: ``file:///path`` or a plain path (node-local), ``pvc://<claim>/<path>`` (a claim mounted
at ``<pvc-root>/<claim>``, default ``/pvc``), ``http://`` and ``https://`` (retried with
backoff). ``oci://`` is refused with an explanation. The file is streamed to a temporary
name beside the target, checked against ``--sha256`` when given, and renamed into place, so
Triton never sees half a model. With ``--backend python`` the Python-backend shim for the
format is copied beside it as ``model.py``.

Standard library only: the fetcher image has nothing else. Errors exit 1 with one clear line
on stderr, also written to the Kubernetes termination log when there is one.
"""

from __future__ import annotations

import argparse
import hashlib
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
FORMAT_BY_SUFFIX = {".onnx": "onnx", ".plan": "tensorrt", ".tflite": "tflite", ".xml": "openvino"}
DEFAULT_FILENAMES = {
    "onnx": "model.onnx",
    "tensorrt": "model.plan",
    "tflite": "model.tflite",
    "openvino": "model.xml",
}
SHIMS = {"onnx": "onnx_model.py", "tflite": "tflite_model.py"}
TERMINATION_LOG = Path("/dev/termination-log")


class FetchError(Exception):
    """The model could not be fetched; the message says what and from where."""


def resolve_local(uri: str, *, pvc_root: Path) -> Path | None:
    """The local path a file://, pvc:// or plain-path URI names; None for remote schemes."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.netloc + parsed.path))
    if parsed.scheme == "pvc":
        if not parsed.netloc or not parsed.path.strip("/"):
            raise FetchError(f"{uri}: expected pvc://<claim>/<path inside the claim>")
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


def _copy(source: BinaryIO, out: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def _check(uri: str, actual: str, expected: str | None) -> None:
    if expected and actual.lower() != expected.lower():
        raise FetchError(f"{uri}: sha256 is {actual}, expected {expected}; not installed")


def _fetch_http(uri: str, dest: Path, *, sha256: str | None, timeout: float, retries: int) -> str:
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2**attempt, 30))
        try:
            with urllib.request.urlopen(uri, timeout=timeout) as response:
                with _staged(dest) as out:
                    digest = _copy(response, out)
                    _check(uri, digest, sha256)
                return digest
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise FetchError(f"{uri}: HTTP {exc.code} {exc.reason}") from exc
            last = exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = exc
    raise FetchError(f"{uri}: gave up after {retries + 1} attempts: {last}")


def fetch(
    uri: str,
    dest: Path,
    *,
    sha256: str | None = None,
    pvc_root: Path = Path("/pvc"),
    timeout: float = 60.0,
    retries: int = 4,
) -> str:
    """Put the model at ``uri`` at ``dest`` atomically; returns its sha256."""
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "oci":
        raise FetchError(
            f"{uri}: oci:// is not supported by this fetcher (it would need an OCI registry client); "
            "serve the model from a PVC (pvc://), a node path (file://) or an HTTP server"
        )
    if scheme in {"http", "https"}:
        return _fetch_http(uri, dest, sha256=sha256, timeout=timeout, retries=retries)
    source = resolve_local(uri, pvc_root=pvc_root)
    if source is None:
        raise FetchError(f"{uri}: unsupported scheme {scheme!r} (use file, pvc, http or https)")
    if not source.is_file():
        hint = " (is the claim mounted?)" if scheme == "pvc" else ""
        raise FetchError(f"{uri}: {source} is not a file{hint}")
    with source.open("rb") as stream, _staged(dest) as out:
        digest = _copy(stream, out)
        _check(uri, digest, sha256)
    return digest


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
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--retries", type=int, default=4)
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
        digest = fetch(
            args.uri,
            dest,
            sha256=args.sha256,
            pvc_root=args.pvc_root,
            timeout=args.timeout,
            retries=args.retries,
        )
        size = dest.stat().st_size
        print(
            f"fetched {args.uri} -> {dest} ({size} bytes, sha256 {digest}, {time.monotonic() - started:.1f}s)"
        )
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
