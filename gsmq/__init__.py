"""Shared pieces of the goal-state message-queue path: broker, Kafka settings, wire conventions."""
