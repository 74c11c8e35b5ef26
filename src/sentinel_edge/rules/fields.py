"""The field table: every name a condition can use, and how to read it from an Event.

Contract used by the compiler (``rules.compiler``), Sigma (``rules.sigma``)
and output templates:

- ``FIELDS[name]`` is a :class:`FieldSpec`; ``lookup(name)`` raises KeyError
  with a suggestion, ``suggest(name)`` returns the closest known name or None.
- ``spec.get(event)`` returns the value or None when the event has none.
  Values are ``str``, ``int``, ``bool`` or ``list`` of those (never bytes:
  raw kernel bytes are decoded with surrogateescape-free replacement, the
  same text the OCSF output shows).
- ``spec.kinds`` is the set of event kinds the field can have a value for
  (None: every kind); the engine indexes rules with it.
- ``spec.get_index(event, n)`` exists for the ``[N]`` forms (``proc.aname[2]``).

The table is documented in docs/rules.md (section Fields); a test checks the
two agree.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sentinel_edge.model import Event


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: str                                  # str | int | bool | list[str] | list[int]
    get: Callable[[Event], Any]
    kinds: frozenset[str] | None = None        # None: every event kind
    get_index: Callable[[Event, int], Any] | None = None
    doc: str = ""


FIELDS: dict[str, FieldSpec] = {}


def _add(spec: FieldSpec) -> None:
    FIELDS[spec.name] = spec


def suggest(name: str) -> str | None:
    hits = difflib.get_close_matches(name, list(FIELDS), n=1, cutoff=0.75)
    return hits[0] if hits else None


def lookup(name: str) -> FieldSpec:
    try:
        return FIELDS[name]
    except KeyError:
        hint = suggest(name)
        raise KeyError(f"unknown field '{name}'" + (f" (did you mean '{hint}'?)" if hint else "")) from None


# A first handful; rules/fields.py is completed with the whole table of docs/rules.md.
_add(FieldSpec("event.kind", "str", lambda e: e.kind))
_add(FieldSpec("proc.name", "str", lambda e: e.process.comm if e.process else e.proc["comm"].decode(errors="replace")))
_add(FieldSpec("proc.exe", "str", lambda e: e.process.exe if e.process else None))
