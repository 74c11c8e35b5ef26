"""Condition trees to Python callables, compiled once per rule.

Every node of a :mod:`~sentinel_edge.rules.ast` tree becomes a closure; the
work that does not depend on the event is done here, once: literals coerced
to the field's type, ``in`` values turned into frozensets (lower-cased ones
for ``iequals``), regexes compiled, globs translated into one regex, CIDR
networks parsed, bit masks combined. Evaluating a rule is then a handful of
Python calls.

Semantics (docs/rules.md, "Conditions"):

- a field with no value (``None``) makes every comparison on it false;
- a list-valued field matches when any element does;
- several values (``in``, Sigma's value lists) match when any value does.

Types are checked here, so a rule comparing a text field with a number is a
load error with its position, whichever front end (YAML or Sigma) built it.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import math
import operator
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sentinel_edge.errors import RuleError
from sentinel_edge.model import Event
from sentinel_edge.rules import fields as fieldtab
from sentinel_edge.rules.ast import And, Call, Compare, Const, Exists, Field, Literal, Node, Not, Operand, Or, Pos
from sentinel_edge.rules.model import RuleMeta

if TYPE_CHECKING:
    from sentinel_edge.rules.correlate import Correlator

Predicate = Callable[[Event], bool]
Getter = Callable[[Event], Any]

FUNCS = ("lower", "upper", "basename", "dirname", "len", "entropy", "b64decode")
# operators on text, on numbers, on integers only
TEXT_OPS = frozenset({"startswith", "endswith", "contains", "istartswith", "iendswith", "icontains", "iequals",
                      "glob", "regex", "cidr"})
ORDER_OPS = frozenset({"<", "<=", ">", ">="})
NUMERIC = frozenset({"int", "float"})


@dataclass
class CompiledRule:
    """A rule ready for the engine.

    ``kinds`` are the event kinds the rule can match (None: any), used to index
    it. For stateful rules ``correlator`` does the work (``feed``/``expire``)
    and ``match`` is the union of its step conditions, for indexing only.
    """

    meta: RuleMeta
    match: Predicate
    kinds: frozenset[str] | None
    render: Callable[[Event], str]
    correlator: Correlator | None = None
    node: Node | None = None  # the whole condition, for the engine's key index (None: not indexable)


# ---------------------------------------------------------------- types

def _err(msg: str, pos: Pos) -> RuleError:
    return RuleError(msg, file=pos.file, line=pos.line, col=pos.col)


def field_spec(f: Field) -> fieldtab.FieldSpec:
    """The field table entry of ``f``; RuleError (with a suggestion) when unknown."""
    spec = fieldtab.FIELDS.get(f.name)
    if spec is None:
        hint = fieldtab.suggest(f.name)
        raise _err(f"unknown field '{f.name}'" + (f" (did you mean '{hint}'?)" if hint else ""), f.pos)
    return spec


def elem_type(t: str) -> str:
    """``list[str]`` -> ``str``; a scalar type is its own element type."""
    return t[5:-1] if t.startswith("list[") else t


def is_list_type(t: str) -> bool:
    return t.startswith("list[")


def literal_type(v: Literal) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return "str"


def operand_type(o: Operand) -> str:
    """Static type of an operand: ``str int float bool list[...]``, or ``any`` when the table does not say."""
    if isinstance(o, Field):
        t = field_spec(o).type or "any"
        if o.index is not None:
            if is_list_type(t):
                return elem_type(t)
            if t != "any":
                raise _err(f"field '{o.name}' is not a list: it takes no [index]", o.pos)
        return t
    if isinstance(o, Call):
        return _call_type(o)
    return literal_type(o)


def _call_type(c: Call) -> str:
    if c.func not in FUNCS:
        raise _err(f"unknown function '{c.func}' (known: {', '.join(FUNCS)})", c.pos)
    t = operand_type(c.arg)
    e = elem_type(t)
    if c.func == "len":
        if e not in ("str", "any") and not is_list_type(t):
            raise _err(f"len() needs text or a list, got {t}", c.pos)
        return "int"
    if e not in ("str", "any"):
        raise _err(f"{c.func}() needs text, got {t}", c.pos)
    if c.func == "entropy":
        return "list[float]" if is_list_type(t) else "float"
    return t


# ---------------------------------------------------------------- functions

def entropy(s: str) -> float:
    """Shannon entropy of ``s`` in bits per character (0.0 for the empty string)."""
    n = len(s)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def b64decode(s: str) -> str:
    """Text of a base64 value (standard or URL-safe alphabet, padding optional); "" when it is not base64."""
    t = "".join(s.split())
    if not t:
        return ""
    t += "=" * (-len(t) % 4)
    try:
        raw = base64.b64decode(t, altchars=b"-_" if ("-" in t or "_" in t) else None, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return raw.decode("utf-8", errors="replace")


def basename(s: str) -> str:
    stripped = s.rstrip("/")
    return posixpath.basename(stripped) if stripped else s[:1]


_SCALAR_FUNCS: dict[str, Callable[[str], Any]] = {
    "lower": str.lower,
    "upper": str.upper,
    "basename": basename,
    "dirname": posixpath.dirname,
    "entropy": entropy,
    "b64decode": b64decode,
}


# ---------------------------------------------------------------- getters

def compile_getter(o: Operand) -> Getter:
    """A function event -> value (None when absent) for a field or function operand."""
    if isinstance(o, Field):
        spec = field_spec(o)
        operand_type(o)  # checks the index
        if o.index is None:
            return spec.get
        n = o.index
        if spec.get_index is not None:
            gi = spec.get_index
            return lambda e: gi(e, n)
        get = spec.get

        def indexed(e: Event) -> Any:
            v = get(e)
            return v[n] if isinstance(v, list) and n < len(v) else None

        return indexed
    if isinstance(o, Call):
        _call_type(o)
        inner = compile_getter(o.arg)
        if o.func == "len":
            def length(e: Event) -> Any:
                v = inner(e)
                return None if v is None else len(v)

            return length
        fn = _SCALAR_FUNCS[o.func]

        def apply(e: Event) -> Any:
            v = inner(e)
            if v is None:
                return None
            if isinstance(v, list):
                return [fn(x) for x in v if isinstance(x, str)]
            return fn(v) if isinstance(v, str) else None

        return apply
    value = o
    return lambda e: value


def describe(o: Operand) -> str:
    if isinstance(o, Field):
        return o.name if o.index is None else f"{o.name}[{o.index}]"
    if isinstance(o, Call):
        return f"{o.func}({describe(o.arg)})"
    return repr(o)


# ---------------------------------------------------------------- literals

_INT_RE = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+)")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?[0-9]+[eE][+-]?[0-9]+")


def parse_number(text: str) -> int | float | None:
    """An int (decimal, 0x, 0o, 0b) or float written as text; None when it is not one."""
    if _INT_RE.fullmatch(text):
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        base = 10
        if body[:2].lower() == "0x":
            base = 16
        elif body[:2].lower() == "0o":
            base = 8
        elif body[:2].lower() == "0b":
            base = 2
        return sign * int(body, base)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return None


def _coerce(v: Literal, want: str, left: Operand, op: str, pos: Pos) -> Literal:
    """``v`` as a value of type ``want`` (the left operand's element type), or a RuleError."""
    have = literal_type(v)
    if want == "any" or have == want or (want in NUMERIC and have in NUMERIC):
        return v
    if want in NUMERIC and have == "str":
        n = parse_number(str(v).strip())
        if n is not None:
            return n
    if want == "bool" and have == "str" and str(v).lower() in ("true", "false"):
        return str(v).lower() == "true"
    if want == "str" and have in NUMERIC and op in TEXT_OPS:
        return str(v)
    raise _err(f"cannot compare {want} {describe(left)} with {have} {v!r} using '{op}'", pos)


# ---------------------------------------------------------------- compare

@lru_cache(maxsize=8192)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        a = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def _scalar_predicate(op: str, values: tuple[Literal, ...], pos: Pos) -> Callable[[Any], bool]:
    """A test of one (non-None) scalar value against the literal ``values`` (true when any matches)."""
    single = values[0] if len(values) == 1 else None
    if op in ("=", "in"):
        if len(values) == 1:
            v0 = values[0]
            return lambda x: bool(x == v0)
        vs = frozenset(values)
        return lambda x: x in vs
    if op == "!=":
        if len(values) == 1:
            v1 = values[0]
            return lambda x: bool(x != v1)
        return lambda x: any(x != v for v in values)
    if op in ORDER_OPS:
        cmp: Callable[[Any, Any], bool] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                           ">=": operator.ge}[op]
        if len(values) == 1:
            v2 = values[0]
            return lambda x: cmp(x, v2)
        return lambda x: any(cmp(x, v) for v in values)
    if op == "bitand":
        mask = 0
        for v in values:
            mask |= int(v)
        return lambda x: (x & mask) != 0
    strs = tuple(str(v) for v in values)
    if op == "startswith":
        return lambda x: x.startswith(strs)
    if op == "endswith":
        return lambda x: x.endswith(strs)
    if op == "contains":
        if single is not None:
            s0 = strs[0]
            return lambda x: s0 in x
        return lambda x: any(s in x for s in strs)
    lows = tuple(s.lower() for s in strs)
    if op == "istartswith":
        return lambda x: x.lower().startswith(lows)
    if op == "iendswith":
        return lambda x: x.lower().endswith(lows)
    if op == "icontains":
        return lambda x: any(s in x.lower() for s in lows)
    if op == "iequals":
        low_set = frozenset(lows)
        return lambda x: x.lower() in low_set
    if op == "glob":
        rx = re.compile("|".join(f"(?:{fnmatch.translate(s)})" for s in strs))
        return lambda x: rx.match(x) is not None
    if op == "regex":
        compiled = []
        for s in strs:
            try:
                compiled.append(re.compile(s))
            except re.error as exc:
                raise _err(f"invalid regex {s!r}: {exc}", pos) from None
        if len(compiled) == 1:
            r0 = compiled[0]
            return lambda x: r0.search(x) is not None
        return lambda x: any(r.search(x) is not None for r in compiled)
    if op == "cidr":
        nets4: list[ipaddress.IPv4Network] = []
        nets6: list[ipaddress.IPv6Network] = []
        for s in strs:
            try:
                n = ipaddress.ip_network(s, strict=False)
            except ValueError as exc:
                raise _err(f"invalid network {s!r}: {exc}", pos) from None
            if isinstance(n, ipaddress.IPv4Network):
                nets4.append(n)
            else:
                nets6.append(n)

        def in_networks(x: Any) -> bool:
            a = _ip(x)
            if a is None:
                return False
            if isinstance(a, ipaddress.IPv4Address):
                return any(a in n for n in nets4)
            return any(a in n for n in nets6)

        return in_networks
    raise _err(f"unknown operator '{op}'", pos)


