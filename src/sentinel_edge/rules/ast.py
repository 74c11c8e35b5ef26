"""The condition tree shared by every rule front end.

Native YAML rules (``rules.lang``) and Sigma rules (``rules.sigma``) both
produce these nodes; ``rules.compiler`` turns one tree into a Python callable.
Nodes are frozen so a compiled rule set can be shared and hashed.

A ``Field`` names one entry of the field table (``rules.fields``); a value
is a literal (str, int, float, bool) or a ``Field`` (field-to-field
comparison, e.g. ``proc.exe = parent.exe``) or a ``Call`` (a function applied
to a field, e.g. ``lower(proc.name)``).

``Pos`` is where the node came from (file, line, column; 1-based), for
errors found after parsing (an unknown field, a type mismatch).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pos:
    file: str = "<string>"
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Field:
    """A field reference: ``proc.name``, ``proc.aname[2]`` (index is None when absent)."""

    name: str
    index: int | None = None
    pos: Pos = Pos()


@dataclass(frozen=True, slots=True)
class Call:
    """A function of one operand: lower, upper, basename, dirname, len, entropy, b64decode."""

    func: str
    arg: Operand
    pos: Pos = Pos()


Literal = str | int | float | bool
Operand = Field | Call | Literal

# binary operators (``Compare.op``)
OPS = (
    "=", "!=", "<", "<=", ">", ">=",
    "in",            # value is a tuple of literals
    "startswith", "endswith", "contains",
    "istartswith", "iendswith", "icontains", "iequals",  # case-insensitive
    "glob",          # fnmatch-style, case-sensitive: *, ?, [...]
    "regex",         # Python re, search semantics
    "cidr",          # value: a tuple of networks ("10.0.0.0/8", "::1/128")
    "bitand",        # (field & value) != 0
)


@dataclass(frozen=True, slots=True)
class Compare:
    """``left OP value``. For ``in``/``cidr`` (and any op given several values
    by Sigma) ``value`` is a tuple and the test is true when one element matches.
    When ``left`` yields a list (``proc.aname``, ``proc.args``) the test is true
    when any element matches."""

    left: Operand
    op: str
    value: Operand | tuple[Literal, ...]
    pos: Pos = Pos()


@dataclass(frozen=True, slots=True)
class Exists:
    """``field exists``: the field has a value (not None / not absent) for this event."""

    field: Field
    pos: Pos = Pos()


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class Const:
    """Always true or always false (an empty ``in ()``, a Sigma ``1 of`` nothing)."""

    value: bool


Node = Compare | Exists | And | Or | Not | Const
