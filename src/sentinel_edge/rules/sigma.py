"""Sigma rules (SigmaHQ format) compiled into the same matcher as native rules.

pySigma parses each file (YAML, modifiers, the condition grammar, filters);
this module walks pySigma's parsed condition tree and its typed values
(``SigmaString`` with wildcards, ``SigmaRegularExpression``,
``SigmaCIDRExpression``, ``SigmaExpansion`` for windash/base64offset, ...)
and builds a condition tree of ``rules.ast`` nodes, which
``rules.compiler.compile_condition`` turns into a Python callable exactly like
a native rule's condition. No query language sits in between.

The log source decides which events a rule can see (``_CATEGORIES``: process
creation is an exec, a file event an open for writing, ...) and which Sigma
field names exist (``_COMMON_FIELDS`` plus the category's own). A rule that
cannot be expressed faithfully is skipped with its file and the reason, never
silently dropped. docs/sigma.md documents the mapping.

Public API: :func:`load_sigma` and :func:`import_sigma_main`
(``sentinel-edge rules import-sigma DIR``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.modifiers import (
    SigmaBase64Modifier,
    SigmaBase64OffsetModifier,
    SigmaExpandModifier,
    SigmaModifier,
    SigmaTimestampModifier,
    SigmaUTF16BEModifier,
    SigmaUTF16Modifier,
    SigmaWideModifier,
    reverse_modifier_mapping,
)
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.rule.attributes import SigmaStatus
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from sentinel_edge.errors import RuleError
from sentinel_edge.rules.ast import And, Call, Compare, Const, Exists, Field, Literal, Node, Not, Or, Pos
from sentinel_edge.rules.compiler import CompiledRule, compile_condition, compile_template, kinds_of
from sentinel_edge.rules.model import Attack, RuleMeta

__all__ = ["SigmaLoad", "import_sigma_main", "load_sigma"]

ID_PREFIX = "sigma."
SUFFIXES = (".yml", ".yaml")


@dataclass(slots=True)
class SigmaLoad:
    """Compiled Sigma rules, and every rule (or file) that was not loaded: ``(file, reason)``."""

    rules: list[CompiledRule] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)  # rule id -> Sigma logsource category


class _Unsupported(Exception):
    """A rule uses something SentinelEdge cannot express; the message is the reason shown to the user."""


# --------------------------------------------------------------------------------------------------
# the mapping: Sigma log sources and field names -> SentinelEdge events and fields
# --------------------------------------------------------------------------------------------------

def _f(name: str) -> Field:
    return Field(name)


def _eq(name: str, value: Literal) -> Compare:
    return Compare(Field(name), "=", value)


def _in(name: str, *values: Literal) -> Compare:
    return Compare(Field(name), "in", tuple(values))


_SUCCESS = _eq("event.success", True)
# A network connection in Sysmon's sense: an IP socket that connected (outbound: a blocking connect
# that succeeded, the completion of a non-blocking one, a UDP datagram to an explicit address) or
# that was accepted (inbound). A connect still in progress is not a success, so one connection never
# matches twice (connect -EINPROGRESS, then connect_done).
_OUTBOUND = _in("event.op", "connect", "connect_done", "sendto")
_INBOUND = _eq("event.op", "accept")


@dataclass(frozen=True, slots=True)
class _Target:
    """What one Sigma field name means for one category.

    ``field``: a SentinelEdge field of type ``kind`` (str, int, ip, bool).
    ``directed``: (field when the event is outbound, field when inbound) for the Sysmon network fields,
    whose Source/Destination follow the connection, not the local/remote side.
    ``special``: a field that is a fact about the event (``initiated``, ``ipv6``).
    ``missing``: why the field is not available (the rule is skipped with this reason).
    """

    field: str | None = None
    kind: str = "str"
    directed: tuple[str, str] | None = None
    special: str | None = None
    missing: str | None = None


_PE = "a Windows PE version-resource field; Linux executables carry none"

# Fields every category has: every SentinelEdge event carries its process, parent and user.
_COMMON_FIELDS: dict[str, _Target] = {
    "Image": _Target("proc.exe"),
    "CommandLine": _Target("proc.cmdline"),
    "CurrentDirectory": _Target("proc.cwd"),
    "ProcessId": _Target("proc.pid", "int"),
    "ParentImage": _Target("parent.exe"),
    "ParentCommandLine": _Target("parent.cmdline"),
    "ParentProcessId": _Target("proc.ppid", "int"),
    "User": _Target("user.name"),
    # Sysmon for Linux fills LogonId from the audit login uid
    "LogonId": _Target("user.loginuid", "int"),
    "OriginalFileName": _Target(missing=_PE),
    "Product": _Target(missing=_PE),
    "Company": _Target(missing=_PE),
    "Description": _Target(missing=_PE),
    "FileVersion": _Target(missing=_PE),
    "Hashes": _Target(missing="SentinelEdge does not hash executables"),
    "md5": _Target(missing="SentinelEdge does not hash executables"),
    "sha1": _Target(missing="SentinelEdge does not hash executables"),
    "sha256": _Target(missing="SentinelEdge does not hash executables"),
    "Imphash": _Target(missing="SentinelEdge does not hash executables"),
    "IntegrityLevel": _Target(missing="Windows integrity levels do not exist on Linux"),
    "ParentUser": _Target(missing="the parent's user is not a SentinelEdge field (only the process's own)"),
    "ProcessGuid": _Target(missing="Sysmon process GUIDs do not exist here (SentinelEdge has proc.exec_id)"),
    "ParentProcessGuid": _Target(missing="Sysmon process GUIDs do not exist here (SentinelEdge has proc.exec_id)"),
    "LogonGuid": _Target(missing="Sysmon logon GUIDs do not exist here"),
    "TerminalSessionId": _Target(missing="no terminal session id field (see proc.tty)"),
    "UtcTime": _Target(missing="matching on the event time is not supported"),
}

_NO_DNS = "SentinelEdge sees sockets, not host names (no DNS resolution of connection endpoints)"

_NET_FIELDS: dict[str, _Target] = {
    "DestinationIp": _Target(kind="ip", directed=("net.remote_ip", "net.local_ip")),
    "DestinationPort": _Target(kind="int", directed=("net.remote_port", "net.local_port")),
    "SourceIp": _Target(kind="ip", directed=("net.local_ip", "net.remote_ip")),
    "SourcePort": _Target(kind="int", directed=("net.local_port", "net.remote_port")),
    "Protocol": _Target("net.proto"),
    "Initiated": _Target(special="initiated"),
    "DestinationIsIpv6": _Target(special="ipv6"),
    "SourceIsIpv6": _Target(special="ipv6"),
    "DestinationHostname": _Target(missing=_NO_DNS),
    "SourceHostname": _Target(missing=_NO_DNS),
    "DestinationPortName": _Target(missing="port service names are not resolved (use DestinationPort)"),
    "SourcePortName": _Target(missing="port service names are not resolved (use SourcePort)"),
}

_FILE_FIELDS: dict[str, _Target] = {
    "TargetFilename": _Target("file.path"),
    "CreationUtcTime": _Target(missing="file creation times are not recorded"),
    "PreviousCreationUtcTime": _Target(missing="file creation times are not recorded"),
}

_RENAME_FIELDS: dict[str, _Target] = {
    "SourceFilename": _Target("file.path"),
    "TargetFilename": _Target("file.new_path"),
}


@dataclass(frozen=True, slots=True)
class _Category:
    base: Node                        # the events this category is made of
    fields: dict[str, _Target]        # its own field names, on top of _COMMON_FIELDS
    keywords: tuple[str, ...]         # where a field-less (keyword) value is searched
    output: str                       # alert message template after the title


_PROC_OUT = "proc={proc.exe} cmd={proc.cmdline} pid={proc.pid} parent={parent.exe} user={user.name}"
_FILE_OUT = "file={file.path} proc={proc.exe} cmd={proc.cmdline} pid={proc.pid} user={user.name}"


def _file_category(ops: tuple[str, ...], extra: Node | None = None,
                   fields: dict[str, _Target] | None = None) -> _Category:
    items: list[Node] = [_eq("event.kind", "file"), _in("event.op", *ops), _SUCCESS]
    if extra is not None:
        items.append(extra)
    keywords = ("file.path", "file.new_path", "proc.exe", "proc.cmdline") if "rename" in ops else \
        ("file.path", "proc.exe", "proc.cmdline")
    out = _FILE_OUT.replace("{file.path}", "{file.path} -> {file.new_path}") if "rename" in ops else _FILE_OUT
    return _Category(And(tuple(items)), fields if fields is not None else _FILE_FIELDS, keywords, out)


_CATEGORIES: dict[str, _Category] = {
    "process_creation": _Category(_eq("event.kind", "exec"), {}, ("proc.cmdline", "proc.exe"), _PROC_OUT),
    # Sysmon FileCreate: a file created or overwritten -> an open that may write (O_CREAT/O_TRUNC/write)
    "file_event": _file_category(("open",), _eq("file.is_write", True)),
    "file_create": _file_category(("open",), _eq("file.is_create", True)),
    "file_delete": _file_category(("unlink", "rmdir")),
    "file_rename": _file_category(("rename",), fields=_RENAME_FIELDS),
    # Sysmon "file creation time changed" -> utimes (touch -t, timestomping)
    "file_change": _file_category(("utimes",)),
    "file_access": _file_category(("open",)),
    "network_connection": _Category(
        And((_eq("event.kind", "net"), _in("net.family", "inet", "inet6"), _SUCCESS,
             Or((_OUTBOUND, _INBOUND)))),
        _NET_FIELDS, ("proc.exe", "proc.cmdline", "net.remote_ip"),
        "{net.local_ip}:{net.local_port} <-> {net.remote_ip}:{net.remote_port} proc={proc.exe} "
        "cmd={proc.cmdline} pid={proc.pid} user={user.name}"),
}

_SERVICE_REASON = ("logsource service '{}' is a log file or audit stream; SentinelEdge observes events with "
                   "eBPF (supported categories: " + ", ".join(_CATEGORIES) + ")")

_LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}

# modifiers pySigma parses that have no meaning for Linux events
_UNSUPPORTED_MODIFIERS: dict[type[Any], str] = {
    SigmaWideModifier: "UTF-16 text (wide) does not occur in Linux command lines or paths",
    SigmaUTF16Modifier: "UTF-16 text does not occur in Linux command lines or paths",
    SigmaUTF16BEModifier: "UTF-16 text does not occur in Linux command lines or paths",
    SigmaExpandModifier: "placeholders (%name%) need values from a processing pipeline; SentinelEdge has none "
                         "for Sigma (write the values into the rule, or use a native rule with a list)",
}
_TIMESTAMP_REASON = "matching on parts of the event time is not supported"


# --------------------------------------------------------------------------------------------------
# values -> condition nodes
# --------------------------------------------------------------------------------------------------

_STR_OPS = {  # (leading *, trailing *) -> (case-insensitive op, case-sensitive op)
    (False, False): ("iequals", "="),
    (True, True): ("icontains", "contains"),
    (True, False): ("iendswith", "endswith"),
    (False, True): ("istartswith", "startswith"),
}


def _pattern_regex(parts: Sequence[str | SpecialChars], cased: bool) -> str:
    """A whole-value regex for a string with wildcards in the middle."""
    body = "".join(
        re.escape(p) if isinstance(p, str) else (".*" if p is SpecialChars.WILDCARD_MULTI else ".")
        for p in parts)
    return ("(?s)" if cased else "(?is)") + r"\A" + body + r"\Z"


def _string_parts(value: SigmaString) -> list[str | SpecialChars]:
    parts: list[str | SpecialChars] = []
    for p in value.s:
        if isinstance(p, Placeholder):
            raise _Unsupported(f"placeholder %{p.name}% needs the expand modifier's pipeline (not supported)")
        if parts and isinstance(p, str) and isinstance(parts[-1], str):
            parts[-1] += p
        else:
            parts.append(p)
    return parts


def _string_node(left: Field, value: SigmaString, cased: bool) -> Node:
    """``left`` matched against a Sigma string: equality, prefix, suffix, substring or a wildcard pattern."""
    parts = _string_parts(value)
    lead = bool(parts) and parts[0] is SpecialChars.WILDCARD_MULTI
    while parts and parts[0] is SpecialChars.WILDCARD_MULTI:
        parts.pop(0)
    trail = bool(parts) and parts[-1] is SpecialChars.WILDCARD_MULTI
    while parts and parts[-1] is SpecialChars.WILDCARD_MULTI:
        parts.pop()
    if not parts:
        # '' matches the empty value; '*' matches any value
        return Exists(left) if lead else Compare(left, "=", "")
    if len(parts) == 1 and isinstance(parts[0], str):
        op_i, op_c = _STR_OPS[(lead, trail)]
        return Compare(left, op_c if cased else op_i, parts[0])
    if lead:
        parts.insert(0, SpecialChars.WILDCARD_MULTI)
    if trail:
        parts.append(SpecialChars.WILDCARD_MULTI)
    return Compare(left, "regex", _pattern_regex(parts, cased))


_RE_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: "i",
    SigmaRegularExpressionFlag.MULTILINE: "m",
    SigmaRegularExpressionFlag.DOTALL: "s",
}
_LEADING_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")


def _regex_text(value: SigmaRegularExpression) -> str:
    """The Python pattern of a Sigma ``re`` value with its i/m/s sub-modifiers as inline flags."""
    if value.regexp.contains_placeholder():
        raise _Unsupported("placeholders in a regular expression need the expand modifier's pipeline")
    pattern = str(value.regexp)
    flags = "".join(sorted(_RE_FLAGS[f] for f in value.flags))
    if flags:
        m = _LEADING_FLAGS.match(pattern)
        if m:  # the pattern has its own global flags: merge (Python wants one group at the start)
            flags = "".join(sorted(set(flags) | set(m.group(1))))
            pattern = pattern[m.end():]
        pattern = f"(?{flags}){pattern}"
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _Unsupported(f"regular expression {pattern!r} is not valid for Python's re: {exc}") from exc
    return pattern


_CMP_OPS = {
    CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
    CompareOperators.GTE: ">=", CompareOperators.NEQ: "!=",
}


@dataclass(slots=True)
class _Converter:
    """Converts one rule's pySigma condition tree; knows its category and whether strings are cased."""

    category: _Category
    category_name: str
    pos: Pos

    # -- fields ------------------------------------------------------------------------------
    def target(self, name: str) -> tuple[str, _Target]:
        table = {**_COMMON_FIELDS, **self.category.fields}
        t = table.get(name)
        if t is None:  # Sigma field names are matched case-insensitively as a courtesy
            folded = {k.lower(): k for k in table}
            key = folded.get(name.lower())
            if key is not None:
                name, t = key, table[key]
        if t is None:
            raise _Unsupported(f"field '{name}' has no SentinelEdge equivalent in category {self.category_name}")
        if t.missing is not None:
            raise _Unsupported(f"field '{name}' is not available: {t.missing}")
        return name, t

    # -- the condition tree --------------------------------------------------------------------
    def node(self, item: Any) -> Node:
        if isinstance(item, ConditionAND):
            return _and(self.node(a) for a in item.args)
        if isinstance(item, ConditionOR):
            return _or(self.node(a) for a in item.args)
        if isinstance(item, ConditionNOT):
            return _not(self.node(item.args[0]))
        if isinstance(item, ConditionFieldEqualsValueExpression):
            return self.field_value(item.field, item.value, _detection_item(item))
        if isinstance(item, ConditionValueExpression):
            return self.keyword(item.value, _detection_item(item))
        if item is None:  # pySigma drops empty detections
            return Const(False)
        raise _Unsupported(f"condition element {type(item).__name__} is not supported")

    # -- field: value ----------------------------------------------------------------------------
    def field_value(self, name: str, value: SigmaType, origin: SigmaDetectionItem | None) -> Node:
        name, t = self.target(name)
        if isinstance(value, SigmaExpansion):  # windash / base64offset variants: any of them
            return _or(self.field_value(name, v, origin) for v in value.values)
        if t.special is not None:
            return self.special(name, t.special, value)
        if t.directed is not None:
            out_f, in_f = t.directed
            return _or((_and((_OUTBOUND, self.leaf(name, out_f, t.kind, value, origin))),
                        _and((_INBOUND, self.leaf(name, in_f, t.kind, value, origin)))))
        assert t.field is not None
        return self.leaf(name, t.field, t.kind, value, origin)

    def special(self, name: str, special: str, value: SigmaType) -> Node:
        truth = _truth(value)
        if truth is None:
            raise _Unsupported(f"field '{name}' takes 'true' or 'false', not {value!s}")
        if special == "initiated":
            return _OUTBOUND if truth else _INBOUND
        return _eq("net.family", "inet6" if truth else "inet")

    def leaf(self, sigma_name: str, fname: str, kind: str, value: SigmaType,
             origin: SigmaDetectionItem | None) -> Node:
        left = Field(fname, pos=self.pos)
        if isinstance(value, SigmaExists):
            return Exists(left) if value.exists else Not(Exists(left))
        if isinstance(value, SigmaNull):  # null: the field is absent or empty
            if kind == "int":
                return Not(Exists(left))
            return _or((Not(Exists(left)), Compare(left, "=", "")))
        if isinstance(value, SigmaFieldReference):
            return self.fieldref(left, sigma_name, value)
        if kind == "int":
            return self.int_leaf(sigma_name, left, value)
        if isinstance(value, SigmaCIDRExpression):
            if kind != "ip":
                raise _Unsupported(f"cidr on field '{sigma_name}', which is not an IP address")
            return Compare(left, "cidr", (str(value.network),), pos=self.pos)
        if isinstance(value, SigmaRegularExpression):
            return Compare(left, "regex", _regex_text(value), pos=self.pos)
        if isinstance(value, SigmaString):
            return _string_node(left, value, _is_cased(value, origin))
        if isinstance(value, SigmaBool):
            return Compare(left, "iequals", "true" if value.boolean else "false")
        if isinstance(value, SigmaNumber):
            return Compare(left, "iequals", str(value.number))
        if isinstance(value, SigmaCompareExpression):
            raise _Unsupported(f"numeric comparison (lt/gt) on text field '{sigma_name}'")
        raise _Unsupported(_value_reason(value, sigma_name))

    def int_leaf(self, sigma_name: str, left: Field, value: SigmaType) -> Node:
        if isinstance(value, SigmaNumber) and isinstance(value.number, int):
            return Compare(left, "=", value.number)
        if isinstance(value, SigmaCompareExpression):
            return Compare(left, _CMP_OPS[value.op], value.number.number)
        if isinstance(value, SigmaString) and not value.contains_special():
            text = str(value).strip()
            if re.fullmatch(r"[+-]?\d+", text):
                return Compare(left, "=", int(text))
        raise _Unsupported(f"field '{sigma_name}' is numeric; value {value!s} is not a whole number")

    def fieldref(self, left: Field, sigma_name: str, value: SigmaFieldReference) -> Node:
        other_name, other = self.target(value.field)
        if other.field is None:
            raise _Unsupported(f"fieldref to '{other_name}' (only plain fields can be compared)")
        right = Field(other.field, pos=self.pos)
        if value.starts_with and value.ends_with:
            op = "contains"
        elif value.starts_with:
            op = "startswith"
        elif value.ends_with:
            op = "endswith"
        else:
            op = "="
        if other.kind == "int" or left.name in _INT_FIELDS:
            if op != "=":
                raise _Unsupported(f"fieldref with contains/startswith/endswith on numeric field '{sigma_name}'")
            return Compare(left, "=", right, pos=self.pos)
        # Sigma compares case-insensitively: lower() both sides
        return Compare(Call("lower", left), op, Call("lower", right), pos=self.pos)

    # -- keywords ---------------------------------------------------------------------------------
    def keyword(self, value: SigmaType, origin: SigmaDetectionItem | None) -> Node:
        """A field-less value: searched (as a substring) in the category's keyword fields."""
        if isinstance(value, SigmaExpansion):
            return _or(self.keyword(v, origin) for v in value.values)
        if isinstance(value, SigmaNumber):
            value = SigmaString(str(value.number))
        if isinstance(value, SigmaString):
            cased = _is_cased(value, origin)
            if not value.startswith(SpecialChars.WILDCARD_MULTI):
                value = SpecialChars.WILDCARD_MULTI + value
            if not value.endswith(SpecialChars.WILDCARD_MULTI):
                value = value + SpecialChars.WILDCARD_MULTI
            return _or(_string_node(Field(f, pos=self.pos), value, cased) for f in self.category.keywords)
        if isinstance(value, SigmaRegularExpression):
            pattern = _regex_text(value)
            return _or(Compare(Field(f, pos=self.pos), "regex", pattern) for f in self.category.keywords)
        raise _Unsupported(f"keyword value {value!s} of type {type(value).__name__} is not supported")


