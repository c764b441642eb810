"""The Data Plane Manager of the message-queue path: goal states in, per-host and per-VPC
Kafka messages out, host replies tracked until every targeted host applied.

Data flows through: `service` (gRPC callers) -> `validate` -> `snapshot` (desired state
per host, resources stored once) -> `planner` (what goes on which channel, which
replies to wait for) -> `publisher` (Kafka, sequences, follow offsets) ; `acks` matches
host replies to requests, retries stragglers and answers callers. `engine` ties these
together without gRPC or Kafka; `main` wires the daemon; `testing` has builders.

Choices made where docs/internals.md leaves room:
- start-up markers go to every reply partition too, so replies are read from this
  run's start on (the reply reader never commits: a new DPM is a new epoch);
- an invalid input is answered with INVALID_ARG for the offending resources only (the
  others were not applied either: nothing of the message was published);
- while requests are in flight, inputs arriving within --batch-window-ms are coalesced
  into one set of messages; each caller still gets its own reply, in its stream's order;
- a multicast message waits only for the hosts that listed its states in the input and
  already followed the VPC; a host joining the VPC acknowledges them in its unicast;
- a retry is the straggler's own unicast copy (new sequence, same request id, with its
  VPCs' current state and gs-follow); a reply to it settles everything the host owed;
- on SIGTERM new calls are refused, calls in flight get up to 3 s to be answered, then
  the producer is flushed; a snapshot is memory only (callers and resyncs rebuild it).
"""
