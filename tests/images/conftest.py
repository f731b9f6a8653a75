"""Session fixtures for the images tier: an isolated podman store, the lab (for the operator image).

Needs `make images` (the archives in dist/images/ and the Debian packages podman and runc it installs);
the lab is brought up as in tests/cluster (EDGETENANT_LAB_DIR / EDGETENANT_LAB_PORT_OFFSET select it).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from tests.images.support import Podman
from tests.lab import Lab, lab_session


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    runtime = Podman(tmp_path_factory.mktemp("podman"))
    yield runtime
    # The store holds unpacked copies of every image (GBs with vfs): not worth keeping after the run.
    runtime.podman("rm", "--all", "--force", check=False)
    shutil.rmtree(runtime.root, ignore_errors=True)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    yield from lab_session()


@pytest.fixture
def namespace(lab: Lab) -> Iterator[str]:
    name = f"img-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false", check=False)