_INT_FIELDS = {"proc.pid", "proc.ppid", "user.loginuid", "net.local_port", "net.remote_port"}


def _truth(value: SigmaType) -> bool | None:
    if isinstance(value, SigmaBool):
        return value.boolean
    if isinstance(value, SigmaString) and not value.contains_special():
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
    return None


def _is_cased(value: SigmaString, origin: SigmaDetectionItem | None) -> bool:
    """``cased`` makes a match case-sensitive; so is base64 text (its letters' case is its content)."""
    if isinstance(value, SigmaCasedString):
        return True
    mods = origin.modifiers if origin is not None else []
    return SigmaBase64Modifier in mods or SigmaBase64OffsetModifier in mods


def _detection_item(item: ConditionFieldEqualsValueExpression | ConditionValueExpression) -> SigmaDetectionItem | None:
    for parent in item.parent_chain():
        if isinstance(parent, SigmaDetectionItem):
            return parent
    return None


def _value_reason(value: SigmaType, field_name: str) -> str:
    name = type(value).__name__
    if name == "SigmaTimestampPart":
        return _TIMESTAMP_REASON
    return f"value type {name} on field '{field_name}' is not supported"


# --------------------------------------------------------------------------------------------------
# tree helpers: flatten, fold constants, group values (one Compare with a tuple per field and op)
# --------------------------------------------------------------------------------------------------

