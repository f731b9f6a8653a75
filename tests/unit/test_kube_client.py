"""The Kubernetes adapter's client set-up (no API server: nothing here sends a request)."""

from __future__ import annotations

from edgetenant.adapters.kube import Kube


def test_the_client_keeps_a_connection_for_every_worker_thread() -> None:
    # The client's own default is 5 per core; beyond it every call opened and discarded a connection.
    pool = Kube(connections=32).api_client.rest_client.pool_manager.connection_pool_kw
    assert pool["maxsize"] == 32
