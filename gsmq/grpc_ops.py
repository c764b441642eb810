"""What every gRPC server of the daemons serves besides its API: gRPC health checking
(`grpc.health.v1.Health`, for Kubernetes probes and grpcurl) and server reflection (so
grpcurl and other tools need no .proto files)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
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


class Gate(grpc.GenericRpcHandler):
    """A server's API while its daemon starts: every method of `services` answers UNAVAILABLE
    (clients retry) until `open` hands over the real handlers, so the server can serve
    health and reflection from the moment its port is bound."""

    def __init__(self, services: Iterable[str]) -> None:
        self.services = set(services)
        self._handlers: list[grpc.GenericRpcHandler] | None = None

    def open(self, handlers: list[grpc.GenericRpcHandler]) -> None:
        self._handlers = handlers

    @property
    def is_open(self) -> bool:
        return self._handlers is not None

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        if self._handlers is not None:
            for handler in self._handlers:
                found = handler.service(handler_call_details)
                if found is not None:
                    return found
            return None
        method = handler_call_details.method  # "/package.Service/Method"
        if method.lstrip("/").split("/")[0] not in self.services:
            return None
        return _unavailable(method)


class Handlers:
    """Stands for a server to collect the generic handlers a generated `add_*_to_server` adds (for `Gate.open`)."""

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass  # the generic handlers answer these methods too


def _unavailable(method: str) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of `method`'s kind that answers UNAVAILABLE."""
    found = descriptor_pool.Default().FindMethodByName(method.lstrip("/").replace("/", "."))
    why = "starting: the daemon is not ready yet (see grpc.health.v1)"

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, why)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAVAILABLE, why)
        yield None  # type: ignore[unreachable]  # never reached: makes this an async generator

    if found.client_streaming:
        return (grpc.stream_stream_rpc_method_handler(streaming) if found.server_streaming
                else grpc.stream_unary_rpc_method_handler(unary))
    return grpc.unary_stream_rpc_method_handler(streaming) if found.server_streaming else grpc.unary_unary_rpc_method_handler(unary)
