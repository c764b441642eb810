"""A caller's input as the DPM works on it: its states, and its hosts grouped by listing.

GoalStateV2.host_resources names, per host, the resources the host must program. A big
input lists the same resources for many hosts (a neighbor for every host of its VPC), so
the DPM keeps the hosts in groups, one per distinct listing, and decides per group with
set operations instead of per host and resource. The listing is read from the input's
bytes (`gsmq.v1.GoalStateV2Parts`): each host's entry is split into its host id and the
bytes of its listing, and each distinct listing is parsed once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import DecodeError

from alcor.schema import goalstate_pb2 as gs
from dpm_server.hostsets import Part
from gsmq.resources import VPC_WIDE, Order, ResourceKey, iter_states, order, piece_of, ref_piece, vpc_of
from gsmq.v1 import parts_pb2


class InputError(ValueError):
    """Bytes that are not a GoalStateV2."""


@dataclass(init=False, slots=True)
class Group:
    """Hosts that are listed for the same resources. Its set is never changed once made:
    merged inputs, their messages and the requests' fanouts share it."""

    keys: Final[tuple[ResourceKey, ...]]  # distinct, in listing order
    hosts: Final[set[str]]

    def __init__(self, keys: tuple[ResourceKey, ...], hosts: set[str]) -> None:
        self.keys = keys
        self.hosts = hosts


class Input:
    """One caller input (or several merged, `merge`): each state once, hosts in groups.
    After a merge a host may stand in several groups: it is listed for all their keys."""

    def __init__(self, format_version: int, states: dict[ResourceKey, Any], groups: list[Group]) -> None:
        self.format_version = format_version
        self.states = states
        self.groups = groups
        self.vpcs = {key: vpc_of(key[0], state) for key, state in states.items()}
        self._hosts: set[str] | None = None
        self._count: int | None = None
        self._targeted: dict[str, set[str]] | None = None
        self._pieces: dict[ResourceKey, bytes] | None = None
        self._refs: dict[ResourceKey, bytes] | None = None

    @classmethod
    def parse(cls, raw: bytes) -> Input:
        """The input encoded in `raw` (InputError when it is not a GoalStateV2)."""
        try:
            parts = parts_pb2.GoalStateV2Parts.FromString(raw)
            groups, count, everyone = _groups(parts.host_resources)
        except (DecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"not a GoalStateV2: {exc}") from exc
        states = {(rtype, sys.intern(rid)): state for rtype, rid, state in iter_states(parts)}
        made = cls(parts.format_version, states, groups)
        made._count = count
        made._hosts = everyone
        return made

    @classmethod
    def of(cls, goal: gs.GoalStateV2) -> Input:
        return cls.parse(goal.SerializeToString())

    @property
    def hosts(self) -> set[str]:
        """Every host listed (for anything or nothing)."""
        if self._hosts is None:
            self._hosts = united([g.hosts for g in self.groups]) if self.groups else set()
        return self._hosts

    @property
    def host_count(self) -> int:
        """How many hosts are listed: counted by the parse, without uniting the groups."""
        if self._count is None:
            self._count = len(self.hosts)
        return self._count

    def keys_of(self, host: str) -> list[ResourceKey]:
        """What `host` is listed for, in listing order: O(groups), for a few hosts."""
        return list(dict.fromkeys(k for g in self.groups if host in g.hosts for k in g.keys))

    def lists(self, host: str, key: ResourceKey) -> bool:
        """Whether `host` is listed for `key`: O(groups x keys), for the few resources that failed."""
        return any(host in g.hosts and key in g.keys for g in self.groups)

    @property
    def targeted(self) -> dict[str, set[str]]:
        """{vpc: the hosts listed for a VPC-wide state of it}, the hosts its multicast must reach."""
        if self._targeted is None:
            out: dict[str, list[set[str]]] = {}
            for g in self.groups:
                for vpc in {self.vpcs[k] for k in g.keys if k[0] in VPC_WIDE and self.vpcs.get(k)}:
                    out.setdefault(vpc, []).append(g.hosts)
            self._targeted = {vpc: united(sets) for vpc, sets in out.items()}
        return self._targeted

    def listing(self) -> dict[str, list[ResourceKey]]:
        """Every host's listing: O(hosts x keys), for when every host needs its own copy."""
        out: dict[str, dict[ResourceKey, None]] = {}
        for g in self.groups:
            for host in g.hosts:
                out.setdefault(host, {}).update(dict.fromkeys(g.keys))
        return {host: list(keys) for host, keys in out.items()}

    @property
    def pieces(self) -> dict[ResourceKey, bytes]:
        """Each resource serialized once, as a GoalStateV2 holding only it."""
        if self._pieces is None:
            self._pieces = {key: piece_of(key[0], key[1], state) for key, state in self.states.items()}
        return self._pieces

    @property
    def refs(self) -> dict[ResourceKey, bytes]:
        """Each resource as an entry of a host's listing (`resources.ref_piece`)."""
        if self._refs is None:
            self._refs = {key: ref_piece(*key) for key in self.states}
        return self._refs

    def vpc(self, key: ResourceKey) -> str:
        return self.vpcs[key]

    def slices(self, size: int) -> list[Input]:
        """This input cut into inputs listing at most `size` hosts each, each carrying the
        states its hosts are listed for (in this input's order; states listed for no host
        go with the first). A host stays whole within one group's slice."""
        cut: list[list[Group]] = [[]]
        count = 0
        for g in self.groups:
            hosts = sorted(g.hosts)
            for start in range(0, len(hosts), size):
                chunk = set(hosts[start : start + size])
                if count + len(chunk) > size and cut[-1]:
                    cut.append([])
                    count = 0
                cut[-1].append(Group(g.keys, chunk))
                count += len(chunk)
        listed: set[ResourceKey] = set()
        keys_of = []
        for groups in cut:
            keys = {k for g in groups for k in g.keys}
            keys_of.append(keys)
            listed |= keys
        keys_of[0] |= self.states.keys() - listed
        return [Input(self.format_version, {k: v for k, v in self.states.items() if k in keys}, groups)
                for keys, groups in zip(keys_of, cut, strict=True)]


