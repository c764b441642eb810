"""The DPM's core, free of gRPC and Kafka: an input becomes snapshot changes, messages
and a tracked request; a restarted host gets its full state; a reply moves requests on.
Runs on one thread (the event loop's); replies are handed over to it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server import planner
from dpm_server.acks import AckTracker, Pending, bounded, combined, failed_reply, invalid_reply
from dpm_server.ackwire import AckFields
from dpm_server.changelog import Changelog
from dpm_server.inputs import Input, as_input, merge, within
from dpm_server.publisher import Publisher
from dpm_server.snapshot import Snapshot
from dpm_server.validate import conflicts, invalid_resources
from gsmq import wire
from gsmq.errors import TransportError
from gsmq.resources import Order, ResourceKey, order
from gsmq.transport import Envelope
from gsmq.wire import STRATEGIES, Strategy, Token

log = structlog.get_logger()
SLICE_HOSTS = 5000  # default of --slice-hosts
FAILED_HOSTS_LOGGED = 20  # a failed request's log line names at most this many of its silent hosts
Done = Callable[[gsp.GoalStateOperationReply], None]


class Engine:
    """Snapshot + planner + publisher + ack tracker, for one strategy."""

    def __init__(self, strategy: str, publisher: Publisher, retry_after: float, timeout: float,
                 changelog: Changelog | None = None, slice_hosts: int = SLICE_HOSTS) -> None:
        """`changelog`: the writer of the engine's snapshot (`changelog.snapshot`, maybe rebuilt
        from it); None: a fresh snapshot and nothing durable (the in-memory cluster)."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
        self.strategy = Strategy(strategy)
        self.changelog = changelog
        self.snapshot = changelog.snapshot if changelog is not None else Snapshot(strategy)
        self.publisher = publisher
        self.tracker = AckTracker(retry_after, timeout, self.resync, publisher.epoch)
        self.invalid = 0
        self.resyncs = 0
        self.resync_failures = 0
        self.unresolved = 0  # inputs with references the snapshot cannot resolve yet
        self.answered = 0  # callers' inputs answered
        self.answered_failed = 0  # ... with a host that did not reply
        self._ids = itertools.count(1)
        self.slice_hosts = slice_hosts  # an input listing more hosts is worked in slices of this many
        # How the next slice of such an input is run: at once here; the daemon passes the event
        # loop's call_soon, so that other callers' inputs and acks are worked between slices.
        self.defer: Callable[[Callable[[], None]], object] = lambda work: work()

    def submit(self, goal: gs.GoalStateV2 | Input, on_done: Done) -> None:
        """Publish what every targeted host needs; `on_done(reply)` once all applied (or timed out)."""
        self.submit_many([(goal, on_done)])

    def _counted(self, on_done: Done) -> Done:
        def done(reply: gsp.GoalStateOperationReply) -> None:
            self.answered += 1
            silent = sorted({h for s in reply.operation_statuses if (h := wire.failed_host(s.resource_id)) is not None})
            if silent:
                self.answered_failed += 1
                log.warning("request_failed", hosts=silent[:FAILED_HOSTS_LOGGED], silent_hosts=len(silent),
                            why="no ack from these hosts before --reply-timeout")
            on_done(bounded(reply))

        return done

    def _refuse(self, bad: dict[ResourceKey, str], format_version: int, on_done: Done) -> None:
        """INVALID_ARG for the refused resources; nothing of the input is stored or published."""
        self.invalid += 1
        log.warning("goal_state_invalid", problems=sorted(set(bad.values()))[:5], resources=len(bad))
        on_done(invalid_reply(bad, format_version))

    def unreadable(self, reason: str) -> gsp.GoalStateOperationReply:
        """The answer to input bytes refused unread (not a GoalStateV2, or over the size
        limit): one INVALID_ARG status naming no resource."""
        self.invalid += 1
        self.answered += 1
        log.warning("goal_state_unreadable", error=reason)
        return invalid_reply({(0, ""): reason}, 0)

    def _submit(self, members: list[tuple[Input, Done]]) -> None:
        """Store and publish accepted inputs as one (`merge`), each tracked as its own request."""
        sent = members[0][0] if len(members) == 1 else merge([data for data, _ in members])
        change = self.snapshot.apply(sent)
        problems = self.snapshot.problems(sent.states, sent.states)
        if problems:  # published anyway: the ACA holds such states PENDING until their parent arrives
            self.unresolved += 1
            log.warning("snapshot_unresolved_references", problems=problems[:5], count=len(problems))
        # Encoded now, from the snapshot as this input left it; published once durable.
        encoded = [(out, planner.encode(out, sent, self.snapshot)) for out in planner.plan(self.strategy, self.snapshot, change, sent)]
        requests = [Pending(f"{self.publisher.epoch}-{next(self._ids)}", data, on_done,
                            superseded=frozenset(k for k, state in data.states.items() if order(state, sent.states[k]) is Order.OLDER))
                    for data, on_done in members]
        if self.changelog is None:
            self.snapshot.take_touched()  # nothing keeps them
            self._publish(requests, encoded)
        else:
            self.changelog.write(lambda: self._publish_or_fail(requests, encoded))

    def _publish_or_fail(self, requests: list[Pending], encoded: list[tuple[planner.Outgoing, bytes]]) -> None:
        """`_publish`, run once the changelog committed: a failure there is the callers'
        FAILURE (logged), never a request left unanswered."""
        try:
            self._publish(requests, encoded)
        except Exception as exc:
            log.exception("publish_failed", request_id=requests[0].id, inputs=len(requests), messages=len(encoded))
            for request in requests:
                if not request.done:
                    request.done = True
                    request.on_done(failed_reply(request.data, f"{type(exc).__name__}: {exc}"))

    def _publish(self, requests: list[Pending], encoded: list[tuple[planner.Outgoing, bytes]]) -> None:
        """Publish the messages of inputs stored together (multicast first: a follow offset
        predates this change's multicast), then track each input on its own: it waits only
        for its own hosts, at the positions of the messages that carry its resources."""
        follows = self.publisher.follow_positions(sorted({v for out, _ in encoded for v in out.follow}))
        request_id = requests[0].id
        self.publisher.host_topics(out.key for out, _ in encoded if not out.multicast)
        unicast: dict[str, int] = {}
        carriers: dict[ResourceKey, set[str]] = {}  # a key -> the hosts whose unicast message carries it from the inputs
        bundles: set[str] = set()  # hosts whose unicast message carries the states of VPCs they join
        multicast: dict[str, list[tuple[Token, set[str]]]] = {}  # vpc -> its messages and the hosts to apply them
        for out, payload in encoded:
            if out.multicast:
                multicast[out.key] = [(token, out.expect) for token in self.publisher.multicast(out.key, payload, request_id)]
            else:
                unicast[out.key] = self.publisher.unicast(out.key, payload, request_id, {v: follows[v] for v in out.follow}).seq
                for key in out.fresh:
                    carriers.setdefault(key, set()).add(out.key)
                if out.stored:
                    bundles.add(out.key)
        for request in requests:  # each input's own share: O(its hosts and VPCs), whatever the batch's size
            data = request.data
            request.unicast = {host: unicast[host] for host in _carrying(data, carriers, bundles)}
            request.multicast = [(token, within(hosts, expect)) for vpc, hosts in data.targeted.items()
                                 for token, expect in multicast.get(vpc, ())]
            self.tracker.track(request)

    def refused(self, data: Input, batch: Mapping[ResourceKey, Any] | None = None) -> dict[ResourceKey, str]:
        """{(type, id): reason} for every resource that makes the input refused whole: invalid,
        alone over the message limit (no split can carry it), or at the revision held (by
        `batch`, the states coalesced before it, else by the snapshot) with other content."""
        coalesced = batch or {}

        def held(key: ResourceKey) -> Any | None:
            if key in coalesced:
                return coalesced[key]
            stored = self.snapshot.resources.get(key)
            return stored.state if stored is not None else None

        limit = self.publisher.max_message_bytes
        too_large = {key: f"{key[1]!r} is {len(piece)} bytes, over the {limit}-byte message limit"
                     for key, piece in data.pieces.items() if limit and len(piece) > limit}
        return invalid_resources(data) or too_large or conflicts(data, held)

    def submit_many(self, batch: Sequence[tuple[gs.GoalStateV2 | Input, Done]]) -> None:
        """Coalesce several inputs into one set of messages (one multicast per VPC, one
        unicast per host); each caller gets its own reply, for its own resources and hosts
        (a state the batch left out for a newer revision of it is OUT_OF_ORDER), when its
        own hosts have applied them. A refused input is refused alone."""
        valid: list[tuple[Input, Done]] = []
        coalesced: dict[ResourceKey, Any] = {}  # the newest state of each resource so far
        for given, on_done in batch:
            data = as_input(given)
            bad = self.refused(data, coalesced)
            if bad:
                self._refuse(bad, data.format_version, self._counted(on_done))  # refused alone, nothing published
                continue
            if data.host_count > self.slice_hosts:
                self._sliced(data, self._counted(on_done))  # checked whole, worked in slices
                continue
            valid.append((data, on_done))
            for key, state in data.states.items():
                if order(state, coalesced.get(key)) is Order.NEWER:
                    coalesced[key] = state
        if valid:
            self._submit([(data, self._counted(on_done)) for data, on_done in valid])

    def _sliced(self, data: Input, on_done: Done) -> None:
        """An input listing many hosts (200,000 is legitimate in a region), stored and published
        one slice of `slice_hosts` hosts at a time (`defer` between them), each slice its own
        request; its caller gets one reply combining theirs. Its VPC-wide states go once per
        slice that lists them."""
        slices = data.slices(self.slice_hosts)
        replies: list[gsp.GoalStateOperationReply] = []

        def collect(reply: gsp.GoalStateOperationReply) -> None:
            replies.append(reply)
            if len(replies) == len(slices):
                on_done(combined(replies, data.format_version))

        def work(i: int) -> None:
            try:
                self._submit([(slices[i], collect)])
            except Exception as exc:
                log.exception("slice_failed", slice=i, slices=len(slices))
                for rest in slices[i:]:
                    collect(failed_reply(rest, f"{type(exc).__name__}: {exc}"))
                return
            if i + 1 < len(slices):
                self.defer(lambda: work(i + 1))

        log.info("input_sliced", hosts=data.host_count, slices=len(slices))
        work(0)

    def resync_restarted(self, host: str) -> bool:
        """A restarted agent's resync, published once every change accepted before it is
        committed to the changelog (its full state never holds a change that could be lost):
        at once when none is waiting (False: it could not be published), else queued (True;
        a failure then is logged and counted by `resync`)."""
        if self.changelog is None or not self.changelog.pending():
            return self.resync(host) is not None
        self.changelog.write(lambda: self.resync(host))
        return True

    def resync(self, host: str) -> int | None:
        """Publish `host`'s whole state from the snapshot (gs-full), following all its VPCs;
        its unicast gs-seq (a watermark past it covers every earlier position of the host), or
        None when it could not be published (logged at WARNING, counted)."""
        keys = self.snapshot.view(host, self.strategy)
        vpcs = sorted(self.snapshot.host_vpcs(host)) if self.strategy == Strategy.VPC_MULTICAST else []
        payload = self.snapshot.message(keys, host)
        try:
            token = self.publisher.unicast(host, payload, f"{self.publisher.epoch}-resync-{next(self._ids)}",
                                           self.publisher.follow_positions(vpcs), full=True)
        except TransportError as exc:
            self.resync_failures += 1
            log.warning("resync_failed", host=host, resources=len(keys), bytes=len(payload), error=str(exc))
            return None
        self.resyncs += 1
        log.debug("host_resynced", host=host, resources=len(keys))
        return token.seq

    def on_acks(self, acks: Iterable[AckFields], refused: Iterable[Envelope] = ()) -> None:
        """Acks decoded from the reply topic move their requests on; refused records are dead-lettered."""
        self.tracker.on_acks(acks)
        for message in refused:
            self.publisher.dead_letter(message)

    def routable(self, host: str, destination_ip: str) -> bool:
        """Whether `destination_ip` is a fixed IP of a port or neighbor in one of the host's VPCs."""
        return self.snapshot.routable(host, destination_ip)

    def host_goal_state(self, host: str) -> gs.GoalStateV2:
        return self.snapshot.as_goal_state(host, self.strategy)

    def counts(self) -> dict[str, int]:
        c = self.publisher.counters
        return {
            "hosts": len(self.snapshot.hosts()),
            "vpcs": sum(1 for m in self.snapshot.members.values() if m),
            "resources": len(self.snapshot.resources),
            "requests_pending": len(self.tracker.pending),
            "requests_completed": self.answered,
            "requests_failed": self.answered_failed,
            "messages_published": c.unicast_messages + c.multicast_messages,
            "bytes_published": c.bytes_published,
            "replies_received": self.tracker.replies,
            "resyncs_served": self.resyncs,
            "retries": self.tracker.retries,
            "unicast_messages": c.unicast_messages,
            "multicast_messages": c.multicast_messages,
            "invalid_requests": self.invalid,
            "dead_letters": c.dead_letters,
            "resync_failures": self.resync_failures,
            "delivery_errors": c.delivery_errors,
            "grpc_messages": c.grpc_messages,
            "grpc_bytes": c.grpc_bytes,
        }


def _carrying(data: Input, carriers: Mapping[ResourceKey, set[str]], bundles: set[str]) -> set[str]:
    """The hosts whose unicast message carries a resource `data` lists for them (by its
    groups' keys), and the hosts joining a VPC that it lists (their message carries the
    VPC's states); each set intersection reads the smaller side. Not a message that carries
    only other inputs' resources to a host it lists: a batch of N inputs would wait N x N times."""
    out: set[str] = set()
    for group in data.groups:
        if bundles:
            out.update(bundles & group.hosts)
        for key in group.keys:
            hosts = carriers.get(key)
            if hosts:
                out.update(hosts & group.hosts)
    return out
