"""The agent's own health events (start, stop, loss) as OCSF Event Log Activity.

Lost events are a fact about the log the agent produces, so they are
reported as Event Log Activity (class 1008) with a failure status and the
counters in ``unmapped``; start and stop use its Start/Stop activities.
"""

from __future__ import annotations

from typing import Any

from sentinel_edge.model import Event
from sentinel_edge.output.ocsf.common import HostInfo, base, register

ACTIVITY = {"start": 6, "stop": 7, "loss": 99, "degraded": 99}


@register("health")
def health(event: Event, host: HostInfo) -> dict[str, Any]:
    what = event.data["what"]
    obj = base(
        event, host, class_uid=1008, category_uid=1, activity_id=ACTIVITY.get(what, 99),
        status_id=2 if what in ("loss", "degraded") else 1, message=event.data.get("message"),
    )
    obj["severity_id"] = 3 if what in ("loss", "degraded") else 1
    obj["log_provider"] = "SentinelEdge"
    obj["log_name"] = "sentinel-edge"
    obj["unmapped"]["health"] = {k: v for k, v in event.data.items() if k != "message"}
    return obj