def _pair_predicate(op: str, pos: Pos) -> Callable[[Any, Any], bool]:
    """A test of two values from fields (``proc.exe = parent.exe``)."""
    table: dict[str, Callable[[Any, Any], bool]] = {
        "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge,
        "startswith": lambda x, y: x.startswith(y), "endswith": lambda x, y: x.endswith(y),
        "contains": lambda x, y: y in x,
        "istartswith": lambda x, y: x.lower().startswith(y.lower()),
        "iendswith": lambda x, y: x.lower().endswith(y.lower()),
        "icontains": lambda x, y: y.lower() in x.lower(),
        "iequals": lambda x, y: x.lower() == y.lower(),
        "bitand": lambda x, y: (x & y) != 0,
    }
    if op not in table:
        raise _err(f"'{op}' needs literal values, not a field", pos)
    return table[op]


def _check_op_types(op: str, t: str, left: Operand, pos: Pos) -> None:
    e = elem_type(t)
    if e == "any":
        return
    if op in TEXT_OPS and e != "str":
        raise _err(f"'{op}' works on text, but {describe(left)} is {t}", pos)
    if op in ORDER_OPS and e not in NUMERIC:
        raise _err(f"'{op}' works on numbers, but {describe(left)} is {t}", pos)
    if op == "bitand" and e != "int":
        raise _err(f"'bitand' works on integers, but {describe(left)} is {t}", pos)


