#!/usr/bin/env python3
"""Build edgetenant's container images with no container engine and no registry.

    python3 hack/images/build.py build [--image NAME]... [--arch ARCH]...   -> dist/images/
    python3 hack/images/build.py rootfs --image NAME --arch ARCH --out DIR  (what a Dockerfile runs)
    python3 hack/images/build.py dockerfiles [--check]                      (generated from the definition)
    python3 hack/images/build.py list

The images are defined once, in images/images.toml. Each is up to three layers:

1. **base**: a Debian root file system from `mmdebstrap --variant=extract` (packages unpacked, no
   maintainer script run, so a foreign architecture needs no emulation), with a dpkg status database
   written from the packages' own control data, passwd/group with the non-root user, the CA bundle,
   and the standard library byte-compiled. One per architecture, shared by every image that asks for
   no extra Debian packages (the Triton images add bash and dash: Triton starts its stub through them).
2. **python**: pinned wheels (uv.lock's base dependencies, or a hashed requirements file), installed
   with `uv pip install --target` for the image's architecture; for Triton images also the Python-backend
   stub beside libtriton_python.so and a `tritonserver` launcher.
3. **app**: the edgetenant wheel built from this checkout, and the `edgetenant` command.

Layers are deterministic tar files (sorted, owner root, fixed mtime, byte-compiled with unchecked-hash
pycs, so a read-only root file system costs no start-up time), gzip-compressed, cached under
~/.cache/edgetenant/images/layers/<key> by a hash of everything that goes into them, and assembled
into OCI image archives (oci-layout, index.json naming the image with `io.containerd.image.name` and
`org.opencontainers.image.ref.name`, blobs/) that `podman load`, `ctr images import` and K3s' agent
images directory accept. Beside each archive: `<archive>.packages.txt`, every dpkg and pip package in it.
A full build (no --image/--arch) forgets the cache entries it no longer uses.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
DEFINITION = REPO / "images" / "images.toml"
DIST = REPO / "dist" / "images"
# Bump when the way layers are made changes: every cache key includes it.
LAYOUT_VERSION = "1"
PYTHON = "3.11"
SITE_PACKAGES = f"usr/local/lib/python{PYTHON}/dist-packages"  # on Debian's sys.path, outside dpkg's
EPOCH = 0  # every file's mtime and the image's creation time: rebuilds are byte-identical
CREATED = "1970-01-01T00:00:00Z"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UV_PLATFORMS = {"amd64": "x86_64-manylinux_2_36", "arm64": "aarch64-manylinux_2_36"}  # bookworm: glibc 2.36
OCI_PLATFORMS = {
    "amd64": {"architecture": "amd64", "os": "linux"},
    "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
}
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# What a Debian root file system carries that a container never reads.
BASE_PRUNE = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/man",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/locale",
    "var/log",
    "etc/cron.daily",
    "etc/logrotate.d",
)


class BuildError(Exception):
    """The build cannot go on; the message says why and what to do."""


def log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_of(*parts: object) -> str:
    return sha256_bytes(json.dumps([LAYOUT_VERSION, *parts], sort_keys=True, default=str).encode())[:16]


def cache_root() -> Path:
    base = os.environ.get("EDGETENANT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgetenant"
    )
    return Path(base) / "images"


# --- the definition ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    description: str
    archs: tuple[str, ...]
    python: str  # "uv.lock", "none" or a requirements file relative to the repository
    debian: tuple[str, ...]  # Debian packages beyond the shared base
    project: bool
    triton: bool
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]

    def reference(self, registry: str) -> str:
        return f"{registry}/{self.name}:{self.tag}"

    def archive_name(self, arch: str) -> str:
        return f"{self.name}-{self.tag}-{arch}.oci.tar"


@dataclass(frozen=True)
class Definition:
    registry: str
    source: str
    licenses: str
    uid: int
    suite: str
    mirrors: tuple[str, ...]
    debian: tuple[str, ...]
    images: tuple[ImageSpec, ...]
    runtimes: dict[str, dict[str, str]] = field(default_factory=dict)

    def image(self, name: str) -> ImageSpec:
        for spec in self.images:
            if spec.name == name:
                return spec
        raise BuildError(f"no image {name!r} in {DEFINITION.relative_to(REPO)}; known: {self.names()}")

    def names(self) -> list[str]:
        return [spec.name for spec in self.images]


def project_version() -> str:
    import tomllib  # noqa: PLC0415 - not at the top: `triton-layout` also runs on Python 3.10 (OpenVINO)

    with (REPO / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def load_definition(path: Path = DEFINITION) -> Definition:
    import tomllib  # noqa: PLC0415 - see project_version

    with path.open("rb") as f:
        data = tomllib.load(f)
    defaults = data["defaults"]
    version = project_version()
    images = tuple(
        ImageSpec(
            name=name,
            tag=str(entry["tag"]).format(version=version),
            description=entry["description"],
            archs=tuple(entry["archs"]),
            python=entry["python"],
            debian=tuple(entry.get("debian", ())),
            project=bool(entry.get("project", False)),
            triton=bool(entry.get("triton", False)),
            entrypoint=tuple(entry["entrypoint"]),
            cmd=tuple(entry.get("cmd", ())),
        )
        for name, entry in data["images"].items()
    )
    for spec in images:
        unknown = set(spec.archs) - set(UV_PLATFORMS)
        if unknown:
            raise BuildError(f"image {spec.name}: unsupported architectures {sorted(unknown)}")
    return Definition(
        registry=defaults["registry"],
        source=defaults["source"],
        licenses=defaults["licenses"],
        uid=int(defaults["uid"]),
        suite=defaults["suite"],
        mirrors=tuple(defaults["mirrors"]),
        debian=tuple(defaults["debian"]),
        images=images,
        runtimes={name: dict(entry) for name, entry in data.get("runtimes", {}).items()},
    )


def labels(definition: Definition, spec: ImageSpec) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.description": spec.description,
        "org.opencontainers.image.version": spec.tag,
        "org.opencontainers.image.source": definition.source,
        "org.opencontainers.image.licenses": definition.licenses,
        "org.opencontainers.image.vendor": "edgetenant",
        "org.opencontainers.image.ref.name": spec.reference(definition.registry),
    }


def environment() -> list[str]:
    # No bytecode writes (the root file system is read-only and every module is precompiled).
    return [f"PATH={PATH_ENV}", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "LANG=C.UTF-8"]


# --- tools ----------------------------------------------------------------------------------------------


def run(cmd: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([str(c) for c in cmd], check=True, text=True, **kwargs)
    except FileNotFoundError as error:
        raise BuildError(f"{cmd[0]} is not installed") from error
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or "").strip()[-2000:]
        raise BuildError(
            f"{' '.join(str(c) for c in cmd[:4])} ... failed ({error.returncode}): {detail}"
        ) from error


def uv_command() -> list[str]:
    """uv, wherever the Makefile's `python3 -m pip install uv` put it."""
    for candidate in ([sys.executable, "-m", "uv"], ["python3", "-m", "uv"]):
        with contextlib.suppress(OSError):
            if subprocess.run([*candidate, "--version"], capture_output=True, check=False).returncode == 0:
                return candidate
    found = shutil.which("uv")
    if found:
        return [found]
    raise BuildError("uv is missing: python3 -m pip install 'uv==0.13.9' (make venv does it)")


