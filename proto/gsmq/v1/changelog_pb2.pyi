from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DesiredResource(_message.Message):
    __slots__ = ("piece", "vpc_id", "host_ids", "host_chunks")
    PIECE_FIELD_NUMBER: _ClassVar[int]
    VPC_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_IDS_FIELD_NUMBER: _ClassVar[int]
    HOST_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    piece: bytes
    vpc_id: str
    host_ids: _containers.RepeatedScalarFieldContainer[str]
    host_chunks: int
    def __init__(self, piece: _Optional[bytes] = ..., vpc_id: _Optional[str] = ..., host_ids: _Optional[_Iterable[str]] = ..., host_chunks: _Optional[int] = ...) -> None: ...