def _lift(get: Getter, test: Callable[[Any], bool], t: str) -> Predicate:
    """Apply ``test`` to the operand's value: false when absent, any element for a list."""
    if is_list_type(t):
        # list values handed out repeatedly as the same object (ancestry fields, args) are
        # tested once per object; the reference kept in the cache stops the id being reused
        cache: dict[int, tuple[list[Any], bool]] = {}

        def any_elem(e: Event) -> bool:
            v = get(e)
            if v is None:
                return False
            hit = cache.get(id(v))
            if hit is not None and hit[0] is v:
                return hit[1]
            r = False
            for x in v:
                if x is not None and test(x):
                    r = True
                    break
            if len(cache) >= LIST_CACHE_MAX:
                cache.clear()
            cache[id(v)] = (v, r)
            return r

        return any_elem
    if t == "any":
        def dynamic(e: Event) -> bool:
            v = get(e)
            if v is None:
                return False
            if isinstance(v, list):
                return any(x is not None and test(x) for x in v)
            try:
                return test(v)
            except (TypeError, AttributeError):
                return False

        return dynamic

    def scalar(e: Event) -> bool:
        v = get(e)
        return v is not None and test(v)

    return scalar


def _compile_compare(c: Compare) -> Predicate:
    op = c.op
    t = operand_type(c.left)
    get = compile_getter(c.left)
    _check_op_types(op, t, c.left, c.pos)
    if isinstance(c.value, Field | Call):
        rt = operand_type(c.value)
        le, re_ = elem_type(t), elem_type(rt)
        if "any" not in (le, re_) and le != re_ and not (le in NUMERIC and re_ in NUMERIC):
            raise _err(f"cannot compare {t} {describe(c.left)} with {rt} {describe(c.value)}", c.pos)
        rget = compile_getter(c.value)
        pair = _pair_predicate(op, c.pos)

        def fields_match(e: Event) -> bool:
            a, b = get(e), rget(e)
            if a is None or b is None:
                return False
            xs = a if isinstance(a, list) else (a,)
            ys = b if isinstance(b, list) else (b,)
            try:
                return any(x is not None and y is not None and pair(x, y) for x in xs for y in ys)
            except (TypeError, AttributeError):
                return False

        return fields_match
    raw = c.value if isinstance(c.value, tuple) else (c.value,)
    if not raw:
        return _const(op == "!=")
    want = elem_type(t)
    if op in TEXT_OPS:
        want = "str" if want == "any" else want
    elif op == "bitand":
        want = "int"
    values = tuple(_coerce(v, want, c.left, op, c.pos) for v in raw)
    return _lift(get, _scalar_predicate(op, values, c.pos), t)


