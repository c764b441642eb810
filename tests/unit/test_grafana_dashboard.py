"""The ready Grafana dashboard (docs/grafana) asks only for metrics the daemons export."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def exported() -> set[str]:
    """Every metric family name the two metrics modules declare (PREFIX substituted)."""
    names = set()
    for module, prefix in (("dpm_server/metrics.py", "gsmq_dpm"), ("aca_agent/metrics.py", "gsmq_aca")):
        names |= {prefix + rest for rest in re.findall(r'f"\{PREFIX\}(_[a-z_]+)"', (ROOT / module).read_text())}
    return names


def test_every_metric_the_dashboard_plots_is_exported() -> None:
    dashboard = json.loads((ROOT / "docs/grafana/gsmq-dashboard.json").read_text())
    asked = {re.sub(r"_(total|bucket|count|sum)$", "", name)
             for panel in dashboard["panels"] for target in panel["targets"] for name in re.findall(r"gsmq_[a-z_]+", target["expr"])}
    assert asked and asked <= exported(), asked - exported()
