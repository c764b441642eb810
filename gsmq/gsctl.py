"""gsctl: look at goal states.

  decode   binary protobuf message -> canonical JSON (proto field names, sorted keys)
  encode   that JSON -> the binary message (deterministic serialization)
  types    the message types decode/encode know
  broker   run the embedded Kafka broker in the foreground
  topics   list a cluster's topics and partition counts
  tail     print a topic's messages decoded, with key, partition, offset and headers
  status   ask a DPM or an agent for its status (and a host's state) as JSON

Bad input (bytes that are not the message, JSON with unknown fields or wrong types,
an unknown type, a missing file, an unreachable broker) gives one line on stderr and
exit code 2; a status service that does not answer, one line and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any, NoReturn

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

import alcor.schema
import gsmq.v1
from gsmq.kafka import ENV_BOOTSTRAP, KafkaSettings, env_properties, parse_properties

DESCRIPTION = """Look at goal states: decode and encode the protobuf messages of alcor.schema and
gsmq.v1, run the embedded Kafka broker, list topics, tail a topic decoded, ask a DPM or
an agent for its status.

Bad input (bytes that are not the message, JSON with unknown fields or wrong types, an
unknown type, a missing file, an unreachable broker) gives one line on stderr and exit
code 2; a status service that does not answer, one line and exit code 1."""

EXAMPLES = """examples:
  gsctl decode --type GoalStateV2 ../shared/vectors/goalstatev2_small.bin
  gsctl decode --type GoalStateV2 msg.bin | gsctl encode --type GoalStateV2 > again.bin
  gsctl broker                       # prints 127.0.0.1:PORT; Ctrl-C stops it
  gsctl broker --port 9092 --data-dir /var/tmp/gsmq-kafka   # same address and data after a restart
  gsctl broker --brokers 3           # prints 127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
  gsctl tail --bootstrap 127.0.0.1:PORT --topic gs.unicast --count 10
  gsctl tail --bootstrap 127.0.0.1:PORT --topic gs.unicast --key 192.168.0.11 --from end --follow
  gsctl status --dpm 127.0.0.1:50051 --host 192.168.0.11      # counters and the host's desired state
  gsctl status --agent 127.0.0.1:50061 --host 192.168.0.11    # counters and what its data plane holds
