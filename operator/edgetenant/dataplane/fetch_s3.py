"""``s3://`` model URIs: GET the object from an S3-compatible endpoint, signed with AWS Signature V4.

    s3://BUCKET/KEY     from ENDPOINT (https://host[:port]; MinIO, Ceph RGW, Versity, AWS itself)

Path-style requests (``ENDPOINT/BUCKET/KEY``: every S3 server answers them, and the bucket need not
be a DNS name). Signed with the Secret's accessKeyId/secretAccessKey (and sessionToken); anonymous
without them (a public bucket). OpenVINO IR's ``.bin`` is fetched from beside its ``.xml``, first.
Standard library only, as the rest of the fetcher.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from edgetenant.dataplane.fetch import INVALID, Credentials, FetchError, companion_uri, download, redact

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); the key is kept as written (S3 keys are not paths)."""
    parsed = urllib.parse.urlsplit(uri)
    key = urllib.parse.unquote(parsed.path.lstrip("/"))
    if parsed.scheme != "s3" or not parsed.netloc or not key or "@" in parsed.netloc or parsed.query:
        raise FetchError(
            f"{redact(uri)}: expected s3://<bucket>/<key> (credentials go in the Secret)", INVALID
        )
    return parsed.netloc, key


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    now: datetime.datetime,
    session_token: str | None = None,
    payload_sha256: str = EMPTY_SHA256,
    service: str = "s3",
) -> dict[str, str]:
    """The headers that sign ``method url`` (AWS Signature V4, every given header signed): ``headers``
    plus Host, x-amz-date, x-amz-content-sha256, the session token and Authorization."""
    parsed = urllib.parse.urlsplit(url)
    stamp = now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    signed.update({"host": parsed.netloc, "x-amz-date": stamp, "x-amz-content-sha256": payload_sha256})
    if session_token:
        signed["x-amz-security-token"] = session_token
    names = ";".join(sorted(signed))
    # S3 signs the path as sent (each byte outside RFC 3986's unreserved set percent-encoded once).
    path = urllib.parse.quote(urllib.parse.unquote(parsed.path) or "/", safe="/~")
    query = "&".join(
        f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}"
        for k, v in sorted(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    )
    canonical = "\n".join(
        [method, path, query, *(f"{k}:{signed[k]}" for k in sorted(signed)), "", names, payload_sha256]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_access_key}".encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={names}, Signature={signature}"
    )
    return signed


def _endpoint(endpoint: str, uri: str) -> str:
    """https://host[:port]; http:// only where the spec says so (an in-cluster MinIO): SigV4 sends a
    signature, never the secret key, though the model's bytes are then unprotected."""
    parsed = urllib.parse.urlsplit(endpoint)
    if parsed.scheme not in {"https", "http"} or not parsed.hostname:
        raise FetchError(
            f"{redact(uri)}: the S3 endpoint {redact(endpoint)!r} is not https://host[:port]", INVALID
        )
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"


def _request(url: str, credentials: Credentials, region: str) -> urllib.request.Request:
    request = urllib.request.Request(url)
    if credentials.access_key_id and credentials.secret_access_key:
        headers = sign(
            "GET",
            url,
            {},
            access_key_id=credentials.access_key_id,
            secret_access_key=credentials.secret_access_key,
            region=region,
            now=datetime.datetime.now(datetime.UTC),
            session_token=credentials.session_token,
        )
        for name, value in headers.items():
            if name != "host":  # urllib sends Host itself, the same value
                request.add_unredirected_header(name.capitalize(), value)
    return request


def fetch_s3(
    uri: str,
    version_dir: Path,
    *,
    model_format: str,
    sha256: str | None,
    credentials: Credentials,
    endpoint: str,
    region: str,
    timeout: float,
    retries: int,
    max_bytes: int,
) -> Path:
    """The object at ``uri`` (and for OpenVINO its ``.bin``) into ``version_dir``; the model file's path."""
    bucket, key = parse_s3_uri(uri)
    base = _endpoint(endpoint, uri)
    name = key.rsplit("/", 1)[-1]
    if not name or name.startswith(".") or ".." in name:
        raise FetchError(f"{redact(uri)}: the key does not end in a plain file name", INVALID)
    keys = [key]
    if (companion := companion_uri(uri, model_format)) is not None:
        keys.insert(0, parse_s3_uri(companion)[1])  # first: the .xml never stands without its weights
    context = credentials.ssl_context() if base.startswith("https:") else None
    left = max_bytes
    for each in keys:
        url = f"{base}/{urllib.parse.quote(bucket, safe='')}/{urllib.parse.quote(each, safe='/~')}"
        dest = version_dir / each.rsplit("/", 1)[-1]
        download(
            _request(url, credentials, region),
            f"s3://{bucket}/{each}",
            dest,
            sha256=sha256 if each == key else None,
            timeout=timeout,
            retries=retries,
            max_bytes=left,
            context=context,
        )
        left -= dest.stat().st_size
    return version_dir / name