def _const(value: bool) -> Predicate:
    return (lambda e: True) if value else (lambda e: False)


# cost rank of a node, to test cheap things first inside an `and`
def _cost(n: Node) -> int:
    if isinstance(n, Compare):
        if isinstance(n.left, Field) and n.left.name == "event.kind":
            return 0
        if n.op in ("regex", "glob", "cidr") or isinstance(n.left, Call) or isinstance(n.value, Field | Call):
            return 3
        return 1 if n.op in ("=", "in", "!=", "bitand") else 2
    if isinstance(n, Exists | Const):
        return 1
    if isinstance(n, Not):
        return _cost(n.item)
    return 4


MAX_DEPTH = 200
# list values whose test results are remembered per compiled test
LIST_CACHE_MAX = 4096


def compile_condition(node: Node) -> Predicate:
    """Compile a condition tree into ``event -> bool``; RuleError (with the node's position) on a type error."""
    return _compile(node, 0)


def _compile(node: Node, depth: int) -> Predicate:
    if depth > MAX_DEPTH:
        raise RuleError(f"condition nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, Compare):
        return _compile_compare(node)
    if isinstance(node, Exists):
        get = compile_getter(node.field)
        return lambda e: get(e) is not None
    if isinstance(node, Const):
        return _const(node.value)
    if isinstance(node, Not):
        inner = _compile(node.item, depth + 1)
        return lambda e: not inner(e)
    if isinstance(node, And):
        items = sorted(node.items, key=_cost)
        parts = [_compile(i, depth + 1) for i in items]
        return _all(parts)
    if isinstance(node, Or):
        parts = [_compile(i, depth + 1) for i in node.items]
        return _any(parts)
    raise RuleError(f"not a condition node: {node!r}")


def _all(parts: Sequence[Predicate]) -> Predicate:
    if not parts:
        return _const(True)
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda e: a(e) and b(e)
    if len(parts) == 3:
        a, b, c = parts
        return lambda e: a(e) and b(e) and c(e)
    tp = tuple(parts)

    def all_of(e: Event) -> bool:
        for p in tp:
            if not p(e):
                return False
        return True

    return all_of


def _any(parts: Sequence[Predicate]) -> Predicate:
    if not parts:
        return _const(False)
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda e: a(e) or b(e)
    tp = tuple(parts)

    def any_of(e: Event) -> bool:
        for p in tp:
            if p(e):
                return True
        return False

    return any_of


# ---------------------------------------------------------------- kinds

def _operand_kinds(o: Operand | tuple[Literal, ...]) -> frozenset[str] | None:
    if isinstance(o, Field):
        spec = fieldtab.FIELDS.get(o.name)
        return spec.kinds if spec is not None else None
    if isinstance(o, Call):
        return _operand_kinds(o.arg)
    return None


def _intersect(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def kinds_of(node: Node) -> frozenset[str] | None:
    """The event kinds ``node`` can be true for; None when it may be true for any kind.

    A comparison or ``exists`` can only be true where its fields have values
    (``FieldSpec.kinds``), and ``event.kind = X`` / ``event.kind in (...)``
    name the kinds outright. ``and`` intersects, ``or`` unites (any unknown
    side makes it unknown), ``not`` is unknown (conservative).
    """
    if isinstance(node, Compare):
        k = _intersect(_operand_kinds(node.left), _operand_kinds(node.value))
        if (isinstance(node.left, Field) and node.left.name == "event.kind" and node.left.index is None
                and not isinstance(node.value, Field | Call)):
            vals = node.value if isinstance(node.value, tuple) else (node.value,)
            if node.op in ("=", "in"):
                k = _intersect(k, frozenset(str(v) for v in vals))
            elif node.op == "iequals":
                k = _intersect(k, frozenset(str(v).lower() for v in vals))
        return k
    if isinstance(node, Exists):
        return _operand_kinds(node.field)
    if isinstance(node, Const):
        return None if node.value else frozenset()
    if isinstance(node, Not):
        return None
    if isinstance(node, And):
        out: frozenset[str] | None = None
        for i in node.items:
            out = _intersect(out, kinds_of(i))
        return out
    if isinstance(node, Or):
        acc: set[str] = set()
        for i in node.items:
            k = kinds_of(i)
            if k is None:
                return None
            acc |= k
        return frozenset(acc)
    return None


# ---------------------------------------------------------------- templates

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_FIELD_REF = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)(?:\[([0-9]+)\])?\s*")


def format_value(v: Any) -> str:
    """How a field value is written into an alert message."""
    if v is None:
        return "<NA>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ", ".join(format_value(x) for x in v)
    return str(v)


def compile_template(text: str, file: str = "<string>", line: int = 0, *, col: int = 0,
                     locate: Callable[[int], tuple[int, int]] | None = None) -> Callable[[Event], str]:
    """Compile an ``output`` template: ``{field}`` is the field's value (``<NA>`` when absent); ``{{ }}`` escape.

    ``locate(offset)`` gives the (line, column) of a character of ``text`` in
    its file, for errors; without it errors point at ``line``:``col``.
    """
    parts: list[str | Getter] = []
    errors: list[RuleError] = []
    last = 0

    def where(off: int) -> Pos:
        if locate is not None:
            ln, cl = locate(off)
            return Pos(file, ln, cl)
        return Pos(file, line, col + off if col else 0)

    def literal(a: int, b: int) -> None:
        chunk = text[a:b]
        for ch in "{}":
            k = chunk.find(ch)
            if k >= 0:
                errors.append(_err(f"unbalanced '{ch}' in output (write {ch}{ch} for a literal brace)", where(a + k)))
                return
        if chunk:
            parts.append(chunk)

    for m in _PLACEHOLDER.finditer(text):
        literal(last, m.start())
        last = m.end()
        tok = m.group(0)
        if tok in ("{{", "}}"):
            parts.append(tok[0])
            continue
        ref = _FIELD_REF.fullmatch(m.group(1))
        p = where(m.start() + 1)
        if ref is None:
            errors.append(_err(f"bad placeholder '{tok}' in output: expected {{field}} or {{field[N]}}", p))
            continue
        fld = Field(ref.group(1), int(ref.group(2)) if ref.group(2) else None, p)
        try:
            parts.append(compile_getter(fld))
        except RuleError as exc:
            errors.append(exc)
    literal(last, len(text))
    if errors:
        raise RuleError(errors[0].reason, file=errors[0].file, line=errors[0].line, col=errors[0].col,
                        errors=errors)
    frozen = tuple(parts)
    if all(isinstance(p, str) for p in frozen):
        const = "".join(p for p in frozen if isinstance(p, str))
        return lambda e: const

    def render(e: Event) -> str:
        out = []
        for p in frozen:
            if isinstance(p, str):
                out.append(p)
            else:
                try:
                    out.append(format_value(p(e)))
                except Exception:  # a field reader must not stop an alert
                    out.append("<NA>")
        return "".join(out)

    return render
