"""The model fetcher (the tenant pod's init container): put a model into Triton's repository.

    python -m edgetenant.dataplane.fetch --uri URI --dest REPO --model NAME [--format onnx]
        [--backend python] [--sha256 HEX] [--max-bytes N] [--timeout S] [--retries N]
        [--pvc-root DIR] [--host-root DIR] [--s3-endpoint URL] [--s3-region R]
    python -m edgetenant.dataplane.fetch --uri URI --dest FILE ...   (the main file's own name)

URIs (docs/models.md): ``file:///path`` (a path on the node, mounted read-only under
``--host-root``), ``pvc://<claim>/<path>`` (the claim mounted read-only at ``<pvc-root>/<claim>``),
``http(s)://`` (TLS verified, retried with backoff), ``oci://registry/repo:tag`` (an OCI artifact,
``fetch_oci``) and ``s3://bucket/key`` (``fetch_s3``). A model is one file, a file with its
companion (OpenVINO IR: the ``.bin`` beside the ``.xml``, fetched first), an archive
(``.tar.gz``/``.tgz``/``.tar``/``.zip``: ONNX with external data, any multi-file model) or, for
file:// and pvc://, a directory. Everything is written beside its target under a temporary name
and renamed into place after ``--sha256`` matched, so Triton never sees half a model. With
``--backend python`` the Python-backend shim for the format is copied beside it as ``model.py``.

Credentials come from the environment (``EDGETENANT_CREDENTIAL_<key>``: the tenant's Secret,
through the pod's envFrom), never from the URI in the API. Hostile or broken sources are bounded:
a model larger than ``--max-bytes`` is refused, before the download when Content-Length announces
it and as soon as the stream passes it otherwise; every socket operation has ``--timeout``. Every
message shows a URI through ``redact``.

Standard library only: the fetcher image has nothing else. Errors exit 1 with one line on stderr,
``edgetenant fetch: <Reason>: <what and where>``, also written to the Kubernetes termination log:
the operator makes the reason the tenant's ModelLoaded reason.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import http.client
import os
import shutil
import ssl
import sys
import tarfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

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


# Why a fetch failed: the first word of the fetcher's one-line error, which the operator turns into
# the tenant's ModelLoaded reason (reconcile reads it from the init container's termination message).
FETCH_FAILED = "ModelFetchFailed"
NOT_FOUND = "ModelNotFound"
DIGEST_MISMATCH = "ModelDigestMismatch"
TOO_LARGE = "ModelTooLarge"
UNREACHABLE = "ModelSourceUnreachable"
ACCESS_DENIED = "ModelAccessDenied"
UNTRUSTED = "ModelSourceUntrusted"  # TLS verification failed
INVALID = "ModelSourceInvalid"
CREDENTIAL_ENV_PREFIX = "EDGETENANT_CREDENTIAL_"  # + the Secret's key (the pod's envFrom prefix)


class FetchError(Exception):
    """The model could not be fetched; the message says what and from where, ``reason`` why."""

    def __init__(self, message: str, reason: str = FETCH_FAILED) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Credentials:
    """What the tenant's credentials Secret holds, by its documented keys (docs/models.md)."""

    username: str | None = None
    password: str | None = None
    token: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    ca_bundle: str | None = None

    KEYS: ClassVar[dict[str, str]] = {
        "username": "username",
        "password": "password",
        "token": "token",
        "accessKeyId": "access_key_id",
        "secretAccessKey": "secret_access_key",
        "sessionToken": "session_token",
        "caBundle": "ca_bundle",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials:
        values = {field: environ.get(CREDENTIAL_ENV_PREFIX + key) or None for key, field in cls.KEYS.items()}
        return cls(**values)

    def ssl_context(self) -> ssl.SSLContext:
        """Verification always on; a private CA's bundle is trusted besides the system's."""
        context = ssl.create_default_context()
        if self.ca_bundle:
            try:
                context.load_verify_locations(cadata=self.ca_bundle)
            except (ssl.SSLError, ValueError):
                raise FetchError(
                    "the credentials' caBundle is not a PEM certificate bundle", INVALID
                ) from None
        return context

    def authorize(self, request: urllib.request.Request) -> urllib.request.Request:
        """A bearer token or Basic credentials on ``request`` (unredirected: never sent to another host)."""
        if self.token:
            request.add_unredirected_header("Authorization", f"Bearer {self.token}")
        elif self.username is not None and self.password is not None:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            request.add_unredirected_header("Authorization", f"Basic {token}")
        return request


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


def _request(uri: str, credentials: Credentials) -> urllib.request.Request:
    """The request for ``uri``: userinfo in the URI (the CLI still takes it; the API refuses it) or the
    credentials become an *unredirected* Authorization header: urllib copies ordinary headers onto a
    redirect, to any host."""
    parsed = urllib.parse.urlsplit(uri)
    if "@" not in parsed.netloc:
        return credentials.authorize(urllib.request.Request(uri))
    userinfo, _, hostport = parsed.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    inline = Credentials(username=urllib.parse.unquote(user), password=urllib.parse.unquote(password))
    return inline.authorize(urllib.request.Request(urllib.parse.urlunsplit(parsed._replace(netloc=hostport))))


def resolve_local(uri: str, *, pvc_root: Path, host_root: Path = Path("/")) -> Path | None:
    """The local path a file://, pvc:// or plain-path URI names; None for remote schemes.

    ``file://`` names a path on the node, which the pod sees under ``host_root`` (a read-only hostPath
    mount); ``pvc://CLAIM/PATH`` a path in the claim, mounted at ``pvc_root/CLAIM``."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return host_root / urllib.parse.unquote(parsed.netloc + parsed.path).lstrip("/")
    if parsed.scheme == "pvc":
        if not parsed.netloc or not parsed.path.strip("/"):
            raise FetchError(f"{redact(uri)}: expected pvc://<claim>/<path inside the claim>", INVALID)
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
        f"{redact(uri)}: the model is {size} bytes, over the limit of {max_bytes} (--max-bytes)", TOO_LARGE
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
        raise FetchError(
            f"{redact(uri)}: sha256 is {actual}, expected {expected}; not installed", DIGEST_MISMATCH
        )


def _open(
    request: urllib.request.Request, uri: str, *, timeout: float, retries: int, context: ssl.SSLContext | None
) -> http.client.HTTPResponse:
    """``urlopen`` retried with backoff on what may pass (5xx, 429, connection errors, timeouts); the
    errors that will not pass (4xx, TLS verification, a bad URL) fail at once, each with its reason."""
    last, reason = "", UNREACHABLE
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2**attempt, 30))
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(
                request, timeout=timeout, context=context
            )
            return response
        except (http.client.InvalidURL, ValueError):
            # NB: these errors quote the URL they were given.
            raise FetchError(f"{redact(uri)}: not a valid URL", INVALID) from None
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (404, 410):
                raise FetchError(f"{redact(uri)}: HTTP {exc.code} {exc.reason}", NOT_FOUND) from None
            if exc.code in (401, 403):
                raise FetchError(
                    f"{redact(uri)}: HTTP {exc.code} {exc.reason} (are the credentials right?)", ACCESS_DENIED
                ) from None
            if exc.code < 500 and exc.code != 429:
                raise FetchError(f"{redact(uri)}: HTTP {exc.code} {exc.reason}") from None
            last, reason = f"HTTP {exc.code} {exc.reason}", FETCH_FAILED
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise FetchError(
                    f"{redact(uri)}: TLS verification failed: {exc.reason.verify_message} "
                    "(a private CA goes in the credentials Secret's caBundle)",
                    UNTRUSTED,
                ) from None
            # NB: only the reason: str(exc) of some errors (http.client.InvalidURL) holds the URL.
            last, reason = _reason(exc.reason), UNREACHABLE
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            last, reason = _reason(exc), UNREACHABLE
    raise FetchError(f"{redact(uri)}: gave up after {retries + 1} attempts: {last}", reason)


def download(
    request: urllib.request.Request,
    uri: str,
    dest: Path,
    *,
    sha256: str | None,
    timeout: float,
    retries: int,
    max_bytes: int,
    context: ssl.SSLContext | None,
) -> str:
    """GET ``request`` into ``dest`` atomically (bounded, checked against ``sha256``); its sha256.

    ``uri`` is what messages name (through ``redact``). A body cut short is retried like a refused
    connection; a wrong digest or an oversize body is not."""
    for attempt in range(retries + 1):
        with _open(request, uri, timeout=timeout, retries=retries, context=context) as response:
            announced = response.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > max_bytes:
                raise _too_large(uri, int(announced), max_bytes)
            try:
                with _staged(dest) as out:
                    digest = _copy(uri, response, out, max_bytes)
                    _check(uri, digest, sha256)
                return digest
            except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                if attempt == retries:
                    raise FetchError(
                        f"{redact(uri)}: download broke off: {_reason(exc)}", UNREACHABLE
                    ) from None
    raise AssertionError("not reached")


def read_small(
    request: urllib.request.Request,
    uri: str,
    *,
    timeout: float,
    retries: int,
    context: ssl.SSLContext | None,
    limit: int = 4 << 20,
) -> tuple[bytes, Mapping[str, str]]:
    """A small document (a manifest, a token): its body, at most ``limit`` bytes, and headers."""
    with _open(request, uri, timeout=timeout, retries=retries, context=context) as response:
        body = response.read(limit + 1)
        if len(body) > limit:
            raise FetchError(f"{redact(uri)}: the response is over {limit} bytes", INVALID)
        return body, {k.lower(): v for k, v in response.headers.items()}


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
    host_root: Path = Path("/"),
    timeout: float = 60.0,
    retries: int = 4,
    max_bytes: int = DEFAULT_MAX_BYTES,
    credentials: Credentials = Credentials(),
) -> str:
    """Put the one file at ``uri`` (file, pvc, http, https) at ``dest`` atomically; its sha256."""
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in {"http", "https"}:
        return download(
            _request(uri, credentials),
            uri,
            dest,
            sha256=sha256,
            timeout=timeout,
            retries=retries,
            max_bytes=max_bytes,
            context=credentials.ssl_context() if scheme == "https" else None,
        )
    source = resolve_local(uri, pvc_root=pvc_root, host_root=host_root)
    if source is None:
        raise FetchError(
            f"{redact(uri)}: unsupported scheme {scheme!r} (use file, pvc, http, https, oci or s3)", INVALID
        )
    if not source.is_file():
        hint = " (is the claim mounted?)" if scheme == "pvc" else ""
        raise FetchError(f"{redact(uri)}: {source} is not a file{hint}", NOT_FOUND)
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
            f"beside it; this URI does not name a {main_suffix} (an ONNX file is format onnx)",
            INVALID,
        )
    return urllib.parse.urlunparse(parsed._replace(path=parsed.path[: -len(main_suffix)] + companion))


# --- multi-file models: archives and directories -------------------------------------------------
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def archive_suffix(uri: str) -> str | None:
    path = urllib.parse.urlparse(uri).path
    return next((suffix for suffix in ARCHIVE_SUFFIXES if path.endswith(suffix)), None)


def _extract(uri: str, archive: Path, into: Path, max_bytes: int) -> None:
    """Unpack ``archive`` into ``into``: regular files and directories only, no path outside it, at
    most ``max_bytes`` unpacked (counted before anything is written)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            entries = zipped.infolist()
            if (unpacked := sum(m.file_size for m in entries)) > max_bytes:
                raise _too_large(uri, unpacked, max_bytes)
            for entry in entries:
                _inside(uri, entry.filename)
            zipped.extractall(into)
        return
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]  # no links, no devices
            if (size := sum(m.size for m in members if m.isfile())) > max_bytes:
                raise _too_large(uri, size, max_bytes)
            for member in members:
                _inside(uri, member.name)
            # Python 3.11.4+ also filters ("data": no absolute paths, no "..", sane modes); the fetcher
            # image's Debian Python 3.11.2 predates it, and the checks above are what matters.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, members=members, filter="data")
            else:
                tar.extractall(into, members=members)
    except (tarfile.TarError, OSError) as exc:
        raise FetchError(f"{redact(uri)}: not a usable archive: {exc}", INVALID) from None


