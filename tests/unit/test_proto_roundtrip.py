"""Property tests: random messages of the schema survive bytes, JSON and gsctl unchanged.

The strategy is driven by the descriptors, so it covers every field of every message:
maps, nested and repeated messages, enums, oneofs (the gateway's `extra_info`), unicode
strings and the full uint32 / uint64 ranges. A field whose type it does not know makes
it raise, so a schema change it cannot follow fails here instead of going untested.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gsmq import gsctl

if TYPE_CHECKING:  # a message's DESCRIPTOR is either kind (types-protobuf's Message.DESCRIPTOR)
    from google._upb._message import FieldDescriptor as UpbFieldDescriptor

U32 = 2**32 - 1
U64 = 2**64 - 1
SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: st.text(max_size=10),  # any code point but surrogates: unicode, NUL, emoji
    FieldDescriptor.TYPE_UINT32: st.one_of(st.sampled_from([0, 1, U32]), st.integers(0, U32)),
    FieldDescriptor.TYPE_UINT64: st.one_of(st.sampled_from([0, U32 + 1, U64]), st.integers(0, U64)),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=10),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
}


def scalars(field: FieldDescriptor | UpbFieldDescriptor) -> st.SearchStrategy[Any]:
    """Values of a non-message field (enums: the declared values)."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None, f"{field.full_name}: no enum type"
        return st.sampled_from([v.number for v in field.enum_type.values])
    if field.type not in SCALARS:
        raise NotImplementedError(f"no strategy for {field.full_name} (type {field.type})")
    return SCALARS[field.type]


def fill(draw: st.DrawFn, msg: Message, depth: int = 0) -> None:
    """Set a random subset of `msg`'s fields, recursively; one member (or none) per oneof."""
    descriptor = msg.DESCRIPTOR
    chosen = {o.name: draw(st.sampled_from([None, *(f.name for f in o.fields)])) for o in descriptor.oneofs}
    width = 2 if depth < 3 else 1
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen[oneof.name] != field.name:
            continue
        if oneof is None and not draw(st.booleans()):
            continue
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for key in draw(st.lists(scalars(key_field), max_size=width, unique=True)):
                if value_field.message_type is not None:
                    fill(draw, value[key], depth + 1)  # reading a key creates the entry
                else:
                    value[key] = draw(scalars(value_field))
        elif field.is_repeated:
            for _ in range(draw(st.integers(0, width))):
                if field.message_type is not None:
                    fill(draw, value.add(), depth + 1)
                else:
                    value.append(draw(scalars(field)))
        elif field.message_type is not None:
            value.SetInParent()  # present even if left empty: presence must survive too
            fill(draw, value, depth + 1)
        else:
            setattr(msg, field.name, draw(scalars(field)))


@st.composite
def messages(draw: st.DrawFn, cls: type[Message]) -> Message:
    msg = cls()
    fill(draw, msg)
    return msg


def assert_round_trips(msg: Message) -> None:
    cls = type(msg)
    canonical = msg.SerializeToString(deterministic=True)
    assert cls.FromString(msg.SerializeToString()) == msg
    assert cls.FromString(canonical).SerializeToString(deterministic=True) == canonical
    document = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    assert json_format.ParseDict(json.loads(json.dumps(document)), cls()) == msg
    # gsctl's own functions: decode -> printed text -> encode gives the canonical bytes back
    text = gsctl.to_json(gsctl.decode(canonical, cls, "x"))
    assert json.loads(text) == document
    assert gsctl.encode(text.encode(), cls, "x") == canonical


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)
@given(messages(gs.GoalStateV2))
def test_random_goal_state_v2_round_trips(goal: gs.GoalStateV2) -> None:
    assert_round_trips(goal)


ALCOR_TYPES = sorted(
    {cls for name, cls in gsctl.message_types().items() if cls.DESCRIPTOR.full_name.startswith("alcor.schema.")},
    key=lambda cls: cls.DESCRIPTOR.full_name,
)


@pytest.mark.parametrize("cls", ALCOR_TYPES, ids=lambda cls: cls.DESCRIPTOR.full_name)
@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)
@given(data=st.data())
def test_every_alcor_message_round_trips(cls: type[Message], data: st.DataObject) -> None:
    assert_round_trips(data.draw(messages(cls)))


CORNERS = {
    "gateway arion_info oneof": lambda g: any(x.configuration.WhichOneof("extra_info") == "arion_info"
                                              for x in g.gateway_states.values()),
    "gateway zeta_info oneof": lambda g: any(x.configuration.WhichOneof("extra_info") == "zeta_info"
                                             for x in g.gateway_states.values()),
    "uint64 above 32 bits": lambda g: any(s.configuration.tunnel_id > U32 for s in g.subnet_states.values()),
    "uint32 maximum": lambda g: any(p.configuration.revision_number == U32 for p in g.port_states.values()),
    "non-ASCII map key": lambda g: any(any(ord(ch) > 0x7F for ch in key) for key in g.host_resources),
    "two repeated nested messages": lambda g: any(len(p.configuration.fixed_ips) == 2 for p in g.port_states.values()),
    "non-default enum": lambda g: any(r.type == common.GATEWAY for h in g.host_resources.values() for r in h.resources),
}


@pytest.mark.parametrize("corner", sorted(CORNERS))
def test_the_strategy_reaches(corner: str) -> None:
    """Guard against a strategy that silently stopped covering what the properties claim."""
    found = find(messages(gs.GoalStateV2), CORNERS[corner],
                 settings=settings(max_examples=3000, phases=[Phase.generate], database=None, deadline=None,
                                   suppress_health_check=list(HealthCheck)))
    assert CORNERS[corner](found)


@settings(max_examples=4, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)
@given(messages(gs.GoalStateV2))
def test_gsctl_processes_reproduce_the_canonical_bytes(goal: gs.GoalStateV2) -> None:
    canonical = goal.SerializeToString(deterministic=True)
    run = [sys.executable, "-m", "gsmq.gsctl"]
    decoded = subprocess.run([*run, "decode", "--type", "GoalStateV2"], input=canonical, capture_output=True, timeout=60)
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout.decode() == json.dumps(json_format.MessageToDict(goal, preserving_proto_field_name=True),
                                                 sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    encoded = subprocess.run([*run, "encode", "--type", "GoalStateV2", "-"], input=decoded.stdout,
                             capture_output=True, timeout=60)
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout == canonical