# Debian packages: the builder's (mmdebstrap; dpkg-deb comes with dpkg) and the runtime tests/images
# starts the images with (podman with runc: crun refuses hybrid cgroups, as on this project's machines).
TOOLS = {"mmdebstrap": "mmdebstrap", "podman": "podman", "runc": "runc"}


def ensure_tools(commands: Sequence[str] = tuple(TOOLS)) -> None:
    """Install the missing tools from Debian's archive (as root, like the lab's own set-up)."""
    missing = [TOOLS[command] for command in commands if not shutil.which(command)]
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise BuildError(f"{', '.join(missing)} missing and apt-get is not available: install them")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    log(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run([*sudo, "apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"], env=env, capture_output=True)
    run(
        [
            *sudo,
            "apt-get",
            "-o",
            "DPkg::Lock::Timeout=600",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            *missing,
        ],
        env=env,
        capture_output=True,
    )


def check_python() -> None:
    # Byte-compiled files are only valid for the Python minor version that runs them.
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != PYTHON:
        raise BuildError(f"the images run Python {PYTHON}; run this builder with Python {PYTHON}")


# --- layers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    path: Path  # layer.tar.gz
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the compressed blob
    size: int
    packages: tuple[str, ...]  # "deb NAME VERSION ARCH" / "pypi NAME VERSION"
    comment: str

    @classmethod
    def load(cls, directory: Path) -> Layer:
        meta = json.loads((directory / "layer.json").read_text())
        return cls(
            path=directory / "layer.tar.gz",
            diff_id=meta["diff_id"],
            digest=meta["digest"],
            size=meta["size"],
            packages=tuple(meta["packages"]),
            comment=meta["comment"],
        )


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it."""

    def __init__(self, target: IO[bytes] | None) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.size += len(view)
        if self.target is not None:
            self.target.write(view)
        return len(view)


def _entries(root: Path) -> Iterator[Path]:
    """Every path under root, parents before children, in a fixed order."""
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(directory)
        if base != root:
            yield base
        for name in sorted(filenames):
            yield base / name
        # Symlinks to directories are listed in dirnames but not walked: yield them as links.
        for name in list(dirnames):
            if (base / name).is_symlink():
                yield base / name
                dirnames.remove(name)


def write_layer(root: Path, out: Path) -> tuple[str, str, int]:
    """A deterministic gzip'd tar of root's contents; returns (diff_id, digest, size)."""
    with out.open("wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=EPOCH, compresslevel=6) as gz:
            plain = _Hashing(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path in _entries(root):
                    info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mtime = EPOCH
                    info.pax_headers = {}
                    if info.isreg():
                        with path.open("rb") as f:
                            tar.addfile(info, f)
                    elif info.isdir() or info.issym() or info.islnk():
                        tar.addfile(info)
    return f"sha256:{plain.hash.hexdigest()}", f"sha256:{compressed.hash.hexdigest()}", compressed.size


def compile_python(stage: Path, *relative: str) -> None:
    """Byte-compile for the image's paths; unchecked-hash pycs stay valid whatever the files' mtimes."""
    targets = [str(stage / r) for r in relative if (stage / r).is_dir()]
    if targets:
        run(
            [
                sys.executable,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "unchecked-hash",
                "-s",
                str(stage),
                "-p",
                "/",
                *targets,
            ],
            capture_output=True,
        )


def pip_packages(stage: Path) -> list[str]:
    site = stage / SITE_PACKAGES
    found = []
    for metadata in sorted(site.glob("*.dist-info/METADATA")) if site.is_dir() else []:
        fields = dict(
            line.split(": ", 1)
            for line in metadata.read_text(errors="replace").splitlines()[:20]
            if ": " in line
        )
        found.append(f"pypi {fields.get('Name', metadata.parent.name)} {fields.get('Version', '?')}")
    return found


class Builder:
    def __init__(self, definition: Definition, cache: Path | None = None) -> None:
        self.definition = definition
        self.cache = cache or cache_root()
        self.layers_dir = self.cache / "layers"
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        self._uv: list[str] | None = None
        self.used: set[Path] = set()  # cache entries this run produced or reused

    @property
    def uv(self) -> list[str]:
        if self._uv is None:
            self._uv = uv_command()
        return self._uv

    def prune(self) -> None:
        """Forget the cache entries a full build did not use: older inputs' layers and archives."""
        stale = [
            entry
            for directory in (self.layers_dir, self.cache / "archives")
            if directory.is_dir()
            for entry in directory.iterdir()
            if entry not in self.used and not entry.name.startswith(".")  # another build's work
        ]
        for entry in stale:
            shutil.rmtree(entry, ignore_errors=True)
        if stale:
            log(f"pruned {len(stale)} cache entries no longer built")

    def _layer(self, kind: str, key: str, comment: str, make: Any) -> Layer:
        """The cached layer `kind-key`, made by make(stage) -> packages when missing."""
        final = self.layers_dir / f"{kind}-{key}"
        self.used.add(final)
        if (final / "layer.json").is_file():
            log(f"{kind}: cached ({final.name})")
            return Layer.load(final)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=self.layers_dir))
        try:
            stage = work / "stage"
            packages: list[str] = make(stage)
            diff_id, digest, size = write_layer(stage, work / "layer.tar.gz")
            meta = {
                "diff_id": diff_id,
                "digest": digest,
                "size": size,
                "packages": packages,
                "comment": comment,
            }
            (work / "layer.json").write_text(json.dumps(meta, indent=1))
            shutil.rmtree(stage)
            with contextlib.suppress(OSError):  # another build finished the same layer first
                work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"{kind}: built in {time.monotonic() - started:.0f} s ({size / 2**20:.0f} MiB compressed)")
        return Layer.load(final)

    # base: Debian ---------------------------------------------------------------------------------------

    def base(self, arch: str, extra: tuple[str, ...] = ()) -> Layer:
        """Debian's packages of the definition (plus an image's extras: then a base of its own)."""
        d = self.definition
        packages = (*d.debian, *extra)
        key = key_of("base", arch, d.suite, d.mirrors, packages, d.uid, builder_hash())
        return self._layer(
            f"base-{arch}",
            key,
            f"Debian {d.suite} ({', '.join(packages)})",
            lambda stage: self._make_base(stage, arch, packages),
        )

    def _make_base(self, stage: Path, arch: str, packages: tuple[str, ...]) -> list[str]:
        d = self.definition
        ensure_tools(["mmdebstrap"])
        log(
            f"base-{arch}: mmdebstrap --variant=extract {d.suite} ({len(packages)} packages and dependencies)"
        )
        run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=extract",
                f"--arch={arch}",
                f"--include={','.join(packages)}",
                # keep the downloaded .debs: their control data become the dpkg status database below
                "--skip=cleanup/apt/cache,download/empty",
                d.suite,
                stage,
                *d.mirrors,
            ],
            env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)},
            capture_output=True,
        )
        installed = _write_dpkg_status(stage)
        for relative in BASE_PRUNE:
            shutil.rmtree(stage / relative, ignore_errors=True)
        _prune_docs(stage)
        _write_system_files(stage, d.uid)
        compile_python(stage, f"usr/lib/python{PYTHON}")
        return installed

    # python: wheels -------------------------------------------------------------------------------------

    def requirements(self, spec: ImageSpec) -> str:
        if spec.python == "uv.lock":
            result = run(
                [
                    *self.uv,
                    "export",
                    "--frozen",
                    "--no-dev",
                    "--no-emit-project",
                    "--quiet",
                    "--format",
                    "requirements-txt",
                    "--project",
                    REPO,
                ],
                capture_output=True,
            )
            return result.stdout
        if spec.python == "none":
            return ""
        return (REPO / spec.python).read_text()

    def python(self, spec: ImageSpec, arch: str) -> Layer | None:
        requirements = self.requirements(spec)
        if not requirements.strip():
            return None
        key = key_of("python", arch, requirements, spec.triton, builder_hash())
        return self._layer(
            f"python-{arch}",
            key,
            f"{spec.name}: pinned wheels ({spec.python})",
            lambda stage: self._make_python(stage, spec, arch, requirements),
        )

    def _install(self, site: Path, *what: str) -> None:
        """uv pip install into site (no dependency resolution: everything is pinned), for the image's Python;
        then drop console scripts, which carry the build host's interpreter in their shebang."""
        run(
            [*self.uv, "pip", "install", "--quiet", "--target", str(site), "--no-deps", "--no-compile",
             "--python-version", PYTHON, *what],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(site / "bin", ignore_errors=True)

    def _make_python(self, stage: Path, spec: ImageSpec, arch: str, requirements: str) -> list[str]:
        site = stage / SITE_PACKAGES
        site.mkdir(parents=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
            req.write(requirements)
            req.flush()
            log(f"python-{arch}: uv pip install --target ({spec.python}, {UV_PLATFORMS[arch]})")
            self._install(site, "--require-hashes", "--python-platform", UV_PLATFORMS[arch], "-r", req.name)
        if spec.triton:
            install_triton_launcher(stage, site_packages=f"/{SITE_PACKAGES}", python_version=PYTHON)
        compile_python(stage, SITE_PACKAGES)
        return pip_packages(stage)

    # app: the edgetenant wheel --------------------------------------------------------------------------

    def app(self, spec: ImageSpec) -> Layer | None:
        if not spec.project:
            return None
        sources = [REPO / "pyproject.toml", *sorted((REPO / "operator" / "edgetenant").rglob("*.py"))]
        key = key_of("app", builder_hash(), _source_hash(sources))
        return self._layer("app", key, "edgetenant (this checkout's wheel)", self._make_app)

    def _make_app(self, stage: Path) -> list[str]:
        site = stage / SITE_PACKAGES
        site.mkdir(parents=True)
        with tempfile.TemporaryDirectory() as wheels:
            log("app: uv build --wheel")
            run([*self.uv, "build", "--quiet", "--wheel", "--out-dir", wheels, REPO], capture_output=True)
            wheel = next(Path(wheels).glob("edgetenant-*.whl"))
            self._install(site, str(wheel))
        command = stage / "usr" / "local" / "bin" / "edgetenant"
        command.parent.mkdir(parents=True)
        command.write_text(
            f"#!/usr/bin/python{PYTHON}\nimport sys\n\nfrom edgetenant.cli import main\n\nsys.exit(main())\n"
        )
        command.chmod(0o755)
        compile_python(stage, SITE_PACKAGES)
        return pip_packages(stage)

    def layers(self, spec: ImageSpec, arch: str) -> list[Layer]:
        base = self.base(arch, spec.debian)
        return [layer for layer in (base, self.python(spec, arch), self.app(spec)) if layer]

    # images ---------------------------------------------------------------------------------------------

    def image(self, spec: ImageSpec, arch: str) -> Path:
        """The OCI archive of spec for arch (from the cache when its layers and config are unchanged)."""
        layers = self.layers(spec, arch)
        config = {
            "created": CREATED,
            "architecture": OCI_PLATFORMS[arch]["architecture"],
            "os": "linux",
            **({"variant": OCI_PLATFORMS[arch]["variant"]} if "variant" in OCI_PLATFORMS[arch] else {}),
            "config": {
                "User": f"{self.definition.uid}:{self.definition.uid}",
                "Env": environment(),
                "Entrypoint": list(spec.entrypoint),
                **({"Cmd": list(spec.cmd)} if spec.cmd else {}),
                "WorkingDir": "/",
                "Labels": labels(self.definition, spec),
            },
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [
                {"created": CREATED, "created_by": "hack/images/build.py", "comment": layer.comment}
                for layer in layers
            ],
        }
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        key = key_of("image", spec.name, arch, sha256_bytes(config_bytes), [layer.digest for layer in layers])
        directory = self.cache / "archives" / key
        self.used.add(directory)
        archive = directory / spec.archive_name(arch)
        if archive.is_file():
            log(f"{spec.name} ({arch}): cached")
            return archive
        work = Path(tempfile.mkdtemp(prefix=".archive-", dir=self.cache))
        try:
            _write_oci_archive(
                work / archive.name,
                spec,
                arch,
                config=config_bytes,
                layers=layers,
                definition=self.definition,
            )
            packages = sorted({p for layer in layers for p in layer.packages})
            (work / f"{archive.name}.packages.txt").write_text(
                f"# {spec.reference(self.definition.registry)} ({arch}): every dpkg and pip package\n"
                + "\n".join(packages)
                + "\n"
            )
            directory.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                work.rename(directory)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"{spec.name} ({arch}): {archive.stat().st_size / 2**20:.0f} MiB -> {archive}")
        return archive


@functools.cache
def builder_hash() -> str:
    """This file's own hash, in every cache key (read once: an edit during a build changes nothing)."""
    return _source_hash([Path(__file__)])


def _source_hash(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _write_dpkg_status(stage: Path) -> list[str]:
    """dpkg's status database from the unpacked packages' control data, so audit tools see them."""
    debs = sorted((stage / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    if not debs:
        raise BuildError("mmdebstrap left no packages to record")
    paragraphs, packages = [], []
    for deb in debs:
        control = run(["dpkg-deb", "-f", deb], capture_output=True).stdout.strip().splitlines()
        fields = dict(line.split(": ", 1) for line in control if ": " in line and not line.startswith(" "))
        packages.append(f"deb {fields['Package']} {fields['Version']} {fields['Architecture']}")
        paragraphs.append("\n".join([control[0], "Status: install ok installed", *control[1:]]))
    status = stage / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text("\n\n".join(paragraphs) + "\n")
    return packages


def _prune_docs(stage: Path) -> None:
    """Documentation goes; each package's copyright file (its licence) stays."""
    docs = stage / "usr" / "share" / "doc"
    for path in sorted(docs.rglob("*"), reverse=True) if docs.is_dir() else []:
        if path.name == "copyright" or (path.is_dir() and any(path.iterdir())):
            continue
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()


def _write_system_files(stage: Path, uid: int) -> None:
    etc = stage / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"edgetenant:x:{uid}:{uid}:edgetenant:/tmp:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text(f"root:x:0:\nedgetenant:x:{uid}:\nnogroup:x:65534:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    # What update-ca-certificates (a maintainer script, not run) would write: every shipped CA, in order.
    cas = sorted((stage / "usr" / "share" / "ca-certificates").rglob("*.crt"))
    bundle = etc / "ssl" / "certs" / "ca-certificates.crt"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text("".join(ca.read_text() for ca in cas))
    for directory, mode in (("tmp", 0o1777), ("root", 0o700)):
        (stage / directory).mkdir(exist_ok=True)
        (stage / directory).chmod(mode)


def install_triton_launcher(stage: Path, *, site_packages: str, python_version: str) -> None:
    """Make the nvidia-pytriton wheel's Triton usable as `tritonserver`.

    The Python backend needs its stub (built per Python version, kept in the wheel under
    python_backend_stubs/) beside libtriton_python.so, and both find their libraries through an
    $ORIGIN-relative RPATH into the wheel, so the backend directory Triton is given must be the wheel's
    own, not a symlink to it. The launcher passes it unless the caller names one. Also run by the
    device-runtime Dockerfiles (`build.py triton-layout`), so every Triton image is laid out the same.
    """
    triton = stage / site_packages.lstrip("/") / "pytriton" / "tritonserver"
    stub = triton / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.is_file():
        raise BuildError(f"the nvidia-pytriton wheel has no Python-backend stub for Python {python_version}")
    shutil.copy2(stub, triton / "backends" / "python" / stub.name)
    shutil.rmtree(triton / "python_backend_stubs")  # the other Python versions' stubs
    launcher = stage / "usr" / "local" / "bin" / "tritonserver"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    real = f"{site_packages}/pytriton/tritonserver"
    launcher.write_text(
        f"#!/usr/bin/python{python_version}\n"
        '"""Triton from the nvidia-pytriton wheel, with the wheel\'s own backend directory."""\n'
        "import os\nimport sys\n\n"
        f'REAL = "{real}/bin/tritonserver"\nBACKENDS = "{real}/backends"\n'
        "args = sys.argv[1:]\n"
        'if not any(arg.startswith("--backend-directory") for arg in args):\n'
        '    args.insert(0, f"--backend-directory={BACKENDS}")\n'
        "os.execv(REAL, [REAL, *args])\n"
    )
    launcher.chmod(0o755)


def _write_oci_archive(
    path: Path, spec: ImageSpec, arch: str, *, config: bytes, layers: list[Layer], definition: Definition
) -> None:
    config_descriptor = {
        "mediaType": MEDIA_CONFIG,
        "digest": f"sha256:{sha256_bytes(config)}",
        "size": len(config),
    }
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_descriptor,
            "layers": [
                {"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size} for layer in layers
            ],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": f"sha256:{sha256_bytes(manifest)}",
                    "size": len(manifest),
                    "platform": OCI_PLATFORMS[arch],
                    # containerd (ctr, K3s) and podman name the image from the first; the OCI
                    # layout's own tag annotation is the second.
                    "annotations": {
                        "io.containerd.image.name": spec.reference(definition.registry),
                        "org.opencontainers.image.ref.name": spec.tag,
                    },
                }
            ],
        },
        sort_keys=True,
        indent=1,
    ).encode()

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(tar, "index.json", index)
        add_bytes(tar, f"blobs/sha256/{sha256_bytes(manifest)}", manifest)
        add_bytes(tar, f"blobs/sha256/{sha256_bytes(config)}", config)
        for layer in layers:
            info = tarfile.TarInfo(f"blobs/sha256/{layer.digest.removeprefix('sha256:')}")
            info.size, info.mtime, info.mode = layer.size, EPOCH, 0o644
            with layer.path.open("rb") as blob:
                tar.addfile(info, blob)


def publish(archive: Path) -> Path:
    """Copy (hard-link where possible) the archive and its package list into dist/images/."""
    DIST.mkdir(parents=True, exist_ok=True)
    for source in (archive, archive.with_name(archive.name + ".packages.txt")):
        target = DIST / source.name
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return DIST / archive.name


# --- Dockerfiles ----------------------------------------------------------------------------------------

DOCKERFILE_HEADER = """\
# GENERATED from images/images.toml by `python3 hack/images/build.py dockerfiles`: edit those, not this.
# The same builder as `make images` assembles the root file system (Debian packages unpacked by
# mmdebstrap, pinned wheels, the edgetenant wheel), natively for any target architecture.
# Build from the repository root:
#   docker buildx build --platform {platforms} -f images/{name}/Dockerfile -t {reference} .
"""


def dockerfile(definition: Definition, spec: ImageSpec) -> str:
    lines = [
        DOCKERFILE_HEADER.format(
            platforms=",".join(f"linux/{arch}" for arch in spec.archs),
            name=spec.name,
            reference=spec.reference(definition.registry),
        ),
        "FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS build",
        "ARG TARGETARCH",
        "# hadolint ignore=DL3008",
        "RUN apt-get update \\",
        " && apt-get install -y --no-install-recommends mmdebstrap python3 python3-venv ca-certificates \\",
        " && rm -rf /var/lib/apt/lists/* \\",
        " && python3 -m venv /opt/uv \\",
        " && /opt/uv/bin/pip install --no-cache-dir uv==0.13.9",
        "COPY pyproject.toml uv.lock README.md /src/",
        "COPY images /src/images",
        "COPY hack/images /src/hack/images",
        "COPY operator /src/operator",
        "RUN /opt/uv/bin/python /src/hack/images/build.py rootfs \\",
        f' --image {spec.name} --arch "$TARGETARCH" --out /rootfs',
        "",
        "FROM scratch",
        "COPY --from=build /rootfs /",
        *(f"ENV {entry}" for entry in environment()),
        *(f'LABEL {key}="{value}"' for key, value in labels(definition, spec).items()),
        f"USER {definition.uid}:{definition.uid}",
        f"ENTRYPOINT {json.dumps(list(spec.entrypoint))}",
        *([f"CMD {json.dumps(list(spec.cmd))}"] if spec.cmd else []),
    ]
    return "\n".join(lines) + "\n"


def dockerfile_path(spec: ImageSpec) -> Path:
    return REPO / "images" / spec.name / "Dockerfile"


# --- commands -------------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    definition = load_definition()
    check_python()
    ensure_tools()
    builder = Builder(definition)
    names = args.image or definition.names()
    started = time.monotonic()
    built = []
    for name in names:
        spec = definition.image(name)
        for arch in spec.archs:
            if args.arch and arch not in args.arch:
                continue
            built.append((spec, arch, publish(builder.image(spec, arch))))
    if not args.image and not args.arch:
        builder.prune()
    for spec, arch, path in built:
        print(
            f"{spec.reference(definition.registry):<52} {arch:<6} {path.stat().st_size / 2**20:6.0f} MiB  "
            f"{path.relative_to(REPO)}"
        )
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


def cmd_rootfs(args: argparse.Namespace) -> int:
    """Unpack every layer of an image into a directory (a Dockerfile then copies it onto scratch)."""
    definition = load_definition()
    check_python()
    spec = definition.image(args.image)
    if args.arch not in spec.archs:
        raise BuildError(f"image {spec.name} is built for {', '.join(spec.archs)}, not {args.arch}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Our own layers, written by write_layer: trusted as they are (the "tar" filter would clear /tmp's
    # sticky bit). Python 3.11.4 added extraction filters; older versions extract the same way.
    options: dict[str, Any] = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    for layer in Builder(definition).layers(spec, args.arch):
        with tarfile.open(layer.path, "r:gz") as tar:
            tar.extractall(out, **options)
    return 0


def cmd_dockerfiles(args: argparse.Namespace) -> int:
    definition = load_definition()
    stale = []
    for spec in definition.images:
        path, text = dockerfile_path(spec), dockerfile(definition, spec)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(
            f"out of date (run python3 hack/images/build.py dockerfiles): {', '.join(stale)}", file=sys.stderr
        )
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    definition = load_definition()
    for spec in definition.images:
        for arch in spec.archs:
            print(f"{spec.reference(definition.registry)}\t{arch}\tdist/images/{spec.archive_name(arch)}")
    for name, runtime in definition.runtimes.items():
        print(
            f"{definition.registry}/{name}:{runtime['tag']}\t{runtime['platform']}\timages/{name}/Dockerfile"
        )
    return 0


def cmd_triton_layout(args: argparse.Namespace) -> int:
    install_triton_launcher(Path(args.root), site_packages=args.site_packages, python_version=args.python)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/images/build.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build images into the cache and dist/images/")
    build.add_argument("--image", action="append", help="only this image (repeatable)")
    build.add_argument("--arch", action="append", choices=sorted(UV_PLATFORMS), help="only this architecture")
    build.set_defaults(run=cmd_build)
    rootfs = commands.add_parser("rootfs", help="unpack one image's file system into a directory")
    rootfs.add_argument("--image", required=True)
    rootfs.add_argument("--arch", required=True, choices=sorted(UV_PLATFORMS))
    rootfs.add_argument("--out", required=True)
    rootfs.set_defaults(run=cmd_rootfs)
    dockerfiles = commands.add_parser("dockerfiles", help="write (or --check) the generated Dockerfiles")
    dockerfiles.add_argument("--check", action="store_true")
    dockerfiles.set_defaults(run=cmd_dockerfiles)
    listing = commands.add_parser("list", help="every image: reference, architecture, archive or Dockerfile")
    listing.set_defaults(run=cmd_list)
    layout = commands.add_parser("triton-layout", help="stub + tritonserver launcher for a pytriton install")
    layout.add_argument("--root", default="/")
    layout.add_argument(
        "--site-packages", required=True, help="where the wheel is installed, as the image sees it"
    )
    layout.add_argument("--python", required=True, help="the Python minor version Triton's stub must match")
    layout.set_defaults(run=cmd_triton_layout)
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except BuildError as error:
        print(f"hack/images/build.py: {error}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