_GROUPABLE = {"=", "iequals", "contains", "icontains", "startswith", "istartswith", "endswith", "iendswith",
              "cidr", "in"}


def _and(items: Iterable[Node]) -> Node:
    out: list[Node] = []
    for it in items:
        if isinstance(it, Const):
            if not it.value:
                return Const(False)
            continue
        out.extend(it.items if isinstance(it, And) else (it,))
    if not out:
        return Const(True)
    return out[0] if len(out) == 1 else And(tuple(out))


def _or(items: Iterable[Node]) -> Node:
    out: list[Node] = []
    for it in items:
        if isinstance(it, Const):
            if it.value:
                return Const(True)
            continue
        out.extend(it.items if isinstance(it, Or) else (it,))
    out = _group(out)
    if not out:
        return Const(False)
    return out[0] if len(out) == 1 else Or(tuple(out))


def _not(item: Node) -> Node:
    if isinstance(item, Const):
        return Const(not item.value)
    if isinstance(item, Not):
        return item.item
    return Not(item)


def _group(items: list[Node]) -> list[Node]:
    """``a = x or a = y`` -> ``a = (x, y)``: one Compare per (left, op) with a tuple of values."""
    out: list[Node] = []
    slot: dict[tuple[Any, str], int] = {}
    for it in items:
        if isinstance(it, Compare) and it.op in _GROUPABLE and isinstance(it.left, Field):
            key = (it.left, "=" if it.op == "in" else it.op)
            values = it.value if isinstance(it.value, tuple) else (it.value,)
            if all(not isinstance(v, (Field, Call)) for v in values):
                if key in slot:
                    prev = out[slot[key]]
                    assert isinstance(prev, Compare)
                    prev_values = prev.value if isinstance(prev.value, tuple) else (prev.value,)
                    merged = tuple(dict.fromkeys((*prev_values, *values)))
                    op = "in" if key[1] == "=" else key[1]
                    out[slot[key]] = Compare(it.left, op, merged, prev.pos)
                    continue
                slot[key] = len(out)
        out.append(it)
    return out


