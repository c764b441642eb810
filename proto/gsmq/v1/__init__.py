"""Generated code of protobuf package `gsmq.v1`, our own status services (`make proto`)."""
