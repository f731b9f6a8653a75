"""Fixtures shared by the e2e modules that bring their own tenants: the lab (adopted when it runs; its
edge-local must be a real kubelet), a namespace and the operator, one per module, running in the
cluster from its image as its ServiceAccount, as a K3s user runs it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.lab import InClusterOperator, Lab, lab_session


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    for running in lab_session():
        if running.node_mode != "kubelet":
            pytest.skip(f"the lab's edge-local runs no kubelet (--node={running.node_mode}): nothing serves")
        yield running


@pytest.fixture(scope="module")
def namespace(lab: Lab) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(lab: Lab) -> Iterator[InClusterOperator]:
    running = InClusterOperator(lab, {"EDGETENANT_TUNE_INTERVAL_S": "5", "EDGETENANT_RESYNC_S": "2"}).start()
    yield running
    print(running.log_tail())
    running.kill()
