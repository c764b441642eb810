"""The channels scenario's pure parts: its storms' layout, the mixed storm's order, a
multi-port set-up input, the figures it keeps, the crossover and the ratios the report states."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from alcor.schema import goalstate_pb2 as gs
from dpm_server.paths import UPPER_PORTS
from gs_bench import channels, report
from gs_bench.measure import Push, Reply, Samples, phase_figures
from gs_bench.scenarios import SUITES, Storm, resources_in


def test_the_plan_gives_each_storm_hosts_vpcs_and_ports_of_its_own() -> None:
    shape = channels.plan((10, 100), 500, 1, (20, 10, 1, 50))
    storms = [s for _, s in shape.sizes] + [shape.small, shape.large]
    assert [size for size, _ in shape.sizes] == [10, 100]
    assert [(s.hosts, len(s.layout), s.ports) for s in storms[:2]] == [(500, 50, 500), (500, 5, 500)]
    assert all(len(hosts) == size for size, s in shape.sizes for hosts in s.layout.values())  # VPCs of that size
    # the mixed region: 20 VPCs of 10 hosts, 2 ports per host, then one per light-load round (a warm-up and 3);
    # 1 VPC of 50 hosts, past auto's upper bound before its ports per host
    per_host = channels.MIXED_PORTS_PER_HOST + channels.LIGHT_ROUNDS + 1
    assert (shape.small.hosts, len(shape.small.layout), shape.small.ports) == (200, 20, 200 * per_host) and per_host == 6
    assert (shape.large.hosts, len(shape.large.layout)) == (50, 1)
    assert shape.large.ports == channels.PREFILL + 50 * per_host and channels.PREFILL > UPPER_PORTS
    # the storm's ports, then each round's: one port create per host of the region, every host once
    storm_small, storm_large = channels.mixed_ports(shape, 0, channels.MIXED_PORTS_PER_HOST)
    assert (storm_small, storm_large) == (range(400), range(channels.PREFILL, channels.PREFILL + 100))
    for round_ in range(channels.LIGHT_ROUNDS + 1):
        small, large = channels.mixed_ports(shape, channels.MIXED_PORTS_PER_HOST + round_, 1)
        assert sorted(shape.small.port(i).host for i in small) == sorted(shape.small.host_list)
        assert sorted(shape.large.port(i).host for i in large) == sorted(shape.large.host_list)
        assert small.stop <= shape.small.ports and large.stop <= shape.large.ports
    assert shape.hosts == 500 + 500 + 200 + 50 == sum(s.hosts for s in storms)
    # consecutive host ranges from FIRST_HOST, none shared; VPC ids and port ids never shared
    first = int(ipaddress.IPv4Address(channels.FIRST_HOST))
    starts = [int(ipaddress.IPv4Address(s.first_host)) - first for s in storms]
    assert starts == [0, 500, 1000, 1200]
    hosts = [h for s in storms for h in s.host_list]
    assert len(set(hosts)) == len(hosts) == shape.hosts
    vpcs = [v for s in storms for v in s.layout]
    assert len(set(vpcs)) == len(vpcs)
    ports = [s.port(i).id for s in storms for i in range(0, s.ports, 37)]
    assert len(set(ports)) == len(ports)
    assert all(s.region for s in storms)


def test_a_size_above_the_hosts_gets_one_vpc_of_that_size() -> None:
    shape = channels.plan((2, 10), 4, 2, (1, 1, 1, 1))
    assert [(size, s.hosts, len(s.layout), s.ports) for size, s in shape.sizes] == [(2, 4, 2, 8), (10, 10, 1, 20)]


def test_spread_keeps_each_lists_order_and_interleaves_them_evenly() -> None:
    a = [b"a%d" % i for i in range(6)]
    b = [b"b%d" % i for i in range(2)]
    merged = channels.spread(a, b)
    assert sorted(merged) == sorted(a + b)
    assert [m for m in merged if m.startswith(b"a")] == a and [m for m in merged if m.startswith(b"b")] == b
    assert merged == [b"a0", b"a1", b"b0", b"a2", b"a3", b"a4", b"b1", b"a5"]  # at (i + 0.5) / n, ties to the first list
    assert channels.spread([], b) == b and channels.spread(a) == a


def test_a_set_up_input_of_many_ports_lists_for_each_host_what_each_port_would() -> None:
    storm = Storm(5, 1, 12, region=True)
    batch = storm.batch(range(3, 9))
    singles = [storm.message(i) for i in range(3, 9)]
    assert set(batch.port_states) == {p for m in singles for p in m.port_states}
    assert set(batch.neighbor_states) == {n for m in singles for n in m.neighbor_states}
    for host in storm.host_list:
        expected = sorted((r.type, r.id) for m in singles if host in m.host_resources for r in m.host_resources[host].resources)
        got = sorted((r.type, r.id) for r in batch.host_resources[host].resources) if host in batch.host_resources else []
        assert got == expected
    assert resources_in(batch) == sum(storm.resources(i) for i in range(3, 9))
    assert gs.GoalStateV2.FromString(batch.SerializeToString()) == batch


def test_brief_times_every_path_on_the_callers_clock() -> None:
    ms = 1_000_000
    push = Push(sent_ns=[0, 10 * ms], reply_ns=[50 * ms, 200 * ms], failures=0, streams=2)
    counters = {"messages_published": 4, "bytes_published": 400, "unicast_messages": 3, "multicast_messages": 1}
    agents = {"bytes_consumed": 0, "messages_applied": 3}
    over_grpc = channels.brief({**phase_figures(push, Samples(), 6, counters, agents), "path": "grpc"})
    assert over_grpc["convergence_s"] == pytest.approx(0.2) and over_grpc["kafka_convergence_s"] is None
    assert over_grpc["goal_states_per_s"] == pytest.approx(10.0) and over_grpc["publish_to_applied_ms"]["count"] == 0
    replies = Samples.of([Reply(5 * ms, 7 * ms, "a"), Reply(5 * ms, 85 * ms, "b")])
    over_kafka = channels.brief({**phase_figures(push, replies, 6, counters, agents), "path": "mq"})
    assert over_kafka["convergence_s"] == pytest.approx(0.2) and over_kafka["kafka_convergence_s"] == pytest.approx(0.080)
    assert set(over_kafka) <= {*channels.BRIEF, "convergence_s", "kafka_convergence_s"}


def _point(size: int, path: str, rate: float, **extra: Any) -> dict[str, Any]:
    lat = {"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0, "count": 5 if path != "grpc" else 0}
    return {"hosts_per_vpc": size, "path": path, "inputs": 100, "convergence_s": 100 / rate, "goal_states_per_s": rate,
            "caller_reply_ms": lat, "publish_to_applied_ms": lat, "bytes_published": 1000, "kafka_bytes": 0 if path == "grpc" else 1000,
            "grpc_bytes": 1100 if path != "mq" else 0, "broker_bytes_in": 10, "broker_bytes_out": 20, "path_switches": 0,
            "vpcs_on_grpc": 0 if path == "mq" else 2, "vpcs": 2, **extra}


def test_kafka_starts_to_win_at_the_smallest_size_where_mq_is_faster() -> None:
    points = [_point(10, "grpc", 500.0), _point(10, "mq", 400.0), _point(10, "auto", 480.0),
              _point(1000, "grpc", 100.0), _point(1000, "mq", 300.0), _point(100, "mq", 250.0), _point(100, "grpc", 200.0)]
    assert report.mq_vs_grpc(points) == {10: 0.8, 100: 1.25, 1000: 3.0}
    assert list(report.mq_vs_grpc(points)) == [10, 100, 1000]  # by size, whatever the order measured
    assert report.kafka_wins_from(points) == 100
    assert report.kafka_wins_from([p for p in points if p["hosts_per_vpc"] == 10]) is None  # grpc ahead: none measured
    assert report.kafka_wins_from([_point(10, "mq", 400.0)]) is None  # a size on one path only is no comparison
    assert report.kafka_wins_from([_point(10, "grpc", 400.0), _point(10, "mq", 400.0)]) is None  # a tie is no win


def test_the_mixed_region_is_stated_as_auto_over_each_fixed_path() -> None:
    runs = [_point(0, "grpc", 400.0), _point(0, "mq", 500.0), _point(0, "auto", 450.0)]
    assert report.mixed_ratios(runs) == {"auto_vs_grpc": 1.125, "auto_vs_mq": 0.9, "auto_beats_both": False}
    runs[2]["goal_states_per_s"] = 600.0
    assert report.mixed_ratios(runs) == {"auto_vs_grpc": 1.5, "auto_vs_mq": 1.2, "auto_beats_both": True}
    assert report.mixed_ratios(runs[:2]) == {"auto_vs_grpc": None, "auto_vs_mq": None, "auto_beats_both": None}
    assert report.mixed_ratios([]) == {"auto_vs_grpc": None, "auto_vs_mq": None, "auto_beats_both": None}


def test_the_channels_table_has_a_row_per_size_and_path_then_the_mixed_region() -> None:
    ch: dict[str, Any] = {"hosts": 500, "ports_per_host": 1,
          "mixed_shape": {"small_vpcs": 20, "small_hosts": 10, "large_vpcs": 1, "large_hosts": 50, "prefill_ports": 1100,
                          "ports_per_host": 2},
          "points": [_point(100, "grpc", 200.0), _point(10, "mq", 400.0), _point(10, "grpc", 500.0), _point(100, "mq", 250.0)],
          "mixed": [_point(0, "grpc", 400.0), _point(0, "mq", 500.0), _point(0, "auto", 450.0, path_switches=1, setup_retries=47)]}
    rows = report.channel_rows(ch)
    assert [r[:2] for r in rows] == [["10", "grpc"], ["10", "mq"], ["100", "grpc"], ["100", "mq"], ["mixed", "grpc"],
                                     ["mixed", "mq"], ["mixed", "auto"]]
    assert all(len(r) == len(report.CHANNEL_COLUMNS) for r in rows)
    assert rows[0][6] == "-" and rows[1][6] == "3.0"  # publish->applied only where Kafka carried something
    assert rows[-1][-1] == "47 / 0" and rows[0][-1] == "0 / 0"  # straggler retries: set-up / storm
    verdicts = dict(report.channel_verdicts(ch))
    assert verdicts["channels: size where Kafka starts to win (mq goal states/s > grpc's)"] == "100 hosts per VPC"
    assert verdicts["channels: mq / grpc goal states/s per VPC size"] == "10 hosts per VPC 0.80x, 100 hosts per VPC 1.25x"
    mixed = verdicts["channels: mixed region (20 VPCs of 10 hosts + 1 of 50 hosts with 1,100 ports set up)"]
    assert mixed == "goal states/s: grpc 400, mq 500, auto 450; auto / grpc 1.12x; auto / mq 0.90x; auto beats both: no"
    text = report.channels_text(ch)
    assert len(text) == 1 + 1 + len(rows) + 3 and all(c in text[1] for c in ("goal states/s", "Kafka bytes (B)", "gRPC bytes (B)"))
    column = text[1].index("path")  # columns aligned under their headers
    assert all(line[column:].startswith(("grpc", "mq", "auto")) for line in text[2:2 + len(rows)])
    results = {"channels": ch}
    ratios = report.ratios(results)
    assert ratios["channels_auto_vs_grpc"] == pytest.approx(1.125) and ratios["channels_auto_vs_mq"] == pytest.approx(0.9)
    assert all(" / " in report.RATIO_TEXT[k] for k in ("channels_auto_vs_grpc", "channels_auto_vs_mq"))
    wins = "channels: size where Kafka starts to win (mq goal states/s > grpc's)"
    ch["points"] = [p for p in ch["points"] if p["hosts_per_vpc"] == 10]
    assert dict(report.channel_verdicts(ch))[wins] == "none measured (mq at or below grpc at 10 hosts per VPC)"
    ch["points"] = [p for p in ch["points"] if p["path"] == "grpc"]
    assert dict(report.channel_verdicts(ch))[wins] == "none measured (no size measured on both grpc and mq)"


def test_suites_place_the_channels_scenario() -> None:
    default, tiny, scale = SUITES["default"], SUITES["tiny"], SUITES["scale"]
    assert "channels" in default.scenarios and "channels" in tiny.scenarios and "channels" in scale.scenarios
    assert scale.channels == (10, 100, 1000, 10_000) and scale.channels_hosts >= max(scale.channels)
    assert len(default.channels) >= 2 and len(tiny.channels) >= 2
    assert tiny.channels_hosts * tiny.channels_ports_per_host <= 20
