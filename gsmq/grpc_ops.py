"""What every gRPC server of the daemons serves besides its API: gRPC health checking
(`grpc.health.v1.Health`, for Kubernetes probes and grpcurl) and server reflection (so
grpcurl and other tools need no .proto files)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    """The health of one server: NOT_SERVING until `ready(True)`, for the whole server ("")
    and each of its services. `ready` may be called from any thread."""

    def __init__(self, services: Iterable[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self.services = ["", *services]
        self.serving = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Set every service NOT_SERVING (on the server's event loop)."""
        self._loop = asyncio.get_running_loop()
        for name in self.services:
            await self.servicer.set(name, NOT_SERVING)

    def ready(self, serving: bool) -> None:
        """SERVING or NOT_SERVING from now on (a change only is applied)."""
        if serving == self.serving or self._loop is None:
            return
        self.serving = serving

        async def apply() -> None:
            for name in self.services:
                await self.servicer.set(name, SERVING if serving else NOT_SERVING)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._loop.create_task(apply())
        else:
            asyncio.run_coroutine_threadsafe(apply(), self._loop)

    async def stopping(self) -> None:
        """NOT_SERVING for good: the server is draining."""
        self.serving = False
        await self.servicer.enter_graceful_shutdown()


def add_operations(server: grpc.aio.Server, services: Iterable[str]) -> Health:
    """Serve health and reflection on `server` beside `services` (their full names); the
    health starts NOT_SERVING (call `start` on the loop, then `ready`)."""
    names = list(services)
    checker = Health(names)
    health_pb2_grpc.add_HealthServicer_to_server(checker.servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return checker
