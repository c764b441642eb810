"""Apache Kafka in KRaft mode on loopback: one combined broker+controller, or a cluster of them.

Each node is a JVM started through broker.py's die-with-parent shim, with its storage
formatted on first start. With a data folder, ports and the cluster id are kept in
`gsmq-cluster.json` there, so a restart keeps the same address, topics and offsets.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog
from confluent_kafka.admin import AdminClient

from gsmq import broker as broker_module
from gsmq.broker import BrokerError, EmbeddedBroker, free_port, stop_process
from gsmq.kafka_dist import installed, java_binary
from gsmq.kafka_jars import KAFKA_VERSION
from gsmq.kafka_tls import BROKER_PRINCIPAL, TlsFiles, make_tls

STATE_FILE = "gsmq-cluster.json"
SECURITY = ("plaintext", "ssl", "sasl_ssl")
SCRAM = "SCRAM-SHA-512"
# SCRAM users of a sasl_ssl cluster: admin is a superuser; ACLs for dpm and agent come from gsmq.kafka_acl.
USERS = ("admin", "dpm", "agent")
# The parent folder of a broker's data when it has no --data-dir (a folder removed at stop);
# unset: the system's temporary folder.
ENV_TMP = "GSMQ_KAFKA_TMP"
# Heap per node: one node gets more; three share the machine's 2 cores with the tests.
HEAP_ONE = "512m"
HEAP_MANY = "256m"

_LOG4J = """\
Configuration:
  status: warn
  Appenders:
    Console:
      name: STDOUT
      target: SYSTEM_OUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: {level}
      AppenderRef:
        - ref: STDOUT
