"""OCSF mapping: one module per OCSF class family, registered by event kind."""

from __future__ import annotations

from typing import Any

from sentinel_edge.errors import OutputError
from sentinel_edge.model import Event
from sentinel_edge.output.ocsf import enforce as _enforce  # noqa: F401  (registers mappers)
from sentinel_edge.output.ocsf import file as _file  # noqa: F401
from sentinel_edge.output.ocsf import health as _health  # noqa: F401
from sentinel_edge.output.ocsf import kernel as _kernel  # noqa: F401
from sentinel_edge.output.ocsf import memory as _memory  # noqa: F401
from sentinel_edge.output.ocsf import netinspect as _netinspect  # noqa: F401
from sentinel_edge.output.ocsf import network as _network  # noqa: F401
from sentinel_edge.output.ocsf import privilege as _privilege  # noqa: F401
from sentinel_edge.output.ocsf import process as _process  # noqa: F401
from sentinel_edge.output.ocsf.common import OCSF_VERSION, HostInfo, mapper_for

__all__ = ["OCSF_VERSION", "HostInfo", "to_ocsf"]


def to_ocsf(event: Event, host: HostInfo) -> dict[str, Any]:
    """Map one enriched event to its OCSF object."""
    fn = mapper_for(event.kind)
    if fn is None:
        raise OutputError(f"no OCSF mapping for event kind {event.kind!r}")
    return fn(event, host)