"""


class UsageError(Exception):
    """Bad input: the message is the one line the user sees."""


class OutputError(Exception):
    """Standard output could not be written (other than a closed pipe)."""


class NoAnswerError(Exception):
    """A service that did not answer (a runtime failure, not bad input): one line, exit code 1."""


def _write(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc)) from exc


# ---------------------------------------------------------------- message types


def _descriptors(descriptor: Descriptor) -> Iterator[Descriptor]:
    """A message descriptor and, recursively, its nested messages (not map entries)."""
    if descriptor.GetOptions().map_entry:
        return
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _descriptors(nested)


@cache
def message_types() -> dict[str, type[Message]]:
    """Every message of the generated packages alcor.schema and gsmq.v1, by lower-case name.

    A top-level message is known by its simple name ("goalstatev2") and full name
    ("alcor.schema.goalstatev2"); a nested one by its name inside the package
    ("subnetconfiguration.gateway") and full name, since simple names collide.
    """
    out: dict[str, type[Message]] = {}
    modules = [f"{pkg.__name__}.{info.name}" for pkg in (alcor.schema, gsmq.v1)
               for info in pkgutil.iter_modules(pkg.__path__) if info.name.endswith("_pb2")]
    for name in modules:
        module = importlib.import_module(name)
        for top in module.DESCRIPTOR.message_types_by_name.values():
            for descriptor in _descriptors(top):
                cls = message_factory.GetMessageClass(descriptor)
                package = descriptor.file.package
                out[descriptor.full_name.lower()] = cls
                out[descriptor.full_name[len(package) + 1 :].lower()] = cls
    return out


def type_names() -> list[str]:
    """Full names of the known message types, sorted."""
    return sorted({cls.DESCRIPTOR.full_name for cls in message_types().values()})


def resolve(type_name: str) -> type[Message]:
    """The message class named `type_name` (case-insensitive, short or full name)."""
    cls = message_types().get(type_name.strip().lower())
    if cls is None:
        tops = sorted({c.DESCRIPTOR.name for c in message_types().values() if c.DESCRIPTOR.containing_type is None})
        raise UsageError(f"unknown type {type_name!r} (known: {', '.join(tops)}; 'gsctl types' lists all)")
    return cls


# ---------------------------------------------------------------- decode / encode


def unknown_fields_at(msg: Message, path: str = "") -> str | None:
    """Where in `msg` the first field unknown to the schema sits ('' = top level), None if nowhere."""
    unknown = UnknownFieldSet(msg)  # indexable; its stub declares no __iter__
    numbers = sorted({unknown[i].field_number for i in range(len(unknown))})
    if numbers:
        return f"{path or msg.DESCRIPTOR.name}: field number {', '.join(map(str, numbers))}"
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        here = f"{path or msg.DESCRIPTOR.name}.{fd.name}"
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is None:
                continue
            items: Iterator[tuple[str, Message]] = ((f"{here}[{k!r}]", v) for k, v in value.items())
        elif fd.is_repeated:
            items = ((f"{here}[{i}]", v) for i, v in enumerate(value))
        else:
            items = iter([(here, value)])
        for where, child in items:
            found = unknown_fields_at(child, where)
            if found is not None:
                return found
    return None


def parse_binary(data: bytes, cls: type[Message], source: str, allow_unknown: bool = False) -> Message:
    """`data` parsed as `cls`; corrupt wire format, bad UTF-8 and (unless allowed) fields the
    schema does not have are errors, so random bytes are not taken for a message."""
    msg = cls()
    what = f"{source}: not a valid {cls.DESCRIPTOR.full_name}"
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RecursionError) as exc:
        reason = str(exc).split(": ", 1)[-1] if "Error parsing message" in str(exc) else str(exc)
        raise UsageError(f"{what} ({reason})") from exc
    if not allow_unknown:
        stripped = cls()
        stripped.CopyFrom(msg)
        stripped.DiscardUnknownFields()
        if stripped.ByteSize() != msg.ByteSize():
            raise UsageError(f"{what} (fields unknown to the schema at {unknown_fields_at(msg)})")
    return msg


def decode(data: bytes, cls: type[Message], source: str, allow_unknown: bool = False) -> dict[str, Any]:
    """The canonical JSON mapping (proto field names) of `data` parsed as `cls`."""
    msg = parse_binary(data, cls, source, allow_unknown)
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def to_json(document: dict[str, Any]) -> str:
    """The text `gsctl decode` prints: sorted keys, one-space indent, UTF-8."""
    return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def encode(text: bytes, cls: type[Message], source: str) -> bytes:
    """The deterministic serialization of the JSON mapping `text`; unknown fields, wrong
    types, out-of-range numbers, unknown enum names and duplicate keys are errors."""
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UsageError(f"{source}: not JSON ({exc})") from exc
    what = f"{source}: not a valid {cls.DESCRIPTOR.full_name}"
    if not isinstance(document, dict):
        raise UsageError(f"{what} (expected a JSON object, got {type(document).__name__})")
    msg = cls()
    try:
        json_format.ParseDict(document, msg)
    except (json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise UsageError(f"{what} ({exc})") from exc
    return msg.SerializeToString(deterministic=True)


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from exc


def _label(path: str) -> str:
    return "<stdin>" if path == "-" else path


# ---------------------------------------------------------------- broker, topics, tail


def _broker(args: argparse.Namespace) -> int:
    from gsmq.broker import BrokerError, start_broker

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        broker = start_broker(port=args.port, data_dir=args.data_dir, brokers=args.brokers, security=args.security,
                              topic_prefix=args.topic_prefix, log_path=args.log)
    except (BrokerError, OSError, RuntimeError) as exc:
        raise UsageError(f"embedded broker: {exc}") from exc
    try:
        print(broker.bootstrap, flush=True)
        for key, value in broker.properties.items():  # what a librdkafka client needs besides the address
            print(f"{key}={value}", flush=True)
        agent = getattr(broker, "users", {}).get("agent")
        if agent is not None:  # the agents' principal, as a comment: the lines above are the DPM's
            print(f"# agent: sasl.username=agent sasl.password={agent}", flush=True)
        while not done.wait(0.5):
            for proc in broker.processes:
                if proc.poll() is not None:
                    raise UsageError(f"the embedded broker exited (code {proc.returncode})")
    finally:
        broker.stop()
    return 0


def _settings(args: argparse.Namespace) -> KafkaSettings:
    bootstrap = args.bootstrap or os.environ.get(ENV_BOOTSTRAP)
    if not bootstrap:
        raise UsageError(f"no broker: pass --bootstrap or set {ENV_BOOTSTRAP}")
    try:
        props = {**env_properties(), **parse_properties(args.kafka_property)}
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return KafkaSettings(bootstrap, props)


def _admin(settings: KafkaSettings) -> Any:
    from confluent_kafka.admin import AdminClient

    try:
        return AdminClient({**settings.admin(), "log_level": 0})
    except Exception as exc:  # librdkafka rejects bad properties here
        raise UsageError(f"kafka client: {exc}") from exc


def _kafka_reason(exc: Exception) -> str:
    error = exc.args[0] if exc.args else None
    reason = getattr(error, "str", None)  # a KafkaError's text
    return str(reason()) if callable(reason) else str(exc)


def _topics(settings: KafkaSettings, timeout: float) -> int:
    from confluent_kafka import KafkaException

    try:
        meta = _admin(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise UsageError(f"no answer from {settings.bootstrap} ({_kafka_reason(exc)})") from exc
    for name in sorted(meta.topics):
        print(f"{name}\t{len(meta.topics[name].partitions)}", flush=True)
    return 0


FROM_HELP = ("where to start in each partition read: beginning (default), end (only records produced from now on), "
             "an offset (clamped to what the partition holds), or -N: the last N records of each partition, with --key "
             "the key's last N (write --from=-N)")


def start_position(text: str) -> str | int:
    """`--from`: 'beginning', 'end', an offset, or -N (the last N records)."""
    word = text.strip().lower()
    if word in ("beginning", "end"):
        return word
    try:
        return int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(f"beginning, end, an offset or -N, not {text!r}") from None


def _offset(start: str | int, low: int, high: int) -> int:
    """The first offset to read of a partition holding [low, high) for `--from start`."""
    if start == "end":
        return high
    if isinstance(start, int) and start < 0:
        return max(low, high + start)
    return min(max(int(start), low), high)


def _tail(settings: KafkaSettings, args: argparse.Namespace) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    from gsmq.partition import partition_for

    topic, timeout, key = args.topic, args.timeout, args.key
    done = threading.Event()  # SIGINT (Ctrl-C) or SIGTERM: stop reading, exit 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:  # every topic's metadata: asking for one by name makes some brokers (Tansu) create it
        meta = _admin(settings).list_topics(timeout=timeout).topics.get(topic)
    except KafkaException as exc:
        raise UsageError(f"no answer from {settings.bootstrap} ({_kafka_reason(exc)})") from exc
    if meta is None or meta.error is not None or not meta.partitions:
        raise UsageError(f"no topic {topic!r} at {settings.bootstrap}")
    parts = len(meta.partitions)
    # A key is on one partition: the one Kafka's default partitioner (murmur2) puts it on,
    # where the DPM writes it and the key's agent reads it.
    partitions = [partition_for(key, parts)] if key else list(range(parts))
    consumer = Consumer({**settings.consumer("gsctl-tail"), "log_level": 0, "enable.partition.eof": True})
    last: tuple[int, int] | None = None  # --key with --from=-N: (N, the partition's end when we started)
    try:
        if args.start == "beginning":
            assignment = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
            where = "from the beginning"
        else:  # positions taken before anything is read, so `end` means "produced from now on"
            assignment = []
            for p in partitions:
                try:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                except KafkaException as exc:
                    raise UsageError(f"no answer from {settings.bootstrap} ({_kafka_reason(exc)})") from exc
                if key and isinstance(args.start, int) and args.start < 0:  # the key's last N: among all of its partition
                    last = (-args.start, high)
                    assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
                else:
                    assignment.append(TopicPartition(topic, p, _offset(args.start, low, high)))
            offsets = ", ".join(str(tp.offset) for tp in assignment)
            where = (f"from the last {last[0]} record{'s' * (last[0] > 1)} of {key}" if last
                     else f"from offset{'s' * (len(assignment) > 1)} {offsets}")
        consumer.assign(assignment)
        if args.follow:  # on stderr: the lines on stdout stay records, and a reader knows when it may produce
            what = f"partition {partitions[0]}" if len(partitions) == 1 else f"{len(partitions)} partitions"
            print(f"gsctl: following {topic} {what} {where} (Ctrl-C stops)", file=sys.stderr, flush=True)
        _print_records(consumer, key.encode() if key else None, args, done, last)
    finally:
        consumer.close()
    return 0


def _print_records(consumer: Any, key: bytes | None, args: argparse.Namespace, done: threading.Event,
                   last: tuple[int, int] | None) -> None:
    """One JSON line per record (of `key` only, when given) until --count lines, SIGINT or
    SIGTERM, or (without --follow) --idle seconds in which no record came. `last` = (N,
    end): the partition is read from its beginning and, of the records before offset
    `end`, the key's last N are printed once the end is reached (Kafka reads forward only)."""
    from confluent_kafka import KafkaError

    from gsmq import wire
    from gsmq.topics import Topics

    held: deque[Any] | None = deque(maxlen=last[0]) if last else None
    end = last[1] if last else 0
    seen, quiet, step = 0, 0.0, 0.2

    def more() -> bool:
        return not done.is_set() and (args.count is None or seen < args.count)

    def emit(msg: Any) -> None:
        nonlocal seen
        hdrs = wire.decode_headers(msg.headers())
        kind = wire.message_type(hdrs, reply=Topics.is_reply(hdrs.get(wire.SOURCE_TOPIC) or args.topic))  # a dead letter: its source's
        body: Any = None
        cls = message_types().get(kind.lower())
        if cls is not None:
            try:
                body = decode(msg.value() or b"", cls, f"offset {msg.offset()}", allow_unknown=True)
            except UsageError as exc:
                body = {"error": str(exc)}
        line = {"key": (msg.key() or b"").decode(errors="replace"), "partition": msg.partition(),
                "offset": msg.offset(), "headers": hdrs, "type": kind, "bytes": len(msg.value() or b""),
                "message": body}
        _write((json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n").encode())
        seen += 1

    def release() -> None:
        nonlocal held
        for msg in held or ():
            if more():
                emit(msg)
        held = None

    while more() and (args.follow or quiet < args.idle):
        msg = consumer.poll(step)
        error = None if msg is None else msg.error()
        if msg is None or error is not None:
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                release()  # the end of the partition: whatever is held is the key's last N
            else:
                quiet += step
            continue
        quiet = 0.0
        if key is not None and msg.key() != key:
            continue
        if held is not None:
            if msg.offset() < end:
                held.append(msg)
                continue
            release()
            if not more():
                break
        emit(msg)


# ---------------------------------------------------------------- status services


def _status(args: argparse.Namespace) -> int:
    """`gsctl status --dpm ADDR | --agent ADDR [--host HOST ...]`: one JSON object, `status`
    (DpmStatus or AgentStatus) and, per --host, `host_snapshots` (the DPM's desired state
    of the host) or `host_states` (what the agent's data plane holds), each value the
    canonical JSON of `gsctl decode`."""
    import grpc

    from gsmq.v1 import status_pb2, status_pb2_grpc

    dpm = args.dpm is not None
    address = args.dpm if dpm else args.agent
    service = "gsmq.v1.DpmStatusService" if dpm else "gsmq.v1.AgentStatusService"
    with grpc.insecure_channel(address) as channel:
        stub: Any = status_pb2_grpc.DpmStatusServiceStub(channel) if dpm else status_pb2_grpc.AgentStatusServiceStub(channel)
        host_call = stub.GetHostSnapshot if dpm else stub.GetHostState
        try:
            status = stub.GetStatus(status_pb2.StatusRequest(), timeout=args.timeout)
            hosts = {host: host_call(status_pb2.HostId(host_id=host), timeout=args.timeout) for host in args.host or []}
        except grpc.RpcError as exc:  # raised by a call, it is also a grpc.Call (code, details)
            call: Any = exc
            code, details = call.code(), call.details()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                other = "an agent's --status-port" if dpm else "a DPM's gRPC address"
                raise NoAnswerError(f"{address} does not serve {service} (is it {other}?)") from exc
            raise NoAnswerError(f"no answer from {address} ({getattr(code, 'name', 'error')}: {details})") from exc
    document: dict[str, Any] = {"status": json_format.MessageToDict(status, preserving_proto_field_name=True)}
    if hosts:
        document["host_snapshots" if dpm else "host_states"] = {
            host: json_format.MessageToDict(state, preserving_proto_field_name=True) for host, state in hosts.items()}
    _write(to_json(document).encode())
    return 0


# ---------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too (subcommand parsers share the class)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see '{self.prog} --help')")


class _Version(argparse.Action):
    """`--version`: the line of `gsmq.version.version_line`, as the daemons print it; computed
    only when asked, so that gsctl starts without importing the Kafka client."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS,
                 help: str = "show program's version number and exit") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from gsmq.version import version_line

        _write(f"{version_line('gsctl')}\n".encode())
        parser.exit(0)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gsctl", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    type_help = ("message type, case-insensitive, short or full name: GoalStateV2, GoalState, "
                 "GoalStateOperationReply, HostRequest, HostRequestReply, NodeSubscribeInfo, ... ('gsctl types')")
    dec = sub.add_parser("decode", help="print a binary message as canonical JSON (proto field names, sorted keys)",
                         description="Parse FILE as a binary TYPE and print its protobuf JSON mapping with proto field "
                         "names and sorted keys (defaults omitted, enums by name, 64-bit integers as strings).")
    dec.add_argument("--type", required=True, metavar="TYPE", help=type_help)
    dec.add_argument("--allow-unknown", action="store_true",
                     help="accept fields the schema does not have (they are left out of the JSON)")
    dec.add_argument("file", nargs="?", default="-", metavar="FILE", help="input file, or - for standard input (default)")
    enc = sub.add_parser("encode", help="turn that JSON back into the binary message (on stdout)",
                         description="Parse FILE as the JSON mapping of TYPE (proto or JSON field names) and write the "
                         "deterministic binary serialization to stdout.")
    enc.add_argument("--type", required=True, metavar="TYPE", help=type_help)
    enc.add_argument("file", nargs="?", default="-", metavar="FILE", help="input file, or - for standard input (default)")
    sub.add_parser("types", help="list the message types decode and encode know", description="List the message types.")
    brk = sub.add_parser("broker", help="run the embedded Kafka broker (Apache Kafka, KRaft) in the foreground",
                         description="Start the embedded broker on free 127.0.0.1 ports, print its bootstrap address "
                         "on stdout, and run until SIGINT or SIGTERM (exit 0). Without --data-dir its log folder is "
                         "temporary and removed on exit; with it, a restart keeps the address, topics and offsets.")
    brk.add_argument("--port", type=int, metavar="PORT", help="client port of the first broker (default: a free one, "
                     "or the one kept in --data-dir)")
    brk.add_argument("--data-dir", metavar="DIR", help="keep the brokers' logs, ports and cluster id in DIR")
    brk.add_argument("--brokers", type=int, default=1, choices=(1, 3), help="1 (default) or 3 brokers; with 3, "
                     "topics get replication factor 3 and min.insync.replicas=2")
    brk.add_argument("--security", choices=("plaintext", "ssl", "sasl_ssl"), default="plaintext",
                     help="the client listener: plaintext (default); ssl (a generated CA and broker certificate); "
                     "sasl_ssl (also SCRAM-SHA-512 users admin, dpm, agent and ACLs). After the address, one key=value "
                     "line per librdkafka property a client needs (the DPM's), then '# agent: ...' with the agent's")
    brk.add_argument("--topic-prefix", default="gs", help="sasl_ssl: the topic prefix the ACLs cover (default: gs)")
    brk.add_argument("--log", metavar="FILE", help="append the broker's own output to FILE (default: discarded)")
    for name, what in (("topics", "list topics and their partition counts (tab-separated)"),
                       ("tail", "print a topic's messages decoded, one JSON line each")):
        cmd = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        cmd.add_argument("--bootstrap", help=f"Kafka bootstrap servers host:port[,...] [env: {ENV_BOOTSTRAP}]")
        cmd.add_argument("-X", dest="kafka_property", action="append", metavar="KEY=VALUE",
                         help="librdkafka property (repeatable); also KAFKA_PROP_<NAME> variables")
        cmd.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for metadata (default: 10)")
        if name == "tail":
            cmd.add_argument("--topic", required=True, help="e.g. gs.unicast, gs.multicast, gs.reply, gs.deadletter")
            cmd.add_argument("--from", dest="start", type=start_position, default="beginning", metavar="WHERE",
                             help=FROM_HELP)
            cmd.add_argument("--key", help="only the records with this key (a host id on gs.unicast and gs.reply, a VPC "
                             "id on gs.multicast), read from the one partition Kafka's default partitioner (murmur2) "
                             "puts the key on, where the DPM writes it and its agent reads it")
            cmd.add_argument("--follow", action="store_true",
                             help="keep reading new records until SIGINT (Ctrl-C) or SIGTERM (exit 0) or --count")
            cmd.add_argument("--count", type=int, help="stop after this many messages")
            cmd.add_argument("--idle", type=float, default=2.0,
                             help="without --follow: stop after this many seconds without a message (default: 2)")
    st = sub.add_parser("status", help="print a DPM's or an agent's status (and a host's state) as JSON",
                        description="Ask a DPM (gsmq.v1.DpmStatusService on its gRPC address) or an agent "
                        "(gsmq.v1.AgentStatusService on its --status-port) for its counters and print one JSON object: "
                        "'status', plus with --host 'host_snapshots' (the DPM's desired state of each host) or "
                        "'host_states' (what the agent's data plane holds), each in the canonical JSON of 'gsctl decode'. "
                        "An address that does not answer: one line, exit code 1.")
    which = st.add_mutually_exclusive_group(required=True)
    which.add_argument("--dpm", metavar="ADDR", help="the DPM's gRPC address host:port (dpm-server --grpc-address)")
    which.add_argument("--agent", metavar="ADDR", help="an agent's status address host:port (aca-agent --status-port)")
    st.add_argument("--host", action="append", metavar="HOST", help="also this host's snapshot (DPM) or state (agent); "
                    "repeatable")
    st.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each answer (default: 5)")
    return p


def fail(text: str) -> NoReturn:
    """One line on stderr, exit code 2."""
    print(f"gsctl: error: {' '.join(text.split())}", file=sys.stderr, flush=True)
    sys.exit(2)


def _run(args: argparse.Namespace) -> int:
    if args.command == "decode":
        cls = resolve(args.type)
        document = decode(read_input(args.file), cls, _label(args.file), args.allow_unknown)
        _write(to_json(document).encode())
    elif args.command == "encode":
        cls = resolve(args.type)
        _write(encode(read_input(args.file), cls, _label(args.file)))
    elif args.command == "types":
        _write("".join(f"{name}\n" for name in type_names()).encode())
    elif args.command == "broker":
        return _broker(args)
    elif args.command == "topics":
        return _topics(_settings(args), args.timeout)
    elif args.command == "status":
        return _status(args)
    else:
        return _tail(_settings(args), args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        fail(str(exc))
    except NoAnswerError as exc:
        print(f"gsctl: error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 1
    except BrokenPipeError:  # e.g. `gsctl decode ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OutputError as exc:  # disk full, ...: not bad input, but still one line
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"gsctl: error: writing the output: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