# --------------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------------

def _rule_modifiers(rule: SigmaRule) -> list[type[SigmaModifier[Any, Any]]]:
    found: list[type[SigmaModifier[Any, Any]]] = []

    def walk(d: SigmaDetection | SigmaDetectionItem) -> None:
        if isinstance(d, SigmaDetection):
            for sub in d.detection_items:
                walk(sub)
        else:
            found.extend(d.modifiers)

    for det in rule.detection.detections.values():
        walk(det)
    return found


def _check_modifiers(rule: SigmaRule) -> None:
    for mod in _rule_modifiers(rule):
        name = reverse_modifier_mapping.get(mod.__name__, mod.__name__)
        if mod in _UNSUPPORTED_MODIFIERS:
            raise _Unsupported(f"modifier '{name}': {_UNSUPPORTED_MODIFIERS[mod]}")
        if issubclass(mod, SigmaTimestampModifier):
            raise _Unsupported(f"modifier '{name}': {_TIMESTAMP_REASON}")


def _category(rule: SigmaRule) -> tuple[str, _Category]:
    ls = rule.logsource
    product = (ls.product or "").lower()
    if product and product != "linux":
        raise _Unsupported(f"logsource product '{ls.product}' is not linux")
    if ls.service:
        raise _Unsupported(_SERVICE_REASON.format(ls.service))
    if not ls.category:
        raise _Unsupported("logsource has no category (supported: " + ", ".join(_CATEGORIES) + ")")
    cat = _CATEGORIES.get(ls.category.lower())
    if cat is None:
        raise _Unsupported(f"logsource category '{ls.category}' is not observed by SentinelEdge on Linux "
                           "(supported: " + ", ".join(_CATEGORIES) + ")")
    return ls.category.lower(), cat


