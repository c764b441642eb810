"""Resync: ask the DPM (gRPC `GoalStateProvisioner.RequestGoalStates`, AGENT_RESTARTED)
to publish hosts' whole state. Requests are queued and sent from a background thread,
many hosts per call, retried with backoff while the DPM is unreachable."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable

import grpc
import structlog

from alcor.schema import common_pb2 as common
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from gsmq.errors import DpmUnavailableError
from gsmq.retry import Backoff, retry

log = structlog.get_logger()


def host_request(hosts: Iterable[str]) -> gsp.HostRequest:
    """One HostRequest asking the full state of every host (source_ip = host id)."""
    request = gsp.HostRequest(format_version=1)
    for host in hosts:
        request.state_requests.add(request_type=common.AGENT_RESTARTED, request_id=uuid.uuid4().hex, source_ip=host)
    return request


class Resyncer:
    """Background sender of resync requests; `request()` never blocks."""

    def __init__(self, address: str, chunk: int = 5000, timeout: float = 10.0, max_backoff: float = 5.0) -> None:
        self.address = address
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
        self._thread = threading.Thread(target=self._loop, name="aca-resync", daemon=True)

    def start(self) -> Resyncer:
        self._thread.start()
        return self

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
                    self._cond.wait()
            if self._stopped.is_set():
                return
            retry(self._send_chunk, self._stopped, "resync_retry", backoff=backoff, retry_on=(DpmUnavailableError,), dpm=self.address)

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