"""


def _log() -> structlog.typing.FilteringBoundLogger:
    return broker_module.stderr_logger("gsmq.kraft")


def random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding, never starting with "-"
    (as Kafka's Uuid.randomUuid: a leading dash reads as an option on kafka-storage's command line)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class Node:
    """One combined broker+controller: its id, ports, log folder, and process while it runs."""

    node_id: int
    port: int
    controller_port: int
    log_dir: Path
    internal_port: int = 0  # brokers between themselves, mutual TLS (secured clusters only)
    process: subprocess.Popen[bytes] | None = None
    wanted: bool = False  # started and neither killed nor stopped since

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class KafkaCluster(EmbeddedBroker):
    """Apache Kafka nodes on 127.0.0.1; `stop()` ends every node, `kill(i)` one with SIGKILL."""

    nodes: list[Node] = field(default_factory=list)
    cluster_id: str = ""
    root: Path = Path()
    extra_config: dict[str, str] = field(default_factory=dict)
    log_path: str | None = None
    owns_root: bool = False
    security: str = "plaintext"  # the client listener: plaintext, ssl or sasl_ssl
    users: dict[str, str] = field(default_factory=dict)  # SCRAM-SHA-512 user -> password (sasl_ssl)

    def __post_init__(self) -> None:
        nodes = f"{len(self.nodes)} node{'s' if len(self.nodes) > 1 else ''}"
        secured = "" if self.security == "plaintext" else f", {self.security.upper()}"
        self.name = f"Apache Kafka {KAFKA_VERSION} (KRaft, {nodes}{secured})"
        if self.security != "plaintext":
            self.properties = self.client_properties("dpm" if self.security == "sasl_ssl" else None)

    def tls(self) -> TlsFiles:
        return make_tls(self.root / "tls")

    def client_properties(self, user: str | None) -> dict[str, str]:
        """librdkafka properties of a client of the client listener, as `user` on sasl_ssl."""
        if self.security == "plaintext":
            return {}
        props = {"security.protocol": self.security.upper(), "ssl.ca.location": str(self.tls().ca)}
        if self.security == "sasl_ssl" and user is not None:
            props |= {"sasl.mechanism": SCRAM, "sasl.username": user, "sasl.password": self.users[user]}
        return props

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [n.process for n in self.nodes if n.process is not None]

    def node_config(self, node: Node) -> dict[str, str]:
        """server.properties of `node`: combined roles, static voters, settings for a fast small cluster."""
        many = len(self.nodes) > 1
        replicas = "3" if many else "1"
        config = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes),
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(node.log_dir),
            "num.partitions": "1",
            "default.replication.factor": replicas,
            "min.insync.replicas": "2" if many else "1",
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": "2" if many else "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": "2" if many else "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.cleaner.dedupe.buffer.size": str(8 << 20),
            # Every partition's segment has an offset and a time index, memory-mapped and created
            # at this size (Kafka's default: 10 MiB each). At the default, the first traffic on a
            # new topic stalled for up to half a second once the broker held a few topics; 1 MiB
            # still indexes ~500 MB of log per segment (the segment rolls when its index is full).
            "log.index.size.max.bytes": str(1 << 20),
            "unclean.leader.election.enable": "false",
        }
        if many:  # a killed node is fenced, and its partitions led elsewhere, within seconds
            config |= {"broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "500"}
        if self.security != "plaintext":
            config |= self._secured_config(node)
        config.update(self.extra_config)
        return config

    def _secured_config(self, node: Node) -> dict[str, str]:
        """TLS on every listener (mutual between brokers and to the controllers), SCRAM and ACLs on sasl_ssl."""
        tls = self.tls()
        client = self.security.upper()
        config = {
            "listeners": f"CLIENT://127.0.0.1:{node.port},INTERNAL://127.0.0.1:{node.internal_port},"
                         f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{node.port},INTERNAL://127.0.0.1:{node.internal_port}",
            "listener.security.protocol.map": f"CLIENT:{client},INTERNAL:SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "INTERNAL",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(tls.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca),
            "listener.name.internal.ssl.client.auth": "required",
            "listener.name.controller.ssl.client.auth": "required",
        }
        if self.security == "sasl_ssl":
            config |= {
                "sasl.enabled.mechanisms": SCRAM,
                "listener.name.client.scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users": f"{BROKER_PRINCIPAL};User:admin",
                "allow.everyone.if.no.acl.found": "false",
            }
        return config

    def _config_path(self, node: Node) -> Path:
        path = self.root / f"node-{node.node_id}.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.node_config(node).items()))
        return path

    def _java(self, node: Node, main: str, *args: str, tool: bool = False) -> list[str]:
        java = java_binary()
        libs = installed()
        if java is None or libs is None:
            raise BrokerError("Apache Kafka is not installed (run `make venv`)")
        heap = HEAP_MANY if len(self.nodes) > 1 else HEAP_ONE
        log4j = self.root / "log4j2.yaml"
        if not log4j.exists():
            log4j.write_text(_LOG4J.format(level=os.environ.get("GSMQ_KAFKA_LOG_LEVEL", "WARN")))
        # A short-lived tool starts fastest on the client compiler and the serial GC.
        server = [f"-Xmx{heap}", "-Xms64m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        vm = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"] if tool else server
        return [java, *vm, "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*", main, *args]

    def format_storage(self) -> None:
        """Format every node's log folder not formatted yet (in parallel: each is a JVM start)."""
        runs = []
        for node in self.nodes:
            if (node.log_dir / "meta.properties").exists():
                continue
            node.log_dir.mkdir(parents=True, exist_ok=True)
            cmd = self._java(node, "kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}",
                             "-c", str(self._config_path(node)), "--ignore-formatted", *self.format_args(), tool=True)
            runs.append((node, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)))
        for node, proc in runs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise BrokerError(f"kafka-storage format of node {node.node_id} failed: {out.decode(errors='replace').strip()[-400:]}")

    def format_args(self) -> list[str]:
        """Extra `kafka-storage format` arguments: the SCRAM users of a sasl_ssl cluster."""
        return [arg for user, password in self.users.items()
                for arg in ("--add-scram", f"{SCRAM}=[name={user},password={password}]")]

    def start_node(self, index: int) -> None:
        """Start node `index` (formatting its storage the first time); returns once it is spawned."""
        node = self.nodes[index]
        if node.running():
            return
        self.format_storage()
        config = self._config_path(node)
        out: int | IO[bytes] = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        node.wanted = True
        node.process = subprocess.Popen(
            [sys.executable, "-c", broker_module._DIE_WITH_PARENT, *self._java(node, "kafka.Kafka", str(config))],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not isinstance(out, int):
            out.close()
        _log().info("kafka_node_started", node=node.node_id, port=node.port, pid=node.process.pid)

    def wait_ready(self, timeout: float = 60.0, nodes: int | None = None) -> None:
        """Block until a metadata request lists `nodes` brokers (default: every running node)."""
        want = nodes if nodes is not None else sum(n.running() for n in self.nodes)
        bootstrap = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes if n.running())
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **self.admin_properties()})
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            dead = [n.node_id for n in self.nodes if n.wanted and not n.running()]
            if dead:
                raise BrokerError(f"Kafka node(s) {dead} exited at start; see {self.log_path or 'GSMQ_KAFKA_LOG'}")
            try:
                meta = admin.list_topics(timeout=1.0)
                if len(meta.brokers) >= want and meta.controller_id >= 0:
                    return
                last = f"{len(meta.brokers)} of {want} brokers"
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                last = exc
            time.sleep(0.1)
        raise BrokerError(f"Apache Kafka at {bootstrap} not ready within {timeout:.0f}s ({last})")

    def admin_properties(self) -> dict[str, str]:
        """librdkafka properties of a superuser client (empty on plaintext)."""
        return self.client_properties("admin")

    def kill(self, index: int) -> None:
        """SIGKILL node `index` (a crash: no controlled shutdown, nothing flushed)."""
        self.nodes[index].wanted = False
        proc = self.nodes[index].process
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # the shim exec'd java: same pid
            proc.wait(10)

    def stop_node(self, index: int, timeout: float = 20.0) -> None:
        """Stop node `index` with SIGTERM (controlled shutdown), SIGKILL after `timeout`."""
        self.nodes[index].wanted = False
        stop_process(self.nodes[index].process, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every node at once (a lone survivor would wait for its peers); SIGKILL what is left after `timeout`."""
        for node in self.nodes:
            node.wanted = False
            if node.running() and node.process is not None:
                node.process.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def save(self) -> None:
        state = {"version": KAFKA_VERSION, "cluster_id": self.cluster_id, "security": self.security, "users": self.users,
                 "nodes": [{"node_id": n.node_id, "port": n.port, "controller_port": n.controller_port,
                            "internal_port": n.internal_port} for n in self.nodes]}
        (self.root / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")


def plan(nodes: int = 1, port: int | None = None, data_dir: str | Path | None = None, security: str = "plaintext",
         **kwargs: Any) -> KafkaCluster:
    """A cluster laid out in `data_dir` (ports, id and users from its state file when there), not started."""
    if security not in SECURITY:
        raise BrokerError(f"security must be one of {', '.join(SECURITY)}, got {security!r}")
    owns = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="gsmq-kafka-", dir=_tmp_parent())) if data_dir is None else Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if len(state["nodes"]) != nodes or state.get("security", "plaintext") != security:
            raise BrokerError(f"{root} holds a {len(state['nodes'])}-node {state.get('security', 'plaintext')} cluster, "
                              f"not {nodes}-node {security}")
        cluster_id = str(state["cluster_id"])
        users = {str(k): str(v) for k, v in state.get("users", {}).items()}
        layout = [Node(int(n["node_id"]), int(n["port"]), int(n["controller_port"]), root / f"node-{n['node_id']}",
                       int(n.get("internal_port", 0))) for n in state["nodes"]]
        if port is not None:
            layout[0].port = port
    else:
        cluster_id = random_cluster_id()
        users = {u: secrets.token_hex(16) for u in USERS} if security == "sasl_ssl" else {}
        ports = [port or free_port()] + [free_port() for _ in range(nodes - 1)]
        layout = [Node(i + 1, ports[i], free_port(), root / f"node-{i + 1}", free_port() if security != "plaintext" else 0)
                  for i in range(nodes)]
    cluster = KafkaCluster(bootstrap=",".join(f"127.0.0.1:{n.port}" for n in layout), cluster_id=cluster_id, root=root,
                           nodes=layout, owns_root=owns, security=security, users=users, **kwargs)
    cluster.save()
    return cluster


def _tmp_parent() -> Path | None:
    """$GSMQ_KAFKA_TMP as an absolute folder (made if missing), or None when unset."""
    given = os.environ.get(ENV_TMP)
    if not given:
        return None
    parent = Path(given).resolve()
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def start_kafka(nodes: int = 1, port: int | None = None, data_dir: str | Path | None = None,
                log_path: str | None = None, timeout: float = 90.0, security: str = "plaintext") -> KafkaCluster:
    """Start Apache Kafka (`nodes` combined nodes) and return once every node answers metadata requests."""
    cluster = plan(nodes, port, data_dir, security, log_path=log_path or os.environ.get("GSMQ_KAFKA_LOG"))
    started = time.monotonic()
    try:
        for index in range(nodes):
            cluster.start_node(index)
        cluster.wait_ready(timeout, nodes)
    except BaseException:
        cluster.stop()
        raise
    _log().info("kafka_ready", bootstrap=cluster.bootstrap, nodes=nodes, security=security,
                seconds=round(time.monotonic() - started, 2))
    return cluster
