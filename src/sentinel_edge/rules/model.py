"""What rules are and what they produce: rule metadata and alerts.

The detection stage turns an enriched :class:`~sentinel_edge.model.Event`
into zero or more :class:`Alert` objects; the alert stage (``alerts``) maps
them to OCSF Detection Findings (class 2004) and writes them to sinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentinel_edge.model import Event

SEVERITIES = ("info", "low", "medium", "high", "critical")
# OCSF severity_id for each severity name
SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


@dataclass(frozen=True, slots=True)
class Attack:
    """One ATT&CK mapping: technique id (``T1059`` or ``T1059.004``) and tactic short name."""

    technique: str
    tactic: str


#: response actions a rule can name (run by :mod:`sentinel_edge.enforce.actions`)
ACTION_KINDS = ("kill", "kill_group", "block_address", "quarantine")


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One response action named by a rule's ``actions:`` list.

    ``ttl_s`` is only for ``block_address`` (None: the configured default).
    ``file``/``line``/``col`` locate the entry in the rule file, for messages.
    """

    kind: str                          # one of ACTION_KINDS
    ttl_s: float | None = None
    file: str = ""
    line: int = 0
    col: int = 0


@dataclass(frozen=True, slots=True)
class RuleMeta:
    """Everything about a rule except how it matches."""

    id: str
    title: str
    severity: str                      # one of SEVERITIES
    description: str = ""
    attack: tuple[Attack, ...] = ()
    tags: tuple[str, ...] = ()
    output: str = ""                   # template with {field} placeholders
    source: str = "native"             # native | sigma
    file: str = ""                     # where it was defined
    line: int = 0
    kind: str = "match"                # match | sequence | threshold
    actions: tuple[ActionSpec, ...] = ()   # response actions, run in this order


@dataclass(slots=True)
class Alert:
    """One rule firing.

    ``events`` are the triggering events, oldest first (one for a simple
    rule; the matched steps of a sequence; the events counted by a threshold,
    capped). ``message`` is the rendered ``output`` template (the title when
    there is none). ``count`` grows when identical alerts fold together.
    """

    rule: RuleMeta
    events: list[Event]
    message: str
    time_ns: int                       # wall-clock ns when the alert was raised
    count: int = 1
    first_ns: int = 0                  # wall-clock ns of the first folded alert (0 = time_ns)
    data: dict[str, Any] = field(default_factory=dict)  # rule-kind specifics (threshold count, sequence key)

    @property
    def event(self) -> Event:
        """The event that completed the match (the last one)."""
        return self.events[-1]