def _inside(uri: str, name: str) -> None:
    """Refuse an archive member that would land outside the directory it is unpacked into."""
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise FetchError(f"{redact(uri)}: the archive names a path outside it: {name}", INVALID)


def _copy_tree(uri: str, source: Path, into: Path, max_bytes: int) -> None:
    files = [path for path in sorted(source.rglob("*")) if path.is_file()]
    if (size := sum(path.stat().st_size for path in files)) > max_bytes:
        raise _too_large(uri, size, max_bytes)
    for path in files:
        target = into / path.relative_to(source)
        with path.open("rb") as stream, _staged(target) as out:
            shutil.copyfileobj(stream, out)


def install_tree(uri: str, unpacked: Path, version_dir: Path, model_format: str, filename: str) -> Path:
    """Move an unpacked model into ``version_dir``: the main file (the format's default name, else
    the one file with the format's suffix) and everything beside it, the main file (and its
    companion) renamed to ``filename``, the name Triton and the shims look for. Returns it."""
    default = DEFAULT_FILENAMES[model_format]
    suffix = Path(default).suffix
    candidates = [p for p in unpacked.rglob(default) if p.is_file()] or [
        p for p in unpacked.rglob(f"*{suffix}") if p.is_file()
    ]
    if len(candidates) != 1:
        found = ", ".join(str(p.relative_to(unpacked)) for p in candidates) or "none"
        raise FetchError(
            f"{redact(uri)}: expected exactly one {default} (or one *{suffix} file) in it, found {found}",
            INVALID,
        )
    main = candidates[0]
    renames = {main.name: filename}
    if model_format in COMPANIONS:  # the IR's weights are found by name: rename them with it
        companion = main.with_suffix(COMPANIONS[model_format][1])
        if not companion.is_file():
            raise FetchError(f"{redact(uri)}: {main.name} has no {companion.name} beside it", NOT_FOUND)
        renames[companion.name] = Path(filename).with_suffix(companion.suffix).name
    version_dir.mkdir(parents=True, exist_ok=True)
    for item in main.parent.iterdir():
        target = version_dir / renames.get(item.name, item.name)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    return version_dir / filename


