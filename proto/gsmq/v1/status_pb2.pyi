from alcor.schema import goalstate_pb2 as _goalstate_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HostId(_message.Message):
    __slots__ = ("host_id",)
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    def __init__(self, host_id: _Optional[str] = ...) -> None: ...

class DpmStatus(_message.Message):
    __slots__ = ("strategy", "hosts", "vpcs", "resources", "requests_pending", "requests_completed", "requests_failed", "messages_published", "bytes_published", "replies_received", "resyncs_served", "retries", "unicast_messages", "multicast_messages", "invalid_requests", "dead_letters", "resync_failures", "delivery_errors", "inputs_waiting", "batches_sent", "path", "grpc_messages", "grpc_bytes", "agents_registered", "agents_dropped", "path_switches", "vpcs_on_grpc", "grpc_streams")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    VPCS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PENDING_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    BYTES_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    REPLIES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    RESYNCS_SERVED_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    UNICAST_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MULTICAST_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    INVALID_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FAILURES_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ERRORS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_WAITING_FIELD_NUMBER: _ClassVar[int]
    BATCHES_SENT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    GRPC_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    GRPC_BYTES_FIELD_NUMBER: _ClassVar[int]
    AGENTS_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    AGENTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    PATH_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    VPCS_ON_GRPC_FIELD_NUMBER: _ClassVar[int]
    GRPC_STREAMS_FIELD_NUMBER: _ClassVar[int]
    strategy: str
    hosts: int
    vpcs: int
    resources: int
    requests_pending: int
    requests_completed: int
    requests_failed: int
    messages_published: int
    bytes_published: int
    replies_received: int
    resyncs_served: int
    retries: int
    unicast_messages: int
    multicast_messages: int
    invalid_requests: int
    dead_letters: int
    resync_failures: int
    delivery_errors: int
    inputs_waiting: int
    batches_sent: int
    path: str
    grpc_messages: int
    grpc_bytes: int
    agents_registered: int
    agents_dropped: int
    path_switches: int
    vpcs_on_grpc: int
    grpc_streams: int
    def __init__(self, strategy: _Optional[str] = ..., hosts: _Optional[int] = ..., vpcs: _Optional[int] = ..., resources: _Optional[int] = ..., requests_pending: _Optional[int] = ..., requests_completed: _Optional[int] = ..., requests_failed: _Optional[int] = ..., messages_published: _Optional[int] = ..., bytes_published: _Optional[int] = ..., replies_received: _Optional[int] = ..., resyncs_served: _Optional[int] = ..., retries: _Optional[int] = ..., unicast_messages: _Optional[int] = ..., multicast_messages: _Optional[int] = ..., invalid_requests: _Optional[int] = ..., dead_letters: _Optional[int] = ..., resync_failures: _Optional[int] = ..., delivery_errors: _Optional[int] = ..., inputs_waiting: _Optional[int] = ..., batches_sent: _Optional[int] = ..., path: _Optional[str] = ..., grpc_messages: _Optional[int] = ..., grpc_bytes: _Optional[int] = ..., agents_registered: _Optional[int] = ..., agents_dropped: _Optional[int] = ..., path_switches: _Optional[int] = ..., vpcs_on_grpc: _Optional[int] = ..., grpc_streams: _Optional[int] = ...) -> None: ...

class AgentStatus(_message.Message):
    __slots__ = ("hosts", "messages_applied", "messages_other_host", "dead_lettered", "duplicates", "out_of_order", "pending", "resyncs", "flows", "followed_vpcs", "bytes_consumed", "rss_bytes", "replies_sent", "resources", "bytes_pushed", "stale_messages", "bundle_states_known")
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_OTHER_HOST_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_ORDER_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESYNCS_FIELD_NUMBER: _ClassVar[int]
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    FOLLOWED_VPCS_FIELD_NUMBER: _ClassVar[int]
    BYTES_CONSUMED_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLIES_SENT_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    BYTES_PUSHED_FIELD_NUMBER: _ClassVar[int]
    STALE_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_STATES_KNOWN_FIELD_NUMBER: _ClassVar[int]
    hosts: int
    messages_applied: int
    messages_other_host: int
    dead_lettered: int
    duplicates: int
    out_of_order: int
    pending: int
    resyncs: int
    flows: int
    followed_vpcs: _containers.RepeatedScalarFieldContainer[str]
    bytes_consumed: int
    rss_bytes: int
    replies_sent: int
    resources: int
    bytes_pushed: int
    stale_messages: int
    bundle_states_known: int
    def __init__(self, hosts: _Optional[int] = ..., messages_applied: _Optional[int] = ..., messages_other_host: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., duplicates: _Optional[int] = ..., out_of_order: _Optional[int] = ..., pending: _Optional[int] = ..., resyncs: _Optional[int] = ..., flows: _Optional[int] = ..., followed_vpcs: _Optional[_Iterable[str]] = ..., bytes_consumed: _Optional[int] = ..., rss_bytes: _Optional[int] = ..., replies_sent: _Optional[int] = ..., resources: _Optional[int] = ..., bytes_pushed: _Optional[int] = ..., stale_messages: _Optional[int] = ..., bundle_states_known: _Optional[int] = ...) -> None: ...
