from gsmq.v1 import ack_pb2 as _ack_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChannelHeaders(_message.Message):
    __slots__ = ("channel_headers",)
    class ChannelHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHANNEL_HEADERS_FIELD_NUMBER: _ClassVar[int]
    channel_headers: _containers.ScalarMap[str, str]
    def __init__(self, channel_headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ChannelBatch(_message.Message):
    __slots__ = ("channel_messages",)
    CHANNEL_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    channel_messages: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, channel_messages: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ChannelAcks(_message.Message):
    __slots__ = ("channel_acks",)
    CHANNEL_ACKS_FIELD_NUMBER: _ClassVar[int]
    channel_acks: _containers.RepeatedCompositeFieldContainer[_ack_pb2.Ack]
    def __init__(self, channel_acks: _Optional[_Iterable[_Union[_ack_pb2.Ack, _Mapping]]] = ...) -> None: ...

class HostRange(_message.Message):
    __slots__ = ("first_host", "count")
    FIRST_HOST_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    first_host: str
    count: int
    def __init__(self, first_host: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Registration(_message.Message):
    __slots__ = ("address", "hosts", "agent", "takes_batches", "stream_per_host")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TAKES_BATCHES_FIELD_NUMBER: _ClassVar[int]
    STREAM_PER_HOST_FIELD_NUMBER: _ClassVar[int]
    address: str
    hosts: _containers.RepeatedCompositeFieldContainer[HostRange]
    agent: str
    takes_batches: bool
    stream_per_host: bool
    def __init__(self, address: _Optional[str] = ..., hosts: _Optional[_Iterable[_Union[HostRange, _Mapping]]] = ..., agent: _Optional[str] = ..., takes_batches: _Optional[bool] = ..., stream_per_host: _Optional[bool] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("hosts", "path")
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    hosts: int
    path: str
    def __init__(self, hosts: _Optional[int] = ..., path: _Optional[str] = ...) -> None: ...
