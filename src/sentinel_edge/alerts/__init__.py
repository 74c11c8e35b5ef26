"""Alerts: OCSF Detection Findings (class 2004) written to files, stdout, syslog and webhooks.

    Engine.evaluate -> [Alert] -> AlertOutput.emit -> to_finding -> sinks

See docs/alerts.md.
"""

from __future__ import annotations

from sentinel_edge.alerts.config import AlertsConfig, alerts_config_from_dict
from sentinel_edge.alerts.ocsf import to_finding
from sentinel_edge.alerts.output import AlertOutput, fold_key

__all__ = ["AlertOutput", "AlertsConfig", "alerts_config_from_dict", "fold_key", "to_finding"]
