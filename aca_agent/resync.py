"""The agent's calls to the DPM, from a background thread.

Resync: ask the DPM (gRPC `GoalStateProvisioner.RequestGoalStates`, AGENT_RESTARTED) to
publish hosts' whole state. Requests are queued and sent many hosts per call, retried
with backoff while the DPM is unreachable.

Registration (`gsmq.v1.AgentRegistry.Register`): the address of the agent's fast path and
its hosts, sent at start and every `register_every` seconds, so that a restarted DPM, or
one that dropped the registration when the stream failed, learns it again."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable

import grpc
import structlog

from alcor.schema import common_pb2 as common
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from gsmq.errors import DpmUnavailableError
from gsmq.retry import Backoff, retry
from gsmq.v1 import channel_pb2, channel_pb2_grpc

log = structlog.get_logger()
REGISTER_EVERY = 5.0  # seconds between two registrations of the fast path


def host_request(hosts: Iterable[str]) -> gsp.HostRequest:
    """One HostRequest asking the full state of every host (source_ip = host id)."""
    request = gsp.HostRequest(format_version=1)
    for host in hosts:
        request.state_requests.add(request_type=common.AGENT_RESTARTED, request_id=uuid.uuid4().hex, source_ip=host)
    return request


class Resyncer:
    """Background sender of resync requests; `request()` never blocks."""

    def __init__(self, address: str, chunk: int = 5000, timeout: float = 10.0, max_backoff: float = 5.0,
                 registration: channel_pb2.Registration | None = None, register_every: float = REGISTER_EVERY) -> None:
        self.address = address
        self.registration = registration
        self.register_every = register_every
        self.registered = 0  # registrations the DPM answered
        self._register_at = 0.0
        self.chunk = chunk
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.requested = 0  # hosts whose request the DPM answered
        self._queued: dict[str, None] = {}  # insertion-ordered set of hosts waiting to be sent
        self._cond = threading.Condition()
        self._stopped = threading.Event()
        # gRPC's own reconnect backoff (1 s growing to 120 s) would outlast ours: keep it short.
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", int(max_backoff * 1000)),
            ],
        )
        self._stub = gsp_grpc.GoalStateProvisionerStub(self._channel)
        self._registry = channel_pb2_grpc.AgentRegistryStub(self._channel)
        self._thread = threading.Thread(target=self._loop, name="aca-resync", daemon=True)

    def start(self) -> Resyncer:
        self._thread.start()
        return self

    def register(self, registration: channel_pb2.Registration) -> None:
        """Register the fast path from now on (at once, then every `register_every` seconds)."""
        with self._cond:
            self.registration = registration
            self._register_at = 0.0
            self._cond.notify()

    def request(self, hosts: Iterable[str]) -> None:
        """Queue hosts for a resync (a host already queued is asked once)."""
        with self._cond:
            for host in hosts:
                self._queued[host] = None
            self._cond.notify()

    def stop(self) -> None:
        self._stopped.set()
        with self._cond:
            self._cond.notify()
        self._thread.join(timeout=5)
        self._channel.close()

    def _loop(self) -> None:
        """Send the queued hosts, a chunk per call, until stopped; a DPM that does not answer is retried with backoff."""
        backoff = Backoff(first=0.2, cap=self.max_backoff)
        while True:
            with self._cond:
                while not self._queued and not self._stopped.is_set():
                    if self.registration is not None and time.monotonic() >= self._register_at:
                        break
                    self._cond.wait(None if self.registration is None else max(self._register_at - time.monotonic(), 0.0))
            if self._stopped.is_set():
                return
            if self.registration is not None and time.monotonic() >= self._register_at:
                self._register()
            if not self._queued:
                continue
            retry(self._send_chunk, self._stopped, "resync_retry", backoff=backoff, retry_on=(DpmUnavailableError,), dpm=self.address)

    def _register(self) -> None:
        """Register the fast path once; a failure is tried again at the next turn."""
        assert self.registration is not None
        self._register_at = time.monotonic() + self.register_every
        try:
            answer = self._registry.Register(self.registration, timeout=self.timeout)
        except grpc.RpcError as exc:
            log.info("registration_failed", dpm=self.address, error=exc.code().name, again_in_s=self.register_every)
            return
        if not self.registered:
            log.info("registered", dpm=self.address, fast_path=self.registration.address, hosts=answer.hosts, path=answer.path)
        self.registered += 1

    def _send_chunk(self) -> int:
        """Ask the DPM for the state of the first `chunk` queued hosts; how many were asked."""
        with self._cond:
            hosts = list(self._queued)[: self.chunk]
        try:
            reply = self._stub.RequestGoalStates(host_request(hosts), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise DpmUnavailableError(f"{exc.code().name} ({len(hosts)} hosts waiting)") from exc
        failed = sum(1 for s in reply.operation_statuses if s.operation_status != common.SUCCESS)
        with self._cond:
            for host in hosts:
                self._queued.pop(host, None)
            self.requested += len(hosts)
        log.info("resync_requested", dpm=self.address, hosts=len(hosts), failed=failed)
        return len(hosts)

