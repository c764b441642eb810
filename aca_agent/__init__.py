"""The Alcor Control Agent of the message-queue path: consume goal states, apply, reply.

Data flows through: `consumer` (Kafka batches, multicast assignment, replies, commits)
-> `applier` (the semantics of docs/internals.md, pure logic) -> `dataplane` (tables);
`replies` builds what goes back, `resync` asks the DPM for full state, `status` serves
counters, host tables and the gRPC fast path, `main` wires it all (`aca-agent [sim]`).

Choices the conventions leave open, made here:
- unicast `host_resources` empty: every state of the message is applied for the key host;
- DELETE with revision 0 deletes whatever revision is held (a non-zero older one is OUT_OF_ORDER);
- a `FULL` resource in a multicast message replaces that type only within that VPC;
- a VPC followed without a `gs-follow` cursor is tracked, but its multicast partition
  is not read until a cursor arrives (resync); a `gs-follow` for a VPC already followed
  moves the cursor only on `gs-full` or when it is ahead of ours;
- a gap in a followed VPC's multicast `gs-seq` also triggers a resync of that host;
- multicast offsets are not committed (after a restart the resync's `gs-follow` says where to read).
"""
