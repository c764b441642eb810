"""The faults scenario's bookkeeping: what callers listed and were told."""

from __future__ import annotations

from typing import Any

from alcor.schema import common_pb2 as common
from alcor.schema import goalstateprovisioner_pb2 as gsp
from gs_bench.faults import Ledger, listing
from gs_bench.scenarios import Storm
from gs_bench.topology import ports_message

A, B = "10.1.0.1", "10.1.0.2"


def reply(*ok: str, failed: tuple[str, ...] = ()) -> gsp.GoalStateOperationReply:
    out = gsp.GoalStateOperationReply()
    for rid in ok:
        out.operation_statuses.add(resource_id=rid, operation_status=common.SUCCESS)
    for rid in failed:
        out.operation_statuses.add(resource_id=rid, operation_status=common.FAILURE)
    return out


class Answered:
    """What `Ledger.add` reads of a `Callers`: the inputs and their replies (None: never answered)."""

    def __init__(self, payloads: list[bytes], replies: list[Any]) -> None:
        self.payloads, self.replies = payloads, replies


def test_the_listing_of_a_several_port_input_names_each_host_and_revision() -> None:
    storm = Storm(2, 1, 4)
    payload = ports_message([storm.port(i) for i in range(4)], storm.host_list, revision=3).SerializeToString()
    listed = listing(payload)
    assert set(listed) == {A, B}
    assert listed[A] == {("PORT", "port-0"): 3, ("DHCP", "dhcp-port-0"): 3, ("PORT", "port-2"): 3, ("DHCP", "dhcp-port-2"): 3,
                         ("NEIGHBOR", "nb-port-1"): 3, ("NEIGHBOR", "nb-port-3"): 3}


def test_the_ledger_counts_success_only_for_the_pairs_answered_success() -> None:
    storm = Storm(2, 1, 2)
    payloads = storm.creates()
    ledger = Ledger()
    ledger.add(Answered(payloads, [reply("port-0", "dhcp-port-0", failed=("nb-port-0",)), None]))  # type: ignore[arg-type]
    assert ledger.succeeded == {(A, "PORT", "port-0"), (A, "DHCP", "dhcp-port-0")}
    assert set(ledger.desired[B]) == {("NEIGHBOR", "nb-port-0"), ("PORT", "port-1"), ("DHCP", "dhcp-port-1")}  # desired all the same
