"""The schema against the wire contract: vectors encoded by another implementation, and
every message, field number, type, enum value and rpc listed in ../shared/wire-contract.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import subscribeinfoprovisioner_pb2 as sip

VECTOR_TYPES = {"goalstatev2_small": gs.GoalStateV2, "goalstatev2_gateway": gs.GoalStateV2,
                "reply_small": gsp.GoalStateOperationReply}


@pytest.mark.parametrize("name", sorted(VECTOR_TYPES))
def test_vector_decodes_to_exactly_its_json(vectors_dir: Path, name: str) -> None:
    msg = VECTOR_TYPES[name]()
    msg.ParseFromString((vectors_dir / f"{name}.bin").read_bytes())
    assert json_format.MessageToDict(msg, preserving_proto_field_name=True) == json.loads((vectors_dir / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(VECTOR_TYPES))
def test_vector_json_encodes_to_its_bytes(vectors_dir: Path, name: str) -> None:
    """The other direction: the JSON parsed by our schema serializes (deterministically) to
    exactly the other implementation's bytes, with nothing left in unknown fields."""
    msg = json_format.ParseDict(json.loads((vectors_dir / f"{name}.json").read_text()), VECTOR_TYPES[name]())
    assert msg.SerializeToString(deterministic=True) == (vectors_dir / f"{name}.bin").read_bytes()


def test_every_vector_is_covered(vectors_dir: Path) -> None:
    assert {p.stem for p in vectors_dir.glob("*.bin")} == set(VECTOR_TYPES)


def test_vectors_exercise_what_they_claim(vectors_dir: Path) -> None:
    gateway = gs.GoalStateV2.FromString((vectors_dir / "goalstatev2_gateway.bin").read_bytes())
    assert any(g.configuration.WhichOneof("extra_info") == "arion_info" for g in gateway.gateway_states.values())
    assert len(gateway.host_resources) == 3
    reply = gsp.GoalStateOperationReply.FromString((vectors_dir / "reply_small.bin").read_bytes())
    assert {s.operation_status for s in reply.operation_statuses} == set(common.OperationStatus.values())


# ---------------------------------------------------------------- the contract, line by line

SCALAR_TYPES = {"uint32": FieldDescriptor.TYPE_UINT32, "uint64": FieldDescriptor.TYPE_UINT64,
                "string": FieldDescriptor.TYPE_STRING, "bool": FieldDescriptor.TYPE_BOOL}
FIELD = re.compile(r"^(\d+) `(\w+)` (repeated )?(map<(\w+), ([\w.]+)>|[\w.]+)( \(oneof (\w+)\))?$")
ITEM = re.compile(r"^\s*- (message|enum|rpc) `([\w.]+)`(.*)$")


def contract(vectors_dir: Path) -> list[tuple[str, str, str]]:
    """(kind, name, rest) for every message, enum and rpc line of the wire contract."""
    text = (vectors_dir.parent / "wire-contract.md").read_text()
    return [(m[1], m[2], m[3]) for line in text.splitlines() if (m := ITEM.match(line))]


POOL = gs.DESCRIPTOR.pool  # goalstate.proto imports every alcor.schema file


def find_message(name: str) -> Descriptor:
    return POOL.FindMessageTypeByName(f"alcor.schema.{name}")


def find_enum(name: str) -> EnumDescriptor:
    return POOL.FindEnumTypeByName(f"alcor.schema.{name}")


def check_type(field: FieldDescriptor, type_name: str) -> None:
    if type_name in SCALAR_TYPES:
        assert field.type == SCALAR_TYPES[type_name], f"{field.full_name}: not {type_name}"
    elif field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None, f"{field.full_name}: no enum type"
        assert field.enum_type.full_name == f"alcor.schema.{type_name}", f"{field.full_name}: not {type_name}"
    else:
        assert field.type == FieldDescriptor.TYPE_MESSAGE, f"{field.full_name}: not {type_name}"
        assert field.message_type is not None, f"{field.full_name}: no message type"
        assert field.message_type.full_name == f"alcor.schema.{type_name}", f"{field.full_name}: not {type_name}"


def test_contract_parses(vectors_dir: Path) -> None:
    kinds = [kind for kind, _, _ in contract(vectors_dir)]
    assert kinds.count("message") >= 40 and kinds.count("enum") >= 12 and kinds.count("rpc") == 5


def test_every_message_of_the_contract(vectors_dir: Path) -> None:
    checked = 0
    for kind, name, rest in contract(vectors_dir):
        if kind != "message":
            continue
        descriptor = find_message(name)
        assert descriptor.file.package == "alcor.schema"
        listed = [spec.strip() for spec in rest.lstrip(":").split(";") if spec.strip()]
        names: dict[int, str] = {}  # the contract's fields by number
        for spec in listed:
            m = FIELD.match(spec)
            assert m, f"{name}: cannot read {spec!r}"
            number, field_name, repeated, type_name, key, value, _, oneof = m.groups()
            names[int(number)] = field_name
            field = descriptor.fields_by_number.get(int(number))
            assert field is not None, f"{name}: no field {number}"
            assert field.name == field_name, f"{name}.{number}: {field.name} != {field_name}"
            if key:
                entry = field.message_type
                assert entry is not None and entry.GetOptions().map_entry, f"{field.full_name}: not a map"
                check_type(entry.fields_by_name["key"], key)
                check_type(entry.fields_by_name["value"], value)
            else:
                assert field.is_repeated == bool(repeated), f"{field.full_name}: repeated?"
                check_type(field, type_name)
            assert (field.containing_oneof.name if field.containing_oneof else None) == oneof, f"{field.full_name}: oneof"
            checked += 1
        highest = max(names, default=0)
        extra = [f.name for f in descriptor.fields if f.number <= highest and f.name not in names.values()]
        assert not extra, f"{name}: fields not in the contract at listed numbers: {extra}"
    assert checked > 150


def test_every_enum_of_the_contract(vectors_dir: Path) -> None:
    for kind, name, rest in contract(vectors_dir):
        if kind == "enum":
            listed = dict(pair.strip().split("=") for pair in rest.lstrip(":").split(","))
            actual = {v.name: str(v.number) for v in find_enum(name).values}
            assert actual == listed, name


def test_every_rpc_of_the_contract(vectors_dir: Path) -> None:
    services = {s.name: s for m in (gsp, sip) for s in m.DESCRIPTOR.services_by_name.values()}
    for kind, name, rest in contract(vectors_dir):
        if kind != "rpc":
            continue
        service, method_name = name.split(".")
        m = re.match(r"^\((stream )?(\w+)\) returns \((stream )?(\w+)\)$", rest.strip())
        assert m, rest
        method = services[service].methods_by_name[method_name]
        assert services[service].full_name == f"alcor.schema.{service}"
        assert method.input_type.full_name == f"alcor.schema.{m[2]}"
        assert method.output_type.full_name == f"alcor.schema.{m[4]}"
        assert (method.client_streaming, method.server_streaming) == (bool(m[1]), bool(m[3])), name