def _attack(tags: Sequence[str]) -> tuple[Attack, ...]:
    """ATT&CK pairs from Sigma tags: ``attack.t1059.004`` (technique) and ``attack.execution`` (tactic).

    Sigma does not link a technique to a tactic. When the tags interleave (tactic, its techniques,
    next tactic, ...) a technique takes the tactic before it; when all tactics come first, each
    technique is paired with each of them (a technique listed under several tactics belongs to
    each). A technique with no tactic tag gets an empty tactic.
    """
    seq: list[tuple[str, str]] = []
    for tag in tags:
        ns, _, name = tag.partition(".")
        if ns.lower() != "attack" or not name:
            continue
        if re.fullmatch(r"[tT]\d{4}(\.\d{3})?", name):
            seq.append(("t", name.upper()))
        elif re.fullmatch(r"[gGsS]\d{4}", name) is None:  # groups / software ids are not tactics
            seq.append(("tactic", name.lower().replace("_", "-")))
    tactics = [v for k, v in seq if k == "tactic"]
    techniques = [v for k, v in seq if k == "t"]
    if not techniques:
        return ()
    first_t = next(i for i, (k, _) in enumerate(seq) if k == "t")
    interleaved = any(k == "tactic" for k, _ in seq[first_t:])
    pairs: list[Attack] = []
    if interleaved:
        current = ""
        for k, v in seq:
            if k == "tactic":
                current = v
            else:
                pairs.append(Attack(v, current))
    else:
        for t in techniques:
            pairs.extend(Attack(t, tac) for tac in (tactics or [""]))
    return tuple(dict.fromkeys(pairs))


