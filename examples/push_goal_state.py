"""Push one goal state (a subnet and a port on one host) to a DPM and print its reply.

    python examples/push_goal_state.py DPM_ADDRESS HOST_ID [REVISION]   # exit 0 when every resource is SUCCESS
"""

import sys
import time
from typing import Any

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alcor.schema import common_pb2, goalstate_pb2, goalstateprovisioner_pb2_grpc, port_pb2, subnet_pb2

dpm, host = sys.argv[1], sys.argv[2]
revision = int(sys.argv[3]) if len(sys.argv) > 3 else 1  # a higher revision updates both
subnet = subnet_pb2.SubnetConfiguration(revision_number=revision, id="subnet-1", vpc_id="vpc-1", cidr="10.0.0.0/24", tunnel_id=1001)
port = port_pb2.PortConfiguration(revision_number=revision, id=f"port-{host}", vpc_id="vpc-1", mac_address="fa:16:3e:00:00:01",
                                  host_info=port_pb2.PortConfiguration.HostInfo(ip_address=host),
                                  fixed_ips=[port_pb2.PortConfiguration.FixedIp(subnet_id=subnet.id, ip_address="10.0.0.5")])
goal = goalstate_pb2.GoalStateV2(format_version=1)
goal.subnet_states[subnet.id].CopyFrom(subnet_pb2.SubnetState(operation_type=common_pb2.CREATE, configuration=subnet))
goal.port_states[port.id].CopyFrom(port_pb2.PortState(operation_type=common_pb2.CREATE, configuration=port))
goal.host_resources[host].resources.add(type=common_pb2.SUBNET, id=subnet.id)  # what the host must hold
goal.host_resources[host].resources.add(type=common_pb2.PORT, id=port.id)
with grpc.insecure_channel(dpm) as channel:  # one reply per goal state, once the host applied it (or FAILURE)
    health: Any = health_pb2_grpc.HealthStub(channel)  # the DPM is SERVING once its state is loaded
    while health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=60).status != health_pb2.HealthCheckResponse.SERVING:
        time.sleep(0.2)
    stub = goalstateprovisioner_pb2_grpc.GoalStateProvisionerStub(channel)
    [reply] = stub.PushGoalStatesStream(iter([goal]), timeout=60)
print(json_format.MessageToJson(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=1))
sys.exit(0 if all(s.operation_status == common_pb2.SUCCESS for s in reply.operation_statuses) else 1)
