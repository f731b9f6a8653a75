"""The lab's doors (TCP forwarding between the host's loopback and the lab's network namespace) and
its cluster DNS.

Started in the host's namespace, it opens its host-side listening sockets there and then moves into the
lab's namespace (netns.py) for good: it connects only there. Two kinds of door:

    --host LISTEN=TARGET   listen on LISTEN in the host's namespace (a 127.0.0.1 address only), for
                           the host's kubectl and browsers: the API server, Prometheus
    --lab LISTEN=TARGET    listen on LISTEN inside the lab, for pods: the `kubernetes` Service's
                           ClusterIP (10.43.0.1:443, as kube-proxy would), Prometheus and the model
                           store at the node's address

TARGET is always dialled inside the lab's namespace, which has no route out: whatever a door is
given, no packet of it can leave the lab.

    --dns ADDRESS          the cluster DNS (the kubelet's clusterDNS), as K3s's CoreDNS at 10.43.0.10:
                           it answers the `kubernetes` Service's name (in-cluster clients such as kopf
                           dial https://kubernetes.default.svc) and NXDOMAIN for every other name: it
                           forwards nothing anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns import enter, is_lab_address

log = logging.getLogger("forward")
CHUNK = 1 << 16


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    ipaddress.ip_address(host)  # an IP literal: a name would need a resolver
    return host, int(port)


def parse_rule(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    listen, sep, target = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LISTEN=TARGET (host:port=host:port)")
    try:
        return parse_address(listen), parse_address(target)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from error


def check_rules(
    host: list[tuple[tuple[str, int], tuple[str, int]]], lab: list[tuple[tuple[str, int], tuple[str, int]]]
) -> None:
    """Host doors listen on loopback only; every target and lab door is a lab address."""
    for (listen, _), kind in [(r, "host") for r in host] + [(r, "lab") for r in lab]:
        if kind == "host" and not ipaddress.ip_address(listen[0]).is_loopback:
            raise SystemExit(f"error: a host door must listen on loopback, not {listen[0]}")
        if kind == "lab" and not is_lab_address(listen[0]):
            raise SystemExit(f"error: a lab door must listen on a lab address, not {listen[0]}")
    for _, target in host + lab:
        if not is_lab_address(target[0]):
            raise SystemExit(f"error: {target[0]} is not a lab address")


def listening_socket(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


def door(target: tuple[str, int]) -> object:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*target), timeout=10)
        except (OSError, TimeoutError):
            writer.close()  # the target is down (e.g. a fault test stopped it): refuse, like it would
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()

    return handle


# The names the cluster DNS answers: the `kubernetes` Service (cluster domain cluster.local).
DNS_NAMES = {"kubernetes.default.svc.cluster.local": "10.43.0.1"}
QTYPE_A, QCLASS_IN, NOERROR, NXDOMAIN = 1, 1, 0, 3


def dns_answer(query: bytes, names: dict[str, str] = DNS_NAMES) -> bytes | None:
    """The reply to one DNS query over UDP (pure): an A record for a known name, no data for its other
    record types, NXDOMAIN for anything else; None for what is not a query."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, at = [], 12
    while at < len(query) and (length := query[at]) != 0:
        if length & 0xC0 or at + 1 + length > len(query):
            return None  # compression pointers never appear in a question
        labels.append(query[at + 1 : at + 1 + length].decode("ascii", "replace").lower())
        at += 1 + length
    if at + 5 > len(query):
        return None
    qtype, qclass = struct.unpack("!HH", query[at + 1 : at + 5])
    question = query[12 : at + 5]
    address = names.get(".".join(labels))
    rcode = NOERROR if address is not None else NXDOMAIN
    answers = b""
    if address is not None and qtype == QTYPE_A and qclass == QCLASS_IN:
        # A pointer to the question's name, type A, class IN, TTL 30 s, 4 bytes of address.
        answers = struct.pack("!HHHIH", 0xC00C, QTYPE_A, QCLASS_IN, 30, 4) + socket.inet_aton(address)
    recursion_desired = flags & 0x0100
    header = struct.pack(
        "!HHHHHH", ident, 0x8400 | recursion_desired | rcode, 1, 1 if answers else 0, 0, 0
    )  # a response, authoritative
    return header + question + answers


class ClusterDNS(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = dns_answer(data)
        if reply is not None:
            self.transport.sendto(reply, addr)  # type: ignore[attr-defined]


async def serve(
    doors: list[tuple[socket.socket, tuple[str, int]]], dns: tuple[str, int] | None = None
) -> None:
    servers = [await asyncio.start_server(door(target), sock=sock) for sock, target in doors]  # type: ignore[arg-type]
    if dns is not None:
        await asyncio.get_running_loop().create_datagram_endpoint(ClusterDNS, local_addr=dns)
        log.info("cluster DNS on %s:%d: %s", *dns, DNS_NAMES)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for sock, target in doors:
        log.info("%s:%d -> %s:%d", *sock.getsockname(), *target)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--netns", required=True, help="the lab's network namespace (a /proc/PID/ns/net path)"
    )
    parser.add_argument("--host", type=parse_rule, action="append", default=[], metavar="LISTEN=TARGET")
    parser.add_argument("--lab", type=parse_rule, action="append", default=[], metavar="LISTEN=TARGET")
    parser.add_argument("--dns", type=parse_address, default=None, metavar="ADDRESS", help="IP:port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    check_rules(args.host, args.lab)
    if args.dns is not None and not is_lab_address(args.dns[0]):
        raise SystemExit(f"error: the DNS must listen on a lab address, not {args.dns[0]}")
    host = [listening_socket(listen) for listen, _ in args.host]
    enter(args.netns)  # from here on, this process lives in the lab
    lab = [listening_socket(listen) for listen, _ in args.lab]
    targets = [target for _, target in args.host + args.lab]
    asyncio.run(serve(list(zip(host + lab, targets, strict=True)), args.dns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