def _rule_id(rule: SigmaRule, file: str) -> str:
    if rule.id is not None:
        return ID_PREFIX + str(rule.id).lower()
    stem = re.sub(r"[^a-z0-9._-]+", "_", Path(file).stem.lower())
    return ID_PREFIX + (rule.name.lower() if rule.name else stem)


def _convert(rule: SigmaRule, file: str, line: int) -> CompiledRule:
    if rule.errors:
        raise _Unsupported(_sigma_reason(rule.errors[0]))
    if rule.status == SigmaStatus.UNSUPPORTED:
        raise _Unsupported("status 'unsupported' (SigmaHQ marks it as not usable as is)")
    if not rule._output:
        raise _Unsupported("rule is only an input of a correlation rule (generate: false)")
    cat_name, cat = _category(rule)
    _check_modifiers(rule)
    pos = Pos(file, line, 1)
    conv = _Converter(cat, cat_name, pos)
    conditions: list[Node] = []
    for cond in rule.detection.parsed_condition:
        try:
            tree = cond.parse()
        except SigmaError as exc:
            raise _Unsupported(_sigma_reason(exc)) from exc
        conditions.append(conv.node(tree))
    detection = _or(conditions)
    if isinstance(detection, Const) and not detection.value:
        raise _Unsupported("the detection can never match")
    node = _and((cat.base, detection))
    match = compile_condition(node)
    kinds = kinds_of(node)
    title = rule.title or _rule_id(rule, file)
    tags = tuple(str(t) for t in rule.tags)
    safe_title = title.replace("{", "{{").replace("}", "}}")
    output = f"{safe_title}: {cat.output}"
    meta = RuleMeta(
        id=_rule_id(rule, file),
        title=title,
        severity=_LEVELS.get(str(rule.level).lower(), "medium") if rule.level is not None else "medium",
        description=(rule.description or "").strip(),
        attack=_attack(tags),
        tags=tags,
        output=output,
        source="sigma",
        file=file,
        line=line,
    )
    render = compile_template(output, file, line)
    return CompiledRule(meta, match, kinds, render, node=node)


