"""`make bench`: the goal-state path measured end to end, beside the raw Kafka ceiling and the gRPC fast path."""
