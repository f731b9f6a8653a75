"""``oci://`` model URIs: pull a model pushed as an OCI artifact (``oras push``) from a registry.

    oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST]      (no tag: ``latest``)

The OCI distribution API over HTTPS (plain HTTP only to a loopback registry that does not speak TLS):
the manifest (an OCI image manifest, as ``oras push`` writes, or an OCI artifact manifest), then
every file in it, each by its ``org.opencontainers.image.title`` annotation, its digest verified.
Registries that want credentials answer 401 with a challenge: ``Basic`` (the Secret's
username/password sent as they are) or ``Bearer realm=...`` (a token from the realm for this
repository's pull scope, asked for with the username/password when given; a Secret ``token`` is
used as the bearer itself). Standard library only, as the rest of the fetcher.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetenant.dataplane.fetch import (
    ACCESS_DENIED,
    DIGEST_MISMATCH,
    INVALID,
    NOT_FOUND,
    TOO_LARGE,
    UNREACHABLE,
    Credentials,
    FetchError,
    download,
    read_small,
    redact,
)

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.artifact.manifest.v1+json",
)
TITLE = "org.opencontainers.image.title"
SUFFIXES = {"onnx": ".onnx", "tensorrt": ".plan", "tflite": ".tflite", "openvino": ".xml"}
# The distribution spec's grammar (a name component, a tag); a digest is sha256 only.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Reference:
    """An ``oci://`` URI, parsed: where the registry is, which repository, which tag or digest."""

    host: str  # host[:port], as in the URI
    repository: str
    reference: str  # a tag, or sha256:<hex>

    @property
    def hostname(self) -> str:
        return urllib.parse.urlsplit(f"//{self.host}").hostname or ""

    @property
    def loopback(self) -> bool:
        if self.hostname == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.hostname).is_loopback
        except ValueError:
            return False


def parse_reference(uri: str) -> Reference:
    """``oci://host[:port]/repo[:tag|@sha256:hex]``; anything else is refused as ModelSourceInvalid."""

    def invalid(why: str) -> FetchError:
        return FetchError(
            f"{redact(uri)}: {why} (expected oci://host[:port]/repository[:tag|@sha256:digest])", INVALID
        )

    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme != "oci":
        raise invalid("not an oci:// URI")
    if "@" in parsed.netloc:
        raise invalid("credentials do not belong in the URI; put them in the credentials Secret")
    if parsed.query or parsed.fragment or "?" in uri or "#" in uri:
        raise invalid("an OCI reference has no query or fragment")
    try:
        port = parsed.port  # raises on a bad port
    except ValueError:
        raise invalid("bad port") from None
    if not parsed.hostname or (port is not None and not 0 < port < 65536):
        raise invalid("no registry host")
    rest = parsed.path.lstrip("/")
    if "@" in rest:
        repository, _, reference = rest.partition("@")
        if not _DIGEST.fullmatch(reference):
            raise invalid(f"digest {reference!r} is not sha256:<64 hex digits>")
    else:
        head, _, last = rest.rpartition("/")
        name, sep, tag = last.partition(":")
        repository, reference = (f"{head}/{name}" if head else name), (tag if sep else "latest")
        if not _TAG.fullmatch(reference):
            raise invalid(f"tag {reference!r} is not a valid tag")
    if not _REPOSITORY.fullmatch(repository):
        raise invalid(f"repository {repository!r} is not a valid name (lower case, digits, . _ - /)")
    return Reference(parsed.netloc, repository, reference)


def safe_title(title: object, uri: str) -> str:
    """A file name from the registry: one plain name, never a path out of the model's directory."""
    # A leading dot is refused too: "." is the directory itself, ".name.partial" the fetcher's staging.
    if (
        not isinstance(title, str)
        or title.startswith(".")
        or not title
        or any(bad in title for bad in ("/", "\\", "..", "\0"))
    ):
        raise FetchError(
            f"{redact(uri)}: the artifact names a file {title!r}; refused (not a plain file name)", INVALID
        )
    return title


