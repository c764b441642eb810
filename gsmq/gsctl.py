"""`gsctl`: look at goal states. decode / encode protobuf messages, run the embedded
broker, tail a topic. Bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from proto import common_pb2  # noqa: F401 - registers the files below in the pool
from proto import goalstate_pb2, goalstateprovisioner_pb2, gsmq_pb2, subscribeinfoprovisioner_pb2

_MODULES = (goalstate_pb2, goalstateprovisioner_pb2, subscribeinfoprovisioner_pb2, gsmq_pb2)


class UsageError(Exception):
    """Bad input: the message is the one line the user sees."""


def message_types() -> dict[str, type[Message]]:
    """Every top-level message of alcor.schema and gsmq.v1, by simple and full name (lower case)."""
    out: dict[str, type[Message]] = {}
    for module in _MODULES:
        for name, descriptor in module.DESCRIPTOR.message_types_by_name.items():
            cls = getattr(module, name)
            out[name.lower()] = cls
            out[descriptor.full_name.lower()] = cls
    return out


def resolve(type_name: str) -> type[Message]:
    cls = message_types().get(type_name.lower())
    if cls is None:
        names = sorted({c.DESCRIPTOR.name for c in message_types().values()})
        raise UsageError(f"unknown type {type_name!r} (known: {', '.join(names)})")
    return cls


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from exc


def decode(data: bytes, cls: type[Message], source: str) -> dict[str, Any]:
    """The canonical JSON mapping (proto field names) of `data` parsed as `cls`."""
    msg = cls()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise UsageError(f"{source}: not a valid {cls.DESCRIPTOR.full_name} ({exc})") from exc
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def encode(text: bytes, cls: type[Message], source: str) -> bytes:
    """The serialized message of its JSON mapping; unknown fields and wrong types are errors."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: not JSON ({exc})") from exc
    msg = cls()
    try:
        json_format.ParseDict(document, msg)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise UsageError(f"{source}: not a valid {cls.DESCRIPTOR.full_name} ({exc})".replace("\n", " ")) from exc
    return msg.SerializeToString()


def _broker() -> int:
    from gsmq.broker import BrokerError, start_embedded

    try:
        broker = start_embedded()
    except BrokerError as exc:
        raise UsageError(str(exc)) from exc
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(broker.bootstrap, flush=True)
    try:
        while not done.wait(0.5):
            if broker.process.poll() is not None:
                raise UsageError(f"the broker exited (code {broker.process.returncode})")
    finally:
        broker.stop()
    return 0


def _tail(bootstrap: str, topic: str, count: int | None, idle: float) -> int:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    from gsmq import headers as h
    from gsmq.kafka import KafkaSettings
    from gsmq.topics import partition_count

    settings = KafkaSettings(bootstrap)
    parts = partition_count(AdminClient(settings.admin()), topic)
    if parts == 0:
        raise UsageError(f"no topic {topic!r} at {bootstrap}")
    consumer = Consumer(settings.consumer("gsctl-tail"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(parts)])
    seen, quiet = 0, 0.0
    try:
        while (count is None or seen < count) and quiet < idle:
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                quiet += 0.2
                continue
            quiet = 0.0
            hdrs = {k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])}
            kind = hdrs.get(h.MSG_TYPE, "GoalStateV2")
            body: Any = None
            if kind in ("GoalStateV2", "GoalStateOperationReply"):
                try:
                    body = decode(msg.value() or b"", resolve(kind), f"offset {msg.offset()}")
                except UsageError as exc:
                    body = {"error": str(exc)}
            line = {"key": (msg.key() or b"").decode(errors="replace"), "partition": msg.partition(),
                    "offset": msg.offset(), "headers": hdrs, "type": kind, "message": body}
            print(json.dumps(line, sort_keys=True), flush=True)
            seen += 1
    finally:
        consumer.close()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gsctl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, what in (("decode", "print a binary message as canonical JSON (proto field names, sorted keys)"),
                       ("encode", "turn that JSON back into the binary message (on stdout)")):
        cmd = sub.add_parser(name, help=what, description=what)
        cmd.add_argument("--type", required=True, help="message type: GoalStateV2, GoalState, GoalStateOperationReply, HostRequest, ...")
        cmd.add_argument("file", nargs="?", default="-", help="input file, or - for standard input (default)")
    sub.add_parser("broker", help="run the embedded Kafka broker in the foreground; prints its bootstrap address")
    tail = sub.add_parser("tail", help="print a topic's messages decoded, one JSON line each")
    tail.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    tail.add_argument("--topic", required=True, help="e.g. gs.unicast, gs.multicast, gs.reply")
    tail.add_argument("--count", type=int, help="stop after this many messages")
    tail.add_argument("--idle", type=float, default=2.0, help="stop after this many seconds without a message")
    return p


def fail(text: str) -> NoReturn:
    print(f"gsctl: error: {text}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "decode":
            cls = resolve(args.type)
            document = decode(read_input(args.file), cls, args.file)
            print(json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False))
        elif args.command == "encode":
            cls = resolve(args.type)
            sys.stdout.buffer.write(encode(read_input(args.file), cls, args.file))
            sys.stdout.buffer.flush()
        elif args.command == "broker":
            return _broker()
        else:
            return _tail(args.bootstrap, args.topic, args.count, args.idle)
    except UsageError as exc:
        fail(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
