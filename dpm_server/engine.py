"""The DPM's core, free of gRPC and Kafka: an input becomes snapshot changes, messages
and a tracked request; a restarted host gets its full state; a reply moves requests on.
Runs on one thread (the event loop's); replies are handed over to it."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import structlog

from dpm_server import planner
from dpm_server.acks import AckTracker, Pending, invalid_reply
from dpm_server.publisher import Publisher, Token
from dpm_server.snapshot import MULTICAST, Snapshot
from dpm_server.validate import invalid_resources
from proto import common_pb2 as common
from proto import goalstate_pb2 as gs
from proto import goalstateprovisioner_pb2 as gsp

log = structlog.get_logger()
Done = Callable[[gsp.GoalStateOperationReply], None]


class Engine:
    """Snapshot + planner + publisher + ack tracker, for one strategy."""

    def __init__(self, strategy: str, publisher: Publisher, retry_after: float, timeout: float) -> None:
        if strategy not in planner.STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (choose from {', '.join(planner.STRATEGIES)})")
        self.strategy = strategy
        self.snapshot = Snapshot()
        self.publisher = publisher
        self.tracker = AckTracker(retry_after, timeout, self._retry)
        self.invalid = 0
        self.resyncs = 0
        self._ids = itertools.count(1)

    def submit(self, goal: gs.GoalStateV2, on_done: Done) -> None:
        """Publish what every targeted host needs; `on_done(reply)` once all applied (or timed out)."""
        bad = invalid_resources(goal)
        if bad:
            self.invalid += 1
            log.warning("goal_state_invalid", problems=sorted(set(bad.values()))[:5], resources=len(bad))
            on_done(invalid_reply(bad, goal.format_version))
            return
        request_id = f"{self.publisher.epoch}-{next(self._ids)}"
        data = planner.Input(goal)
        change = self.snapshot.apply(goal)
        messages = planner.plan(self.strategy, self.snapshot, change, data)
        follows = self.publisher.follow_positions(sorted({v for m in messages for v in m.follow}))
        waiting: dict[str, set[Token]] = {}
        for out in messages:  # multicast first: a follow offset predates this change's multicast
            payload = planner.encode(out, data, self.snapshot)
            if out.multicast:
                token = self.publisher.multicast(out.key, payload, request_id)
            else:
                token = self.publisher.unicast(out.key, payload, request_id, {v: follows[v] for v in out.follow})
            for host in out.expect:
                waiting.setdefault(host, set()).add(token)
        self.tracker.track(Pending(request_id, data, waiting, on_done))

    def _retry(self, request: Pending, host: str) -> Token:
        out = planner.retry(request.data, host, self.snapshot, self.strategy)
        follow = self.publisher.follow_positions(out.follow)
        log.info("straggler_retry", request=request.id, host=host)
        return self.publisher.unicast(host, planner.encode(out, request.data, self.snapshot), request.id, follow)

    def resync(self, host: str) -> None:
        """Publish `host`'s whole state from the snapshot (gs-full), following all its VPCs."""
        keys = self.snapshot.view(host, self.strategy)
        vpcs = sorted(self.snapshot.host_vpcs(host)) if self.strategy == MULTICAST else []
        payload = self.snapshot.message(keys, host)
        self.publisher.unicast(host, payload, f"{self.publisher.epoch}-resync-{next(self._ids)}",
                               self.publisher.follow_positions(vpcs), full=True)
        self.resyncs += 1
        log.info("host_resynced", host=host, resources=len(keys))

    def routable(self, host: str, destination_ip: str) -> bool:
        """Whether `destination_ip` is a fixed IP of a port or neighbor in one of the host's VPCs."""
        vpcs = self.snapshot.host_vpcs(host)
        for (rtype, _rid), stored in self.snapshot.resources.items():
            if rtype in (common.PORT, common.NEIGHBOR) and stored.vpc in vpcs:
                if any(ip.ip_address == destination_ip for ip in stored.state.configuration.fixed_ips):
                    return True
        return False

    def host_goal_state(self, host: str) -> gs.GoalStateV2:
        return self.snapshot.as_goal_state(host, self.strategy)

    def counts(self) -> dict[str, int]:
        c = self.publisher.counters
        return {
            "hosts": len(self.snapshot.hosts()),
            "vpcs": sum(1 for m in self.snapshot.members.values() if m),
            "resources": len(self.snapshot.resources),
            "requests_pending": len(self.tracker.pending),
            "requests_completed": self.tracker.completed,
            "requests_failed": self.tracker.failed,
            "messages_published": c.unicast_messages + c.multicast_messages,
            "bytes_published": c.bytes_published,
            "replies_received": self.tracker.replies,
            "resyncs_served": self.resyncs,
            "retries": self.tracker.retries,
            "unicast_messages": c.unicast_messages,
            "multicast_messages": c.multicast_messages,
            "invalid_requests": self.invalid,
        }