def within(hosts: set[str], *bounds: set[str]) -> set[str]:
    """`hosts` & every bound: `hosts` itself, uncopied, when it lies within them all (as a
    neighbor's hosts lie within its VPC's members); a bound that is the set `hosts` was
    made from (`base_of`), or a part of the same one, is not read. The sets are never
    changed once made."""
    for bound in bounds:
        if not _lies_within(hosts, bound):
            return hosts.intersection(*bounds)
    return hosts


def _lies_within(hosts: set[str], bound: set[str]) -> bool:
    """hosts <= bound: O(their `out`) when `bound` is `hosts`, its base, or a part of it."""
    base = base_of(hosts)
    if bound is base:
        return True
    if base_of(bound) is base:  # base less a few within base less others: the few are among the others
        return out_of(bound) <= out_of(hosts)
    return hosts <= bound


def base_of(hosts: set[str]) -> set[str]:
    """The set `hosts` was made from as a `Part`, else `hosts` itself: `hosts` lies within it."""
    return hosts.base if type(hosts) is Part else hosts


def out_of(hosts: set[str]) -> set[str]:
    """`base_of(hosts)` less `hosts`: a few hosts, none for a set that is not a `Part`."""
    return hosts.out if type(hosts) is Part else set()


def same(a: set[str], b: set[str]) -> bool:
    """a == b: O(their `out`) when both are parts of one base."""
    if a is b:
        return True
    if type(a) is Part and type(b) is Part and a.base is b.base:
        return bool(a.out == b.out)
    return a == b


def united(sets: list[set[str]]) -> set[str]:
    """The union of `sets` (one of them as it is when alone). When all are one base or parts
    of it: the base itself when no host is out of every one (O(their `out`)), else a part of
    it (a copy of the base)."""
    if len(sets) == 1:
        return sets[0]
    base = base_of(sets[0])
    if all(base_of(s) is base for s in sets):
        outs = [out_of(s) for s in sets if s is not base]
        if len(outs) < len(sets):
            return base
        common = outs[0].intersection(*outs[1:])
        return Part(base, common) if common else base
    return set().union(*sets)


def as_input(goal: gs.GoalStateV2 | Input) -> Input:
    """A GoalStateV2 as an `Input` (the DPM's service parses its callers' bytes itself)."""
    return goal if isinstance(goal, Input) else Input.of(goal)