def _sigma_reason(exc: SigmaError) -> str:
    """pySigma's message without its ' in /abs/path' suffix (the file is reported beside it)."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.strip() or type(exc).__name__


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------

def _files(paths: Sequence[str | Path], skipped: list[tuple[str, str]]) -> list[Path]:
    files: list[Path] = []
    for p in (Path(x) for x in paths):
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.suffix in SUFFIXES and q.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            skipped.append((str(p), "no such file or directory"))
    return files


def _read_documents(path: Path) -> tuple[list[Any], dict[str, int]]:
    """The YAML documents of a file and the line where each rule (by id, else title) starts."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unsupported(f"cannot read: {exc}") from exc
    docs: list[Any] = []
    lines: dict[str, int] = {}
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            doc = loader.construct_document(node)
            docs.append(doc)
            if isinstance(doc, dict):
                for key in ("id", "title", "name"):
                    if isinstance(doc.get(key), str):
                        lines.setdefault(doc[key], node.start_mark.line + 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise _Unsupported(f"YAML syntax error at {where}{exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise _Unsupported(f"YAML error: {exc}") from exc
    finally:
        loader.dispose()
    return docs, lines


def _rule_line(rule: SigmaRule | SigmaCorrelationRule, lines: dict[str, int]) -> int:
    for key in (str(rule.id) if rule.id is not None else None, rule.title, rule.name):
        if key is not None and key in lines:
            return lines[key]
    return 1


def load_sigma(paths: Sequence[str | Path]) -> SigmaLoad:
    """Load Sigma rule files and directories (``*.yml``/``*.yaml``, recursively).

    Every rule is either compiled into ``rules`` or listed in ``skipped`` as ``(file, reason)``;
    a file that cannot be read or parsed is one skipped entry. Never raises for bad input.
    Sigma filters (``filter:`` documents) are applied to the rules they name, as pySigma does.
    """
    out = SigmaLoad()
    collections: list[SigmaCollection] = []
    line_of: dict[int, tuple[str, int]] = {}
    for path in _files(paths, out.skipped):
        file = str(path)
        try:
            docs, lines = _read_documents(path)
            coll = SigmaCollection.from_dicts(docs, collect_errors=True, source=SigmaRuleLocation(path),
                                              collect_filters=True, resolve_references=False)
        except _Unsupported as exc:
            out.skipped.append((file, str(exc)))
            continue
        except SigmaError as exc:
            out.skipped.append((file, _sigma_reason(exc)))
            continue
        except Exception as exc:  # malformed third-party input must never stop the agent
            out.skipped.append((file, f"cannot parse as Sigma: {type(exc).__name__}: {exc}"))
            continue
        rule_errors = {id(e) for r in coll.rules for e in r.errors}
        for err in coll.errors:
            if id(err) not in rule_errors:
                out.skipped.append((file, _sigma_reason(err)))
        for r in coll.rules:
            line_of[id(r)] = (file, _rule_line(r, lines))
        if not coll.rules and not coll.filters and not coll.errors:
            out.skipped.append((file, "no Sigma rule in this file"))
        collections.append(coll)
    try:
        merged = SigmaCollection.merge(collections, resolve_references=True)
    except SigmaError as exc:  # a correlation naming an unknown rule: retry without resolving
        out.skipped.append(("<collection>", f"rule references: {_sigma_reason(exc)}"))
        merged = SigmaCollection.merge(collections, resolve_references=False)
    seen: dict[str, str] = {}
    for r in merged.rules:
        file, line = line_of.get(id(r), (_source_file(r), 1))
        if isinstance(r, SigmaCorrelationRule):
            out.skipped.append((file, f"correlation rule ({r.type}) is not supported: "
                                      "use a native sequence or threshold rule"))
            continue
        try:
            compiled = _convert(r, file, line)
        except _Unsupported as exc:
            out.skipped.append((file, str(exc)))
            continue
        except RuleError as exc:
            out.skipped.append((file, f"does not compile: {exc.reason}"))
            continue
        if compiled.meta.id in seen:
            out.skipped.append((file, f"duplicate Sigma id {compiled.meta.id} (first in {seen[compiled.meta.id]})"))
            continue
        seen[compiled.meta.id] = file
        out.rules.append(compiled)
        out.categories[compiled.meta.id] = (r.logsource.category or "").lower()
    return out


def _source_file(rule: SigmaRule | SigmaCorrelationRule) -> str:
    return str(rule.source.path) if rule.source is not None else "<unknown>"


# --------------------------------------------------------------------------------------------------
# sentinel-edge rules import-sigma
# --------------------------------------------------------------------------------------------------

def reason_group(reason: str) -> str:
    """A reason without its rule-specific details, to group skip reasons (values, ids, lines)."""
    reason = re.sub(r"YAML syntax error at line \d+, column \d+: .*", "YAML syntax error", reason)
    reason = re.sub(r"regular expression '.*' is not valid", "regular expression is not valid", reason)
    reason = re.sub(r"duplicate Sigma id \S+ \(first in .*\)", "duplicate Sigma id", reason)
    reason = re.sub(r"not (\S+|'.*') is not a whole number$", "is not a whole number", reason)
    return reason


def import_sigma_main(paths: Sequence[str], out: TextIO) -> int:
    """Load Sigma rules, print how many loaded and, grouped, why the others did not.

    Returns 0 when at least one rule loaded, 1 when none did.
    """
    result = load_sigma(list(paths))
    total = len(result.rules) + len(result.skipped)
    out.write(f"loaded {len(result.rules)} of {total} Sigma rules\n")
    by_cat: dict[str, int] = {}
    for r in result.rules:
        cat = result.categories.get(r.meta.id, "?")
        by_cat[cat] = by_cat.get(cat, 0) + 1
    if by_cat:
        out.write("  " + ", ".join(f"{k}: {v}" for k, v in sorted(by_cat.items())) + "\n")
    if result.skipped:
        groups: dict[str, list[str]] = {}
        for file, reason in result.skipped:
            groups.setdefault(reason_group(reason), []).append(f"{file}: {reason}")
        out.write(f"skipped {len(result.skipped)}:\n")
        for reason, items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            out.write(f"  {len(items)} x {reason}\n")
            for it in items:
                out.write(f"      {it}\n")
    return 0 if result.rules else 1
