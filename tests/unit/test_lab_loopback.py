"""Every address the lab configures is a loopback address: nothing it starts can reach another host."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IP = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![\d.])")


def load_lab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("edge_lab", REPO / "hack" / "lab" / "lab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["edge_lab"] = module
    spec.loader.exec_module(module)
    return module


def addresses(text: str) -> list[str]:
    return [m.group(0) for m in IP.finditer(text)]


def is_loopback(token: str) -> bool:
    return ipaddress.ip_network(token, strict=False).subnet_of(ipaddress.ip_network("127.0.0.0/8"))


@pytest.fixture(scope="module")
def lab() -> ModuleType:
    return load_lab()


def test_every_component_listens_and_dials_on_loopback(lab: ModuleType, tmp_path: Path) -> None:
    state = lab.LabState(tmp_path, lab.Ports(), "/bin", {}, "token")
    commands = lab.component_commands(state, Path("/bin"))
    assert set(commands) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "prometheus",
    }
    found = [a for argv in commands.values() for arg in argv for a in addresses(arg)]
    assert found, "the check must see the addresses it guards"
    assert [a for a in found if not is_loopback(a)] == []
    # The flags that decide where things listen or what pods get are all present and loopback.
    flat = " ".join(arg for argv in commands.values() for arg in argv)
    for flag in ("--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--node-ip=127.0.0.1"):
        assert flag in flat
    assert f"--cidr={lab.POD_CIDR}" in flat and is_loopback(lab.POD_CIDR)
    assert is_loopback(lab.SERVICE_CIDR)


def test_prometheus_discovers_and_scrapes_only_loopback(lab: ModuleType, tmp_path: Path) -> None:
    state = lab.LabState(tmp_path, lab.Ports(), "/bin", {}, "token")
    config = lab.prometheus_config(state)
    found = addresses(json.dumps(config))
    assert found and all(is_loopback(a) for a in found)
    relabels = config["scrape_configs"][0]["relabel_configs"]
    assert {"source_labels": ["__address__"], "action": "keep", "regex": "127\\..*"} in relabels


def test_topology_has_no_routable_address() -> None:
    text = (REPO / "hack" / "lab" / "edge-lab.yaml").read_text()
    assert [a for a in addresses(text) if not is_loopback(a)] == []
    nodes = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "Node"]
    assert all(n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake" for n in nodes)


def test_the_check_itself_catches_a_private_address() -> None:
    assert not is_loopback("10.96.0.0/16")
    assert not is_loopback("192.168.1.10")
    assert is_loopback("127.64.0.1/16")
