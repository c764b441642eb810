from alcor.schema import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ack(_message.Message):
    __slots__ = ("host_id", "epoch", "unicast_seq", "vpcs", "failures", "timing", "unicast_seen")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    UNICAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    VPCS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    UNICAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    epoch: str
    unicast_seq: int
    vpcs: _containers.RepeatedCompositeFieldContainer[VpcProgress]
    failures: _containers.RepeatedCompositeFieldContainer[Failure]
    timing: Timing
    unicast_seen: int
    def __init__(self, host_id: _Optional[str] = ..., epoch: _Optional[str] = ..., unicast_seq: _Optional[int] = ..., vpcs: _Optional[_Iterable[_Union[VpcProgress, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[Failure, _Mapping]]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., unicast_seen: _Optional[int] = ...) -> None: ...

class VpcProgress(_message.Message):
    __slots__ = ("vpc_id", "epoch", "seq", "seen")
    VPC_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SEEN_FIELD_NUMBER: _ClassVar[int]
    vpc_id: str
    epoch: str
    seq: int
    seen: int
    def __init__(self, vpc_id: _Optional[str] = ..., epoch: _Optional[str] = ..., seq: _Optional[int] = ..., seen: _Optional[int] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("vpc_id", "seq", "resource_type", "resource_id", "operation_type", "status")
    VPC_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    vpc_id: str
    seq: int
    resource_type: _common_pb2.ResourceType
    resource_id: str
    operation_type: _common_pb2.OperationType
    status: _common_pb2.OperationStatus
    def __init__(self, vpc_id: _Optional[str] = ..., seq: _Optional[int] = ..., resource_type: _Optional[_Union[_common_pb2.ResourceType, str]] = ..., resource_id: _Optional[str] = ..., operation_type: _Optional[_Union[_common_pb2.OperationType, str]] = ..., status: _Optional[_Union[_common_pb2.OperationStatus, str]] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("messages", "resources", "apply_us", "max_dataplane_us", "max_config_us", "max_elapse_us", "last_applied_ns", "elapse_buckets")
    class ElapseBucketsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    APPLY_US_FIELD_NUMBER: _ClassVar[int]
    MAX_DATAPLANE_US_FIELD_NUMBER: _ClassVar[int]
    MAX_CONFIG_US_FIELD_NUMBER: _ClassVar[int]
    MAX_ELAPSE_US_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLIED_NS_FIELD_NUMBER: _ClassVar[int]
    ELAPSE_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    messages: int
    resources: int
    apply_us: int
    max_dataplane_us: int
    max_config_us: int
    max_elapse_us: int
    last_applied_ns: int
    elapse_buckets: _containers.ScalarMap[int, int]
    def __init__(self, messages: _Optional[int] = ..., resources: _Optional[int] = ..., apply_us: _Optional[int] = ..., max_dataplane_us: _Optional[int] = ..., max_config_us: _Optional[int] = ..., max_elapse_us: _Optional[int] = ..., last_applied_ns: _Optional[int] = ..., elapse_buckets: _Optional[_Mapping[int, int]] = ...) -> None: ...
