"""ACLs of the project's principals on a secured Kafka cluster, for one topic prefix.

An agent (User:agent) reads the goal-state topics (unicast, multicast, per-host) and
writes the reply and dead-letter topics only; the DPM (User:dpm) creates the topics,
writes the goal-state topics, reads the replies and writes its markers there, and reads and
writes its changelog in transactions of its transactional id `dpm.<prefix>`. Everything else is refused
(`allow.everyone.if.no.acl.found=false`).
"""

from __future__ import annotations

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from gsmq.topics import Topics

DPM = "User:dpm"
AGENT = "User:agent"

Rule = tuple[str, ResourceType, str, ResourcePatternType, AclOperation]


def rules(prefix: str) -> list[Rule]:
    """(principal, resource type, name, pattern, operation) allowed for `prefix`'s topics."""
    t = Topics(prefix)
    lit, pre = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    goal_states = [(t.unicast, lit), (t.multicast, lit), (t.host(""), pre)]
    out: list[Rule] = []
    out += [(DPM, topic, f"{prefix}.", pre, op) for op in (AclOperation.CREATE, AclOperation.DESCRIBE)]
    out += [(DPM, topic, name, pat, AclOperation.WRITE) for name, pat in goal_states]
    # The DPM reads the replies, and writes its start-up markers there too.
    out += [(DPM, topic, t.reply, lit, op) for op in (AclOperation.READ, AclOperation.WRITE)]
    out += [(DPM, group, f"dpm.{prefix}", lit, AclOperation.READ)]
    # The durable desired state: the changelog, read at start and written in transactions.
    out += [(DPM, topic, t.changelog, lit, op) for op in (AclOperation.READ, AclOperation.WRITE)]
    out += [(DPM, group, f"dpm.{prefix}.changelog", lit, AclOperation.READ)]
    out += [(DPM, ResourceType.TRANSACTIONAL_ID, f"dpm.{prefix}", lit, op) for op in (AclOperation.WRITE, AclOperation.DESCRIBE)]
    out += [(AGENT, topic, name, pat, op) for name, pat in goal_states for op in (AclOperation.READ, AclOperation.DESCRIBE)]
    out += [(AGENT, topic, name, lit, op) for name in (t.reply, t.dead_letter) for op in (AclOperation.WRITE, AclOperation.DESCRIBE)]
    out += [(AGENT, group, "aca", pre, AclOperation.READ)]  # aca.<host> and aca-sim.<name>
    return out


def grant(admin: AdminClient, prefix: str, timeout: float = 30.0) -> None:
    """Create the ACLs of `rules(prefix)` (an admin client of a superuser)."""
    bindings = [AclBinding(rtype, name, pattern, principal, "*", op, AclPermissionType.ALLOW)
                for principal, rtype, name, pattern, op in rules(prefix)]
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result()
