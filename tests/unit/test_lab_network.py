"""Nothing the lab starts can send a packet off this machine (the network rule), as configured.

The lab runs in a network namespace of its own (hack/lab/netns.py) whose only interfaces are `lo`
and the pod bridge, with no route beyond the bridge's subnet; every component is started inside it;
the only sockets on the host are forward.py's doors on 127.0.0.1; pods get no default route.
tests/cluster/test_lab.py checks the same on a running lab.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import re
import socket
import struct
import sys
import urllib.parse
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IP = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![\d.])")
HOLDER = 4242  # a made-up PID for the namespaces' holder


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(REPO / "hack" / "lab"))
    spec = importlib.util.spec_from_file_location(f"edge_lab_{name}", REPO / "hack" / "lab" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lab() -> ModuleType:
    return load("lab")


@pytest.fixture(scope="module")
def netns() -> ModuleType:
    return load("netns")


def addresses(text: str) -> list[str]:
    return [m.group(0) for m in IP.finditer(text)]


def state(lab: ModuleType, tmp_path: Path) -> object:
    stores = {"registry_bin": "/bin", "versitygw_bin": "/bin"}  # the model stores run too
    return lab.LabState(
        tmp_path, lab.Ports(), "/bin", {"namespaces": HOLDER}, "token", node_mode="kubelet", stores=stores
    )


def test_every_component_runs_inside_the_labs_namespace(lab: ModuleType, tmp_path: Path) -> None:
    commands = lab.component_commands(state(lab, tmp_path), Path("/bin"))
    wanted = {
        "etcd",
        "kube-apiserver",
        "kwok",
        "prometheus",
        "containerd",
        "kubelet",
        "forward",
        "registry",
        "s3",
    }
    assert wanted <= set(commands)
    into_lab = f"--net=/proc/{HOLDER}/ns/net"
    for name, argv in commands.items():
        if name == "forward":  # binds its host doors first, then moves itself in
            assert f"--netns=/proc/{HOLDER}/ns/net" in argv
        else:
            assert argv[:2] == ["nsenter", into_lab], name
    for name in ("containerd", "kubelet"):  # the node also sees its own mounts
        assert f"--mount=/proc/{HOLDER}/ns/mnt" in commands[name]


def test_every_address_a_component_is_given_is_a_lab_address(
    lab: ModuleType, netns: ModuleType, tmp_path: Path
) -> None:
    commands = lab.component_commands(state(lab, tmp_path), Path("/bin"))
    found = [a for argv in commands.values() for arg in argv for a in addresses(arg)]
    # The registry's listener is in its configuration file, not on its command line.
    found += addresses(str(lab.registry_config(state(lab, tmp_path))["http"]["addr"]))
    assert found, "the check must see the addresses it guards"
    assert [a for a in found if not netns.is_lab_address(a)] == []
    # The only listeners on the host are the doors, on loopback.
    host_doors = [a.split("=", 1)[1] for a in commands["forward"] if a.startswith("--host=")]
    assert host_doors and all(d.startswith("127.0.0.1:") for d in host_doors)


def test_the_namespace_gets_no_route_and_only_lab_addresses(netns: ModuleType) -> None:
    commands = netns.setup_commands()
    assert not [c for c in commands if "route" in c], "no route of any kind is added"
    added = [c[c.index("add") + 1] for c in commands if c[:2] == ["ip", "addr"]]
    assert added and all(netns.is_lab_address(a) for a in added)
    assert ipaddress.ip_network(netns.LAB_SUBNET).is_private  # never a public range


def test_pods_get_no_default_route(netns: ModuleType) -> None:
    realnode = load("realnode")
    bridge = realnode.cni_config()["plugins"][0]
    assert bridge["isDefaultGateway"] is False and bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": netns.LAB_SUBNET, "gateway": netns.NODE_IP}]]
    assert bridge["ipam"]["routes"] == [{"dst": netns.SERVICE_CIDR}]


def test_the_node_resolves_only_lab_names_and_streams_on_loopback(lab: ModuleType, tmp_path: Path) -> None:
    realnode = load("realnode")
    node = realnode.Node(tmp_path, Path("/bin"))
    config = realnode.kubelet_config(node, tmp_path / "ca.crt")
    # Pods ask only the lab's cluster DNS, never the machine's own nameserver.
    assert config["resolvConf"] == "" and config["clusterDNS"] == [load("netns").CLUSTER_DNS_IP]
    assert config["address"] == load("netns").NODE_IP
    assert 'stream_server_address = "127.0.0.1"' in realnode.containerd_config(node)


def test_prometheus_scrapes_only_lab_pod_addresses(
    lab: ModuleType, netns: ModuleType, tmp_path: Path
) -> None:
    config = lab.prometheus_config(state(lab, tmp_path))
    assert all(netns.is_lab_address(a) for a in addresses(json.dumps(config)))
    keep = re.compile(lab.SCRAPE_KEEP)
    assert keep.fullmatch("10.42.0.7:8002") and keep.fullmatch("127.64.0.5:8002")
    for outside in ("10.42.1.7:8002", "192.168.1.10:8002", "8.8.8.8:53", "10.0.0.1:80"):
        assert not keep.fullmatch(outside), outside


def test_the_doors_refuse_to_listen_or_dial_outside_the_lab() -> None:
    forward = load("forward")
    rule = forward.parse_rule
    forward.check_rules([rule("127.0.0.1:1=127.0.0.1:2")], [rule("10.43.0.1:443=127.0.0.1:2")])
    for host, inside in (
        ([rule("0.0.0.0:1=127.0.0.1:2")], []),  # a host door on every interface
        ([rule("127.0.0.1:1=192.168.1.1:2")], []),  # a door to another host
        ([], [rule("10.42.0.1:1=10.0.0.1:2")]),
    ):
        with pytest.raises(SystemExit):
            forward.check_rules(host, inside)
    with pytest.raises(argparse.ArgumentTypeError):
        rule("localhost:1=127.0.0.1:2")  # names need a resolver


def test_topology_has_no_routable_address_and_one_real_node(lab: ModuleType) -> None:
    path = REPO / "hack" / "lab" / "edge-lab.yaml"
    assert all(load("netns").is_lab_address(a) for a in addresses(path.read_text()))
    nodes = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Node"]
    real = [n for n in nodes if lab.is_real_node(n)]
    assert [n["metadata"]["name"] for n in real] == ["edge-local"]
    # KWOK plays every other node, and not the kubelet's.
    kwok = "kwok.x-k8s.io/node"
    assert all(n["metadata"]["annotations"].get(kwok) == "fake" for n in nodes if n not in real)
    created = [n for n in lab.topology_nodes(path, "kubelet") if lab.is_real_node(n)]
    assert created and all(kwok not in n["metadata"]["annotations"] and "status" not in n for n in created)


def test_the_check_itself_catches_other_addresses(netns: ModuleType) -> None:
    for outside in ("10.96.0.0/16", "192.168.1.10", "172.16.0.1", "192.0.2.2", "8.8.8.8", "10.42.1.0/24"):
        assert not netns.is_lab_address(outside), outside
    for inside in ("127.64.0.1/16", "10.42.0.9", "10.43.0.1", "127.0.0.1"):
        assert netns.is_lab_address(inside), inside


def dns_query(name: str, qtype: int = 1) -> bytes:
    """A DNS query as a stub resolver sends it: header (id 0x1234, recursion desired, one question)."""
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_the_cluster_dns_answers_only_the_kubernetes_service() -> None:
    forward = load("forward")
    reply = forward.dns_answer(dns_query("kubernetes.default.svc.cluster.local"))
    ident, flags, _, answers = struct.unpack("!HHHH", reply[:8])
    assert (ident, flags & 0xF, answers) == (0x1234, 0, 1)
    assert socket.inet_ntoa(reply[-4:]) == "10.43.0.1"
    # No AAAA record (NOERROR, no answer), and NXDOMAIN for every other name: nothing is forwarded.
    assert (
        struct.unpack("!HHHH", forward.dns_answer(dns_query("kubernetes.default.svc.cluster.local", 28))[:8])[
            3
        ]
        == 0
    )
    for name in ("example.com", "registry-1.docker.io", "kubernetes.default.svc.cluster.local.evil"):
        assert struct.unpack("!H", forward.dns_answer(dns_query(name))[2:4])[0] & 0xF == 3, name
    assert forward.dns_answer(b"\x00\x01") is None  # not a query


# Never fetched in the lab: its class (coral-edgetpu) is offered only by a simulated node, whose pods
# KWOK marks Running without running any container; on a user's cluster it is the model's public home.
NEVER_FETCHED = {"github.com"}


def test_every_model_the_demo_and_samples_fetch_is_a_lab_address(netns: ModuleType) -> None:
    """Models come from the lab's stores at the node address, which exists only inside the lab's
    namespace (the host would route 10.42.0.1 out of the machine): only pods and tests there use it."""
    sources = []
    for path in [*(REPO / "hack" / "demo").glob("*.yaml"), *(REPO / "manifests" / "samples").glob("*.yaml")]:
        for doc in yaml.safe_load_all(path.read_text()):
            model = ((doc or {}).get("spec") or {}).get("model") or {}
            sources += [(path.name, model[key]) for key in ("uri", "s3Endpoint") if key in model]
    assert len(sources) >= 10
    for where, source in sources:
        host = urllib.parse.urlsplit(source).hostname or ""
        if host in NEVER_FETCHED:
            continue
        address = ipaddress.ip_address(host)
        assert address.is_loopback or host == netns.NODE_IP, f"{where}: {source} is not a lab address"
