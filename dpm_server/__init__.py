"""The Data Plane Manager of the message-queue path: goal states in, per-host and per-VPC
Kafka messages out, host replies tracked until every targeted host applied.

Data flows through: `service` (gRPC callers) -> `validate` -> `snapshot` (desired state
per host, resources stored once) -> `planner` (what goes on which channel, which
replies to wait for) -> `publisher` (Kafka, sequences, follow offsets) ; `acks` matches
host replies to requests, retries stragglers and answers callers. `main` wires it all.
"""
