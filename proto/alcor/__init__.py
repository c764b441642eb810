"""Alcor's protobuf API (package `alcor.schema`), generated from `proto/alcor/schema/*.proto`."""
