"""Fixtures of the real-node tier: the lab (its edge-local must be a kubelet), a namespace, and the
operator running in the cluster from its image."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.lab import InClusterOperator, Lab, lab_env, lab_session


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    for running in lab_session():
        if (lab_env() or {}).get("EDGETENANT_LAB_NODE") != "kubelet":
            pytest.skip("the lab's edge-local is not a real kubelet (hack/lab/lab up --node=kubelet)")
        yield running


@pytest.fixture(scope="module")
def namespace(lab: Lab) -> Iterator[str]:
    name = f"node-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(lab: Lab) -> Iterator[InClusterOperator]:
    env = {"EDGETENANT_TUNE_INTERVAL_S": "5", "EDGETENANT_RESYNC_S": "2"}
    running = InClusterOperator(lab, env).start()
    yield running
    print(running.log_tail())
    running.kill()
