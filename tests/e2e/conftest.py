"""Fixtures shared by the e2e modules that bring their own tenants: the lab (adopted when it runs),
a namespace and the operator, one per module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.lab import Lab, OperatorProcess, lab_session


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from lab_session()


@pytest.fixture(scope="module")
def namespace(lab: Lab) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("operator")
    kubeconfig = lab.service_account_kubeconfig(
        "edgetenant-system", "edgetenant-operator", work / "kubeconfig"
    )
    env = {
        "EDGETENANT_PROMETHEUS_URL": lab.prometheus_url,
        "EDGETENANT_TUNE_INTERVAL_S": "5",
        "EDGETENANT_RESYNC_S": "2",
    }
    process = OperatorProcess(kubeconfig, work / "operator.log", env).start()
    yield process
    process.kill()
    print(process.log_tail())
