"""What an agent has done since it started (served by the status service)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Counters:
    """Plain counters; the applier and the consumer add to them under the agent's lock."""

    messages_applied: int = 0  # (host, message) pairs applied
    messages_other_host: int = 0  # unicast messages for hosts this agent does not serve
    messages_skipped: int = 0  # markers and multicast messages of VPCs not followed
    dead_lettered: int = 0
    duplicates: int = 0  # resources seen again at the same revision
    stale_messages: int = 0  # unicast messages at or below the host's gs-seq seen (copies, or overtaken): skipped
    out_of_order: int = 0
    resyncs: int = 0  # hosts for which a resync was requested
    bytes_consumed: int = 0
    bytes_pushed: int = 0  # goal-state bytes the DPM pushed on the gRPC channel
    replies_sent: int = 0
    conflicts: int = 0  # resources at the held revision with other content (refused)
    bundle_states_known: int = 0  # states of join and resync bundles taken from their VPC table's `known` pieces, not parsed
    # Histograms in `aca_agent.acks.elapse_bucket`s, summed as acks are built: publish -> applied
    # of each message, and each message's apply time (an ack's apply time over its messages).
    elapse_buckets: dict[int, int] = field(default_factory=dict)
    elapse_us_sum: int = 0
    apply_buckets: dict[int, int] = field(default_factory=dict)
    apply_us_sum: int = 0