def merge(inputs: Sequence[Input]) -> Input:
    """One input of several: a resource given twice keeps the later state, unless that one
    is an older revision (applied one after the other, an ACA would refuse it as
    OUT_OF_ORDER and keep the newer one); hosts listed for the same keys form one group."""
    states: dict[ResourceKey, Any] = {}
    for inp in inputs:
        for key, state in inp.states.items():
            held = states.get(key)
            if held is None or order(state, held) is not Order.OLDER:
                states[key] = state
    by_keys: dict[tuple[ResourceKey, ...], list[Group]] = {}
    for inp in inputs:
        for g in inp.groups:
            by_keys.setdefault(g.keys, []).append(g)
    # a group alone is taken as it is (groups are never changed)
    groups = [alike[0] if len(alike) == 1 else Group(keys, united([g.hosts for g in alike])) for keys, alike in by_keys.items()]
    return Input(inputs[-1].format_version, states, groups)


def _groups(entries: Sequence[bytes]) -> tuple[list[Group], int | None, set[str] | None]:
    """The host_resources entries as groups, how many hosts they list (None: not counted
    here) and, when known, the set of those hosts (`_split`). Each entry is split into its
    host and the rest when it starts with its key (as every serializer writes a map entry);
    the rest of each distinct listing is parsed once, and any entry that does not split so,
    a rest that names a key again, or a host given in two entries (the last one wins) sends
    the whole map to the exact path (`_groups_exactly`)."""
    split = _split(entries)
    if split is None:
        return _groups_exactly(entries), None, None
    rests, everyone = split
    by_keys: dict[tuple[ResourceKey, ...], list[str]] = {}
    for rest, hosts in rests.items():
        entry = parts_pb2.HostResourcesEntry.FromString(rest)
        if entry.HasField("host"):  # a key after the value: the later one wins
            return _groups_exactly(entries), None, None
        by_keys.setdefault(_keys(entry), []).extend(hosts)
    if everyone is not None:  # each host once: the largest group is everyone less the others
        return _parts(by_keys, everyone), len(entries), everyone
    groups = [Group(keys, set(hosts)) for keys, hosts in by_keys.items()]
    if not _apart(groups, len(entries)):
        return _groups_exactly(entries), None, None
    return groups, len(entries), None


def _parts(by_keys: dict[tuple[ResourceKey, ...], list[str]], everyone: set[str]) -> list[Group]:
    """Groups of hosts listed once each, `everyone` in all: the largest as a `Part` of it
    (a copy less a few, not a set built host by host), or `everyone` itself when alone."""
    largest = max(by_keys.values(), key=len)
    others = {host for hosts in by_keys.values() if hosts is not largest for host in hosts}
    return [Group(keys, (Part(everyone, others) if others else everyone) if hosts is largest else set(hosts))
            for keys, hosts in by_keys.items()]


def _apart(groups: list[Group], entries: int) -> bool:
    """Whether the groups hold `entries` hosts, none twice: the largest is checked against
    the others, not copied (a neighbor's group holds nearly every host of an input)."""
    if sum(len(g.hosts) for g in groups) != entries:
        return False
    if len(groups) < 2:
        return True
    largest = max(groups, key=lambda g: len(g.hosts))
    others = [g.hosts for g in groups if g is not largest]
    rest = others[0] if len(others) == 1 else set().union(*others)
    return len(rest) == entries - len(largest.hosts) and rest.isdisjoint(largest.hosts)


# Host ids as read from inputs, each decoded once per process to one interned str (the
# snapshot's too): sets of hosts then hash nothing and compare by identity. Bounded: emptied
# when full (NAMES_KEPT ids of ~100 bytes each, with their entries).
_NAMES: dict[bytes, str] = {}
NAMES_KEPT = 1 << 21
# The last listings' entry keys (field 1 as written) with their ids, by position: a listing
# names its hosts in the order of the one before (a VPC's hosts), so an entry that starts
# with the key at its position is that host, read without a copy or a hash. Pairs are
# replaced whole, so a reader never sees one key with another's id. Bounded: the first
# KEYS_KEPT positions (~120 bytes each).
_KEYS: list[tuple[bytes, str]] = []
KEYS_KEPT = 1 << 17
KEYS_TRIED = 8
MOVES_SEEN = 64  # a listing with more ids moved is not compared with the one before


@dataclass(slots=True)
class _Listing:
    """The listing whose ids `_KEYS` holds: its positions (-1: not read whole) and, once a
    listing named them again (in any order), the set of them (never changed: replaced)."""

    size: int = -1
    hosts: set[str] | None = None