def fetch_model(
    uri: str,
    version_dir: Path,
    *,
    model_format: str,
    filename: str | None = None,
    sha256: str | None = None,
    pvc_root: Path = Path("/pvc"),
    host_root: Path = Path("/"),
    timeout: float = 60.0,
    retries: int = 4,
    max_bytes: int = DEFAULT_MAX_BYTES,
    credentials: Credentials = Credentials(),
    endpoint: str | None = None,
    region: str = "us-east-1",
) -> Path:
    """Put the whole model at ``uri`` into ``version_dir`` (one file, a file with its companion, an
    archive or a directory, from any scheme), the main file named ``filename`` (default: the format's
    name). Returns the main file. ``sha256`` checks the bytes fetched: the file, or the archive."""
    filename = filename or DEFAULT_FILENAMES[model_format]
    scheme = urllib.parse.urlparse(uri).scheme
    limits: dict[str, Any] = {"timeout": timeout, "retries": retries, "max_bytes": max_bytes}
    one_file = functools.partial(
        fetch,
        pvc_root=pvc_root,
        host_root=host_root,
        credentials=credentials,
        timeout=timeout,
        retries=retries,
        max_bytes=max_bytes,
    )
    staging = version_dir.parent / f".{version_dir.name}.fetching"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if scheme == "oci":
            # Imported here: the OCI and S3 clients import this module.
            from edgetenant.dataplane.fetch_oci import fetch_oci  # noqa: PLC0415

            main = fetch_oci(
                uri, staging, model_format=model_format, sha256=sha256, credentials=credentials, **limits
            )
            return install_tree(uri, main.parent, version_dir, model_format, filename)
        if scheme == "s3":
            from edgetenant.dataplane.fetch_s3 import fetch_s3  # noqa: PLC0415

            if not endpoint:
                raise FetchError(f"{redact(uri)}: s3:// needs an endpoint (spec.model.s3Endpoint)", INVALID)
            main = fetch_s3(
                uri,
                staging,
                model_format=model_format,
                sha256=sha256,
                credentials=credentials,
                endpoint=endpoint,
                region=region,
                **limits,
            )
            return install_tree(uri, main.parent, version_dir, model_format, filename)
        source = resolve_local(uri, pvc_root=pvc_root, host_root=host_root)
        if source is not None and source.is_dir():
            if sha256:
                raise FetchError(
                    f"{redact(uri)}: a digest names one file; serve a directory as an archive to pin it",
                    INVALID,
                )
            _copy_tree(uri, source, staging, max_bytes)
            return install_tree(uri, staging, version_dir, model_format, filename)
        if suffix := archive_suffix(uri):
            archive = staging / f"model{suffix}"
            one_file(uri, archive, sha256=sha256)
            _extract(uri, archive, staging / "unpacked", max_bytes)
            return install_tree(uri, staging / "unpacked", version_dir, model_format, filename)
        dest = version_dir / filename
        companion = companion_uri(uri, model_format)
        if companion is not None:  # first, so the model file never stands without it
            one_file(companion, dest.with_suffix(COMPANIONS[model_format][1]))
        one_file(uri, dest, sha256=sha256)
        return dest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_shim(model_format: str, version_dir: Path) -> Path:
    """Copy the Python-backend shim for ``model_format`` to ``version_dir/model.py``."""
    try:
        source = Path(__file__).with_name(SHIMS[model_format])
    except KeyError:
        raise FetchError(f"no Python-backend shim for format {model_format!r}", INVALID) from None
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
    parser.add_argument(
        "--shim",
        choices=sorted(SHIMS),
        help="the shim to install (default: the format's; OpenVINO's reads ONNX too)",
    )
    parser.add_argument("--sha256", help="expected sha256 of the model file (of the archive, for an archive)")
    parser.add_argument("--pvc-root", type=Path, default=Path(os.environ.get("EDGETENANT_PVC_ROOT", "/pvc")))
    parser.add_argument(
        "--host-root", type=Path, default=Path("/"), help="where the node's file:// paths are mounted"
    )
    parser.add_argument("--s3-endpoint", help="the S3 endpoint for s3:// (https://host:port)")
    parser.add_argument("--s3-region", default="us-east-1")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per socket operation")
    parser.add_argument("--retries", type=int, default=4)
    parser.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="refuse a larger model (default 8 GiB)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.model:
            model_format = args.format or "onnx"
            version_dir, filename = args.dest / args.model / args.version, None
        else:
            model_format = args.format or FORMAT_BY_SUFFIX.get(args.dest.suffix)
            version_dir, filename = args.dest.parent, args.dest.name
        if model_format is None:
            raise FetchError(f"cannot tell the model format of {args.dest}; pass --format", INVALID)
        started = time.monotonic()
        dest = fetch_model(
            args.uri,
            version_dir,
            model_format=model_format,
            filename=filename,
            sha256=args.sha256,
            pvc_root=args.pvc_root,
            host_root=args.host_root,
            timeout=args.timeout,
            retries=args.retries,
            max_bytes=args.max_bytes,
            credentials=Credentials.from_env(os.environ),
            endpoint=args.s3_endpoint,
            region=args.s3_region,
        )
        files = sorted(p.name for p in dest.parent.iterdir() if p.is_file())
        took = time.monotonic() - started
        size = dest.stat().st_size
        print(f"fetched {redact(args.uri)} -> {dest} ({size} bytes; {', '.join(files)}; {took:.1f}s)")
        if args.backend == "python":
            print(f"installed shim {install_shim(args.shim or model_format, dest.parent)}")
    except FetchError as exc:
        return _fail(exc.reason, str(exc))
    except Exception as exc:  # a bug: still one line with a reason for the tenant's status
        traceback.print_exc()
        return _fail(FETCH_FAILED, f"{redact(args.uri)}: unexpected {type(exc).__name__}: {exc}")
    return 0


def _fail(reason: str, what: str) -> int:
    # The reason first: the operator reads it from the termination message (ModelLoaded's reason).
    message = f"edgetenant fetch: {reason}: {what}"
    print(message, file=sys.stderr)
    with suppress(OSError):
        TERMINATION_LOG.write_text(message + "\n")
    return 1


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's: the OCI and S3 clients import
    # edgetenant.dataplane.fetch, and its FetchError must be the class main() catches.
    from edgetenant.dataplane import fetch as imported  # noqa: PLW0406

    sys.exit(imported.main())