class _Registry:
    """One registry conversation: its base URL and the Authorization it asked for."""

    def __init__(
        self, ref: Reference, uri: str, credentials: Credentials, timeout: float, retries: int
    ) -> None:
        self.ref, self.uri, self.credentials = ref, uri, credentials
        self.timeout, self.retries = timeout, retries
        self.context = credentials.ssl_context()
        self.base = f"https://{ref.host}"
        self.authorization: str | None = None

    def request(self, path: str, accept: str | None = None) -> urllib.request.Request:
        request = urllib.request.Request(f"{self.base}/v2/{path}")
        if accept:
            request.add_header("Accept", accept)
        if self.authorization:
            # Unredirected: a blob GET may be redirected to storage elsewhere, which must not get it.
            request.add_unredirected_header("Authorization", self.authorization)
        return request

    def read(
        self, path: str, accept: str | None = None, retries: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body, headers = read_small(
            self.request(path, accept),
            self.uri,
            timeout=self.timeout,
            retries=self.retries if retries is None else retries,
            context=self.context if self.base.startswith("https:") else None,
        )
        return body, dict(headers)

    def login(self) -> None:
        """GET /v2/ (the API's version check): 200 is anonymous access; 401 names the scheme."""
        try:
            if self.ref.loopback:
                # A registry on the node's own loopback often speaks plain HTTP (docker's rule for
                # localhost): one TLS try, then HTTP. Credentials then stay on this machine.
                try:
                    self.read("", retries=0)
                    return
                except FetchError as error:
                    if error.reason != UNREACHABLE:
                        raise
                    self.base = f"http://{self.ref.host}"
            self.read("")
            return
        except FetchError as error:
            if error.reason != ACCESS_DENIED:
                raise
        challenge = self._challenge()
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.credentials.username is None or self.credentials.password is None:
                raise FetchError(
                    f"{redact(self.uri)}: the registry wants a username and password", ACCESS_DENIED
                )
            pair = f"{self.credentials.username}:{self.credentials.password}".encode()
            self.authorization = f"Basic {base64.b64encode(pair).decode()}"
        elif scheme.lower() == "bearer":
            self.authorization = f"Bearer {self._token(_params(params))}"
        else:
            raise FetchError(
                f"{redact(self.uri)}: unsupported registry authentication {scheme!r}", ACCESS_DENIED
            )

    def _challenge(self) -> str:
        # read_small maps the 401 to an error without its headers: ask once more for the challenge.
        try:
            with urllib.request.urlopen(
                self.request(""),
                timeout=self.timeout,
                context=self.context if self.base.startswith("https:") else None,
            ):
                pass
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 401 and error.headers.get("WWW-Authenticate"):
                return str(error.headers["WWW-Authenticate"])
        except (urllib.error.URLError, OSError):
            pass
        raise FetchError(
            f"{redact(self.uri)}: the registry refused access without a challenge", ACCESS_DENIED
        )

    def _token(self, params: dict[str, str]) -> str:
        if self.credentials.token:
            return self.credentials.token
        realm = urllib.parse.urlsplit(params.get("realm", ""))
        realm_loopback = Reference(realm.netloc, "", "").loopback if realm.netloc else False
        if realm.scheme != "https" and not (realm.scheme == "http" and realm_loopback):
            raise FetchError(
                f"{redact(self.uri)}: the registry's token realm is not an https URL; refused", ACCESS_DENIED
            )
        query = {"scope": f"repository:{self.ref.repository}:pull"}
        if "service" in params:
            query["service"] = params["service"]
        separator = "&" if realm.query else "?"
        request = urllib.request.Request(realm.geturl() + separator + urllib.parse.urlencode(query))
        self.credentials.authorize(request)  # Basic with username/password: the token endpoint's login
        body, _ = read_small(
            request,
            self.uri,
            timeout=self.timeout,
            retries=self.retries,
            context=self.context if realm.scheme == "https" else None,
        )
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise FetchError(
                f"{redact(self.uri)}: the registry's token endpoint gave no token", ACCESS_DENIED
            )
        return token


def _params(text: str) -> dict[str, str]:
    """``realm="...",service="...",scope="..."`` (values quoted; a comma may sit inside one)."""
    return {key.lower(): value for key, value in re.findall(r'(\w+)="([^"]*)"', text)}


def _manifest(registry: _Registry) -> dict[str, Any]:
    ref = registry.ref
    body, headers = registry.read(f"{ref.repository}/manifests/{ref.reference}", ", ".join(MANIFEST_TYPES))
    if ref.reference.startswith("sha256:"):
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if actual != ref.reference:
            raise FetchError(
                f"{redact(registry.uri)}: the manifest is {actual}, not the pinned digest", DIGEST_MISMATCH
            )
    try:
        manifest = json.loads(body)
    except ValueError:
        manifest = None
    kind = (manifest or {}).get("mediaType") or headers.get("content-type", "")
    if not isinstance(manifest, dict) or kind.split(";")[0] not in MANIFEST_TYPES:
        raise FetchError(
            f"{redact(registry.uri)}: not an OCI image or artifact manifest ({kind or 'no media type'}); "
            "push the model with oras push",
            INVALID,
        )
    return manifest


def fetch_oci(
    uri: str,
    version_dir: Path,
    *,
    model_format: str,
    sha256: str | None,
    credentials: Credentials,
    timeout: float,
    retries: int,
    max_bytes: int,
) -> Path:
    """Every titled file of the artifact at ``uri`` into ``version_dir``; the main model file's path.

    The main file is the one whose suffix is the format's; ``sha256`` (the spec's) must be its digest,
    checked before anything is downloaded. Every file is checked against its own digest (``download``
    refuses other bytes) and the sizes the manifest announces bound each download."""
    ref = parse_reference(uri)
    registry = _Registry(ref, uri, credentials, timeout, retries)
    registry.login()
    manifest = _manifest(registry)
    descriptors = manifest.get("layers") or manifest.get("blobs") or []
    files: list[tuple[str, str, int]] = []
    for item in descriptors if isinstance(descriptors, list) else []:
        annotations = item.get("annotations") if isinstance(item, dict) else None
        if not isinstance(annotations, dict) or TITLE not in annotations:
            continue  # an untitled layer is not a file (oras writes a title for each)
        digest, size = item.get("digest", ""), item.get("size", -1)
        if (
            not isinstance(digest, str)
            or not _DIGEST.fullmatch(digest)
            or not isinstance(size, int)
            or size < 0
        ):
            raise FetchError(f"{redact(uri)}: a layer has no sha256 digest and size", INVALID)
        title = safe_title(annotations[TITLE], uri)
        if any(title == f[0] for f in files):
            raise FetchError(f"{redact(uri)}: the artifact names {title!r} twice", INVALID)
        files.append((title, digest, size))
    suffix = SUFFIXES.get(model_format, "")
    main = next((f for f in files if suffix and f[0].endswith(suffix)), None)
    if main is None:
        names = ", ".join(f[0] for f in files) or "none"
        raise FetchError(
            f"{redact(uri)}: the artifact has no {suffix or model_format} file (files: {names})", NOT_FOUND
        )
    if sha256 and main[1] != f"sha256:{sha256.lower()}":
        raise FetchError(
            f"{redact(uri)}: {main[0]} is {main[1]}, expected sha256:{sha256}; not installed", DIGEST_MISMATCH
        )
    total = sum(size for _, _, size in files)
    if total > max_bytes:
        raise FetchError(
            f"{redact(uri)}: the artifact is {total} bytes, over the limit of {max_bytes}", TOO_LARGE
        )
    left = max_bytes
    # The main file last: it never stands in the repository without its companions (IR weights).
    for title, digest, size in sorted(files, key=lambda f: f is main):
        download(
            registry.request(f"{ref.repository}/blobs/{digest}"),
            uri,
            version_dir / title,
            sha256=digest.removeprefix("sha256:"),
            timeout=timeout,
            retries=retries,
            max_bytes=min(left, size),
            context=registry.context if registry.base.startswith("https:") else None,
        )
        left -= (version_dir / title).stat().st_size
    return version_dir / main[0]