# Read and written by one thread at a time, as `_KEYS` is by the DPM's event loop: a listing
# read half way by another thread between two would make the count of moved ids wrong.
_LAST = _Listing()


def _split(entries: Sequence[bytes]) -> tuple[dict[bytes, list[str]], set[str] | None] | None:
    """{rest of an entry: the hosts whose entry it ends, in order}, and the set of the hosts
    listed when they are those of the listing before, each once, in any order (`_LAST`;
    else None). None unless every entry starts with a key of fewer than 128 bytes. A host
    given twice stands twice. Each host id is decoded once per process (`_NAMES`, `_KEYS`;
    UnicodeDecodeError when one is not UTF-8)."""
    keys = _KEYS
    size, held = _LAST.size, _LAST.hosts
    _LAST.size, _LAST.hosts = -1, None  # until this listing is read whole: it changes `keys`
    out: dict[bytes, list[str]] = {}
    last = b""
    hosts: list[str] = []  # the hosts of `last`
    looking, found_any = True, False  # a listing whose first KEYS_TRIED keys are all new is read without them
    gone: list[str] = []  # the ids that other ones replaced at their positions of the listing before
    came: list[str] = []  # those other ones
    for i, e in enumerate(entries):
        n = e[1] if len(e) > 1 and e[0] == 0x0A else 0x80  # field 1, length-delimited; a 1-byte length
        if n >= 0x80 or len(e) < n + 2:
            return None
        # A rest equal to the entry before's is that one (compared in place, not copied).
        if len(e) - n - 2 != len(last) or not e.endswith(last) or not out:
            last = e[n + 2 :]
            hosts = out.setdefault(last, [])
        if looking and i < len(keys) and e.startswith((pair := keys[i])[0]):
            name = pair[1]
            found_any = True
        else:
            name = _name(e[2 : n + 2])
            if looking and i < KEYS_KEPT:  # positions fill in order: i is at most len(keys)
                pair = (e[: n + 2], name)
                if i < len(keys):
                    if i < size and len(gone) < MOVES_SEEN:
                        gone.append(keys[i][1])
                        came.append(name)
                    keys[i] = pair
                else:
                    keys.append(pair)
        hosts.append(name)
        looking = looking and (found_any or i + 1 < KEYS_TRIED)
    count = len(entries) if looking and len(entries) <= KEYS_KEPT else -1
    return out, _listed(keys, count, count == size and len(gone) < MOVES_SEEN and sorted(gone) == sorted(came), held)


def _listed(keys: list[tuple[bytes, str]], size: int, moved: bool, held: set[str] | None) -> set[str] | None:
    """Keep in `_LAST` the listing just read into `keys` (`size` positions; -1: not read
    whole). When it is the listing before `moved` about (as many hosts; the ids replaced at
    their positions are the ids that replaced them), its hosts as a set (`held`, that
    listing's, or made now), unless one is listed twice."""
    _LAST.size = size
    if not moved or size <= 0:
        return None
    if held is None:
        held = {name for _, name in keys[:size]}
        if len(held) < size:  # a host listed twice: not a set of them all
            return None
    _LAST.hosts = held
    return held


def _name(raw: bytes) -> str:
    """The host id in `raw` as its one str (`_NAMES`)."""
    name = _NAMES.get(raw)
    if name is None:
        if len(_NAMES) >= NAMES_KEPT:
            _NAMES.clear()
        name = _NAMES[raw] = sys.intern(raw.decode())
    return name


def _groups_exactly(entries: Sequence[bytes]) -> list[Group]:
    """Every entry parsed on its own (the last one of a host wins)."""
    by_host: dict[str, tuple[ResourceKey, ...]] = {}
    for e in entries:
        entry = parts_pb2.HostResourcesEntry.FromString(e)
        by_host[sys.intern(entry.host)] = _keys(entry)
    out: dict[tuple[ResourceKey, ...], list[str]] = {}
    for host, keys in by_host.items():
        out.setdefault(keys, []).append(host)
    return [Group(keys, set(hosts)) for keys, hosts in out.items()]


def _keys(entry: parts_pb2.HostResourcesEntry) -> tuple[ResourceKey, ...]:
    return tuple(dict.fromkeys((int(r.type), sys.intern(r.id)) for r in entry.resources.resources))
