"""Generated code of protobuf package `alcor.schema` (`make proto`); the `.proto` sources ship beside it."""
