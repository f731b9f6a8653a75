"""The plugin's gRPC side: serve the DevicePlugin service on a socket in the kubelet's
device-plugin directory, register it with the kubelet, and register again after a kubelet restart.

The kubelet empties its device-plugin directory when it starts, so a restart shows up as our socket
vanishing (or kubelet.sock being a new file): the plugin then serves a fresh socket and registers
again, and the kubelet's capacity for the resource comes back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]

from edgetenant.deviceplugin import api
from edgetenant.deviceplugin.slots import SlotError, Slots

log = logging.getLogger("edgetenant.deviceplugin")


class SlotServicer:
    """The DevicePlugin service for one `Slots` resource. Every slot is always healthy: a CPU
    time slice has nothing to fail that the node itself would not."""

    def __init__(self, slots: Slots, stopping: threading.Event) -> None:
        self.slots = slots
        self.stopping = stopping

    def options(self, request: Any, context: grpc.ServicerContext) -> Any:
        return api.DevicePluginOptions()

    def list_and_watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        devices = [api.Device(ID=i, health=api.HEALTHY) for i in self.slots.device_ids]
        yield api.ListAndWatchResponse(devices=devices)
        # The kubelet keeps this stream open for as long as the plugin lives; the device list
        # never changes, so there is nothing more to send.
        while context.is_active() and not self.stopping.wait(1.0):
            pass

    def allocate(self, request: Any, context: grpc.ServicerContext) -> Any:
        responses = []
        for container in request.container_requests:
            try:
                envs = self.slots.container_env(container.devices_ids)
            except SlotError as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            responses.append(api.ContainerAllocateResponse(envs=envs))
            log.info("allocated %s to a container", envs["EDGETENANT_DEVICE_SLOTS"])
        return api.AllocateResponse(container_responses=responses)

    def preferred_allocation(self, request: Any, context: grpc.ServicerContext) -> Any:
        return api.PreferredAllocationResponse()

    def pre_start(self, request: Any, context: grpc.ServicerContext) -> Any:
        return api.PreStartContainerResponse()

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any, request: Any, response: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=request.FromString, response_serializer=response.SerializeToString
            )

        return grpc.method_handlers_generic_handler(
            api.DEVICE_PLUGIN_SERVICE,
            {
                "GetDevicePluginOptions": unary(self.options, api.Empty, api.DevicePluginOptions),
                "ListAndWatch": grpc.unary_stream_rpc_method_handler(
                    self.list_and_watch,
                    request_deserializer=api.Empty.FromString,
                    response_serializer=api.ListAndWatchResponse.SerializeToString,
                ),
                "GetPreferredAllocation": unary(
                    self.preferred_allocation, api.PreferredAllocationRequest, api.PreferredAllocationResponse
                ),
                "Allocate": unary(self.allocate, api.AllocateRequest, api.AllocateResponse),
                "PreStartContainer": unary(
                    self.pre_start, api.PreStartContainerRequest, api.PreStartContainerResponse
                ),
            },
        )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_ctime_ns)


@dataclass
class DevicePlugin:
    """Serve, register, and watch for the kubelet restarting."""

    slots: Slots
    plugin_dir: Path = Path(api.DEFAULT_PLUGIN_DIR)
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        self.stopping = threading.Event()
        self.registrations = 0

    @property
    def socket(self) -> Path:
        return self.plugin_dir / self.slots.socket_name

    @property
    def kubelet_socket(self) -> Path:
        return self.plugin_dir / api.KUBELET_SOCKET

    def serve(self) -> grpc.Server:
        self.socket.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="device-plugin"))
        server.add_generic_rpc_handlers([SlotServicer(self.slots, self.stopping).handler()])
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        return server

    def register(self) -> None:
        request = api.RegisterRequest(
            version=api.VERSION,
            endpoint=self.slots.socket_name,
            resource_name=self.slots.resource,
            options=api.DevicePluginOptions(),
        )
        with grpc.insecure_channel(f"unix://{self.kubelet_socket}") as channel:
            register = channel.unary_unary(
                api.REGISTER,
                request_serializer=api.RegisterRequest.SerializeToString,
                response_deserializer=api.Empty.FromString,
            )
            register(request, timeout=10, wait_for_ready=True)
        self.registrations += 1
        log.info(
            "registered %s (%d slots) with the kubelet as %s",
            self.slots.resource,
            self.slots.count,
            self.socket,
        )

    def run(self) -> None:
        """Until `stop()`: serve and register; after a kubelet restart, both again."""
        backoff = self.poll_s
        while not self.stopping.is_set():
            if _identity(self.kubelet_socket) is None:
                self.stopping.wait(self.poll_s)  # no kubelet yet
                continue
            server = self.serve()
            kubelet = _identity(self.kubelet_socket)
            try:
                self.register()
            except grpc.RpcError as error:
                log.warning("registration failed (%s); retrying in %.0f s", error.code(), backoff)
                server.stop(grace=None)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = self.poll_s
            while not self.stopping.wait(self.poll_s):
                if not self.socket.exists() or _identity(self.kubelet_socket) != kubelet:
                    log.info("the kubelet restarted (its device-plugin directory changed): registering again")
                    break
            server.stop(grace=1.0).wait()
        self.socket.unlink(missing_ok=True)

    def stop(self) -> None:
        self.stopping.set()
