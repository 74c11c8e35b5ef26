"""The condition language of native rules: a lark grammar, and the tree it builds.

``parse_condition(text)`` turns a condition (docs/rules.md, "Conditions")
into a :mod:`~sentinel_edge.rules.ast` tree. Field names are resolved against
the field table, macros are expanded (their trees are built once and shared),
list names inside ``in (...)`` and ``cidr (...)`` are replaced by their
items, and bareword values are typed after the field they are compared with
(``proc.pid = 42`` is a number, ``proc.name = 42`` the text "42").

Every node carries its position in the rule *file*: a :class:`SourceMap`
tells where each character of the condition sits, also for YAML quoted,
folded and block scalars. Every error is a RuleError naming file:line:column
and what was expected there.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from sentinel_edge.errors import RuleError
from sentinel_edge.rules import fields as fieldtab
from sentinel_edge.rules.ast import And, Call, Compare, Const, Exists, Field, Literal, Node, Not, Operand, Or, Pos
from sentinel_edge.rules.compiler import FUNCS, describe, elem_type, operand_type, parse_number

GRAMMAR = r"""
start: _or

_or: or_ | _and
or_: _and (_OR _and)+
_and: and_ | _not
and_: _not (_AND _not)+
_not: not_ | _atom
not_: _NOT _not
_atom: _LPAR _or _RPAR
     | compare | in_ | cidr | exists | macro

compare: operand OP value
in_: operand _IN _LPAR item (_COMMA item)* _RPAR
cidr: operand _CIDR _LPAR item (_COMMA item)* _RPAR
exists: operand _EXISTS
macro: NAME

?operand: field | index | call
field: NAME
index: NAME _LSQB INDEX _RSQB
call: NAME _LPAR operand _RPAR

?value: item | vcall
vcall: BAREWORD _LPAR operand _RPAR
?item: BAREWORD | DQSTRING | SQSTRING

_NOT: "not"i
NAME: /[a-z_][a-z0-9_.]*/i
OP: /!=|<=|>=|=|<|>/
   | /(istartswith|iendswith|icontains|iequals|startswith|endswith|contains|glob|regex|bitand)(?![a-z0-9_.])/i
_IN: /in(?![a-z0-9_.])/i
_CIDR: /cidr(?![a-z0-9_.])/i
_EXISTS: /exists(?![a-z0-9_.])/i
_AND: /and(?![a-z0-9_.])/i
_OR: /or(?![a-z0-9_.])/i
_LPAR: "("
_RPAR: ")"
_COMMA: ","
_LSQB: "["
_RSQB: "]"
INDEX: /[0-9]+/
BAREWORD: /[^\s(),"']+/
DQSTRING: /"(?:[^"\\]|\\.)*"/s
SQSTRING: /'(?:[^'\\]|\\.)*'/s

%ignore /\s+/
"""

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
RESERVED = frozenset({"and", "or", "not"})
MAX_DEPTH = 100            # nesting of parentheses / not
MAX_SIZE = 100_000         # nodes of a condition once every macro is expanded

_parser: Lark | None = None


class _ReservedName(Exception):
    """'and' or 'or' where a field or macro name was expected."""

    def __init__(self, token: Token) -> None:
        super().__init__(str(token))
        self.token = token


def _check_name(tok: Token) -> Token:
    if tok.lower() in ("and", "or"):
        raise _ReservedName(tok)
    return tok


def parser() -> Lark:
    """The LALR parser (built once: a contextual lexer keeps barewords, names and keywords apart)."""
    global _parser
    if _parser is None:
        _parser = Lark(GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False,
                       lexer_callbacks={"NAME": _check_name})
    return _parser


# ---------------------------------------------------------------- positions

class SourceMap:
    """Where each character of a condition text is in its file (1-based line and column)."""

    def __init__(self, file: str, positions: list[tuple[int, int]]) -> None:
        self.file = file
        self._pos = positions          # one per character, plus one for the end

    @classmethod
    def plain(cls, text: str, file: str = "<string>", line: int = 1, col: int = 1) -> SourceMap:
        """The text starts at ``line``:``col`` of ``file`` and is copied there verbatim."""
        out = []
        ln, cl = line, col
        for ch in text:
            out.append((ln, cl))
            if ch == "\n":
                ln, cl = ln + 1, 1
            else:
                cl += 1
        out.append((ln, cl))
        return cls(file, out)

    @classmethod
    def for_scalar(cls, source: str, node: yaml.ScalarNode, file: str) -> SourceMap:
        """Map the value of a YAML scalar back to ``source`` (any style: plain, quoted, folded, literal).

        The value's characters are found in the source in order; whitespace the
        scalar folded or indented away is skipped, escapes are approximated.
        """
        value: str = node.value
        start, end = node.start_mark.index, min(node.end_mark.index, len(source))
        if node.style in ('"', "'"):
            start += 1
        starts = _line_starts(source)
        idx: list[int] = []
        si = start
        for ch in value:
            if ch.isspace():
                idx.append(min(si, max(end - 1, start)))
                if si < end and source[si].isspace():
                    si += 1
                continue
            j = source.find(ch, si, end)
            if j < 0:
                idx.append(min(si, max(end - 1, start)))
                continue
            idx.append(j)
            si = j + 1
        last = idx[-1] + 1 if idx else start
        idx.append(min(last, max(end, start)))
        out = []
        for i in idx:
            ln = bisect.bisect_right(starts, i) - 1
            out.append((ln + 1, i - starts[ln] + 1))
        return cls(file, out)

    def locate(self, offset: int) -> tuple[int, int]:
        if offset < 0:
            offset = 0
        if offset >= len(self._pos):
            offset = len(self._pos) - 1
        return self._pos[offset]

    def pos(self, offset: int) -> Pos:
        ln, cl = self.locate(offset)
        return Pos(self.file, ln, cl)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for m in re.finditer("\n", text):
        starts.append(m.end())
    return starts


# ---------------------------------------------------------------- names

@dataclass(frozen=True, slots=True)
class Item:
    """One item of a list, or one value written in a condition."""

    text: str
    quoted: bool
    pos: Pos


@dataclass
class ListDef:
    name: str
    items: list[Item]
    pos: Pos


@dataclass
class MacroDef:
    name: str
    text: str
    smap: SourceMap
    pos: Pos


@dataclass
class Names:
    """The lists and macros of a rule set, shared by every condition that uses them.

    Macros are parsed on first use and kept (the tree is shared, not copied);
    a macro that uses itself through any chain is an error.
    """

    lists: dict[str, ListDef] = field(default_factory=dict)
    macros: dict[str, MacroDef] = field(default_factory=dict)
    _done: dict[str, tuple[Node, int] | RuleError] = field(default_factory=dict)
    _stack: list[str] = field(default_factory=list)

    def macro(self, name: str, use: Pos) -> tuple[Node, int]:
        """The tree of macro ``name`` and its size in nodes; RuleError at ``use`` on a cycle or a broken macro."""
        if name in self._stack:
            chain = " -> ".join([*self._stack[self._stack.index(name):], name])
            raise _err(f"macro cycle: {chain}", use)
        got = self._done.get(name)
        if got is None:
            m = self.macros[name]
            self._stack.append(name)
            try:
                b = _Builder(m.text, m.smap, self)
                got = (b.build(), b.size)
            except RuleError as exc:
                got = exc
            finally:
                self._stack.pop()
            self._done[name] = got
        if isinstance(got, RuleError):
            if got.reason.startswith("macro cycle"):
                raise _err(got.reason, use)
            raise _err(f"macro '{name}' is invalid (see {self.macros[name].pos})", use)
        return got

    def check_macro(self, name: str) -> None:
        """Parse macro ``name`` now; RuleError with its own errors if it is broken."""
        m = self.macros[name]
        if name not in self._done:
            try:
                self.macro(name, m.pos)
            except RuleError:
                pass
        got = self._done.get(name)
        if isinstance(got, RuleError):
            raise got

    def list_items(self, name: str, use: Pos, stack: tuple[str, ...] = ()) -> list[Item]:
        """Items of list ``name``, with lists named among its items expanded."""
        if name in stack:
            raise _err(f"list cycle: {' -> '.join([*stack[stack.index(name):], name])}", use)
        out: list[Item] = []
        for it in self.lists[name].items:
            if not it.quoted and it.text in self.lists:
                out.extend(self.list_items(it.text, it.pos, (*stack, name)))
            else:
                out.append(it)
        return out


def _err(msg: str, pos: Pos) -> RuleError:
    return RuleError(msg, file=pos.file, line=pos.line, col=pos.col)


# ---------------------------------------------------------------- parsing

def parse_condition(text: str, *, file: str = "<string>", smap: SourceMap | None = None,
                    names: Names | None = None) -> Node:
    """Parse ``text`` into a condition tree (macros and lists expanded, fields resolved).

    Raises RuleError at the first syntax error; for errors found after
    parsing (unknown fields, bad values) it gathers all of them in
    ``RuleError.errors``.
    """
    smap = smap or SourceMap.plain(text, file)
    return _Builder(text, smap, names or Names()).build()


_EXPECT_ORDER = [
    ("COND", "a condition"), ("NAME", "a field or macro name"), ("VALUE", "a value"), ("OP", "an operator"),
    ("INDEX", "an index number"), ("_LSQB", "'['"), ("_RSQB", "']'"), ("_LPAR", "'('"), ("_COMMA", "','"),
    ("_RPAR", "')'"), ("_AND", "'and'"), ("_OR", "'or'"), ("$END", "the end of the condition"),
]


def _expected_text(expected: Iterable[str]) -> str:
    exp = set(expected)
    if exp & {"BAREWORD", "DQSTRING", "SQSTRING"}:
        exp -= {"BAREWORD", "DQSTRING", "SQSTRING"}
        exp.add("VALUE")
    if exp & {"OP", "_IN", "_CIDR", "_EXISTS"}:
        exp -= {"_IN", "_CIDR", "_EXISTS", "_LSQB", "_LPAR"}
        exp.add("OP")
    if {"NAME", "_LPAR"} <= exp:
        exp -= {"NAME", "_LPAR", "_NOT"}
        exp.add("COND")
    exp.discard("_NOT")
    words = [w for k, w in _EXPECT_ORDER if k in exp]
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _context(text: str, offset: int) -> str:
    before = " ".join(text[:offset].split())
    if not before:
        return " at the start of the condition"
    if len(before) > 40:
        before = "..." + before[-40:]
    return f" after '{before}'"


def _syntax_error(text: str, smap: SourceMap, exc: UnexpectedInput) -> RuleError:
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            offset, what = len(text.rstrip()), "end of the condition"
        else:
            offset = tok.start_pos if tok.start_pos is not None else 0
            what = f"'{tok.value}'"
        expected: Iterable[str] = exc.accepts or exc.expected
    elif isinstance(exc, UnexpectedCharacters):
        offset = exc.pos_in_stream or 0
        ch = text[offset] if offset < len(text) else ""
        if ch and ch in "\"'":
            return _err(f"unterminated string: {ch} is never closed", smap.pos(offset))
        what = f"'{ch}'" if ch.isprintable() and ch else repr(ch)
        expected = exc.allowed or ()
    elif isinstance(exc, UnexpectedEOF):
        offset, what = len(text.rstrip()), "end of the condition"
        expected = exc.expected
    else:
        offset, what, expected = 0, "input", ()
    want = _expected_text(expected)
    msg = f"unexpected {what}{_context(text, offset)}" + (f": expected {want}" if want else "")
    return _err(msg, smap.pos(offset))


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def unquote(tok: str) -> str:
    """The text of a quoted literal: \\\\ \\" \\' \\n \\t \\r \\0 are escapes, any other backslash stays."""
    body = tok[1:-1]
    if "\\" not in body:
        return body
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            else:
                out.append(ch + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


_INDEXED = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\[([0-9]+)\]")


class _Builder:
    """Walks one lark tree into AST nodes, gathering errors instead of stopping at the first."""

    def __init__(self, text: str, smap: SourceMap, names: Names) -> None:
        self.text = text
        self.smap = smap
        self.names = names
        self.errors: list[RuleError] = []
        self.size = 0

    def build(self) -> Node:
        try:
            tree = parser().parse(self.text)
        except UnexpectedInput as exc:
            raise _syntax_error(self.text, self.smap, exc) from None
        except _ReservedName as exc:
            off = exc.token.start_pos or 0
            raise _err(f"unexpected '{exc.token}'{_context(self.text, off)}: expected a condition",
                       self.smap.pos(off)) from None
        node = self.node(tree.children[0], 0)
        if self.size > MAX_SIZE:
            self.fail(f"condition too large once macros are expanded ({self.size} nodes, at most {MAX_SIZE})",
                      self.smap.pos(0))
        if self.errors:
            first = self.errors[0]
            raise RuleError(first.reason, file=first.file, line=first.line, col=first.col, errors=self.errors)
        return node

    def fail(self, msg: str, pos: Pos) -> Const:
        self.errors.append(_err(msg, pos))
        return Const(True)

    def pos(self, tok: Token) -> Pos:
        return self.smap.pos(tok.start_pos or 0)

    def first_pos(self, t: Tree[Token] | Token) -> Pos:
        while isinstance(t, Tree):
            t = t.children[0]
        return self.pos(t)

    # -- conditions

    def node(self, t: Tree[Token] | Token, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise _err(f"condition nested more than {MAX_DEPTH} levels deep", self.first_pos(t))
        self.size += 1
        assert isinstance(t, Tree)
        kind = t.data
        if kind == "or_":
            return Or(tuple(self.node(c, depth + 1) for c in t.children))
        if kind == "and_":
            return And(tuple(self.node(c, depth + 1) for c in t.children))
        if kind == "not_":
            return Not(self.node(t.children[0], depth + 1))
        if kind == "macro":
            return self.macro(t.children[0])
        left = self.operand(t.children[0])
        if kind == "exists":
            if left is None:
                return Const(True)
            if isinstance(left, Call):
                return self.fail("'exists' applies to a field, not a function", left.pos)
            assert isinstance(left, Field)
            return Exists(left, left.pos)
        if kind in ("in_", "cidr"):
            op = "in" if kind == "in_" else "cidr"
            items = self.items(t.children[1:])
            if left is None:
                return Const(True)
            values = tuple(v for v in (self.literal(i, left, op) for i in items) if v is not None)
            if not items:
                return Const(False)
            return Compare(left, op, values, left.pos)
        if kind == "compare":
            op_tok = t.children[1]
            assert isinstance(op_tok, Token)
            op = str(op_tok).lower()
            value = self.value(t.children[2], left, op)
            if left is None or value is None:
                return Const(True)
            return Compare(left, op, value, left.pos)
        raise _err(f"internal: unexpected tree {kind}", self.first_pos(t))  # pragma: no cover

    def macro(self, tok: Tree[Token] | Token) -> Node:
        assert isinstance(tok, Token)
        name, pos = str(tok), self.pos(tok)
        if name in self.names.macros:
            try:
                node, size = self.names.macro(name, pos)
            except RuleError as exc:
                self.errors.append(exc)
                return Const(True)
            self.size += size
            return node
        if name in fieldtab.FIELDS:
            return self.fail(f"field '{name}' needs an operator after it (=, in, exists, ...)", pos)
        if name in self.names.lists:
            return self.fail(f"list '{name}' can only be used inside in (...) or cidr (...)", pos)
        hints = difflib.get_close_matches(name, [*self.names.macros, *fieldtab.FIELDS], n=1, cutoff=0.75)
        return self.fail(f"unknown macro '{name}'" + (f" (did you mean '{hints[0]}'?)" if hints else ""), pos)

    # -- operands

    def operand(self, t: Tree[Token] | Token) -> Field | Call | None:
        assert isinstance(t, Tree)
        name_tok = t.children[0]
        assert isinstance(name_tok, Token)
        pos = self.pos(name_tok)
        if t.data == "call":
            func = str(name_tok).lower()
            arg = self.operand(t.children[1])
            if func not in FUNCS:
                self.fail(f"unknown function '{name_tok}' (known: {', '.join(FUNCS)})", pos)
                return None
            return self.typed(Call(func, arg, pos)) if arg is not None else None
        index = None
        if t.data == "index":
            idx_tok = t.children[1]
            assert isinstance(idx_tok, Token)
            index = int(idx_tok)
        return self.field(str(name_tok), index, pos)

    def field(self, name: str, index: int | None, pos: Pos) -> Field | None:
        f = self.typed(Field(name, index, pos))
        assert f is None or isinstance(f, Field)
        return f

    def typed(self, o: Field | Call) -> Field | Call | None:
        """``o`` when its type is sound (known field, index on a list, function of the right type)."""
        try:
            operand_type(o)
        except RuleError as exc:
            self.errors.append(exc)
            return None
        return o

    def value(self, t: Tree[Token] | Token, left: Field | Call | None, op: str) -> Operand | None:
        if isinstance(t, Tree):       # vcall: a function of a field on the right
            fn_tok = t.children[0]
            assert isinstance(fn_tok, Token)
            func = str(fn_tok).lower()
            arg = self.operand(t.children[1])
            if func not in FUNCS:
                self.fail(f"unknown function '{fn_tok}' (known: {', '.join(FUNCS)})", self.pos(fn_tok))
                return None
            return self.typed(Call(func, arg, self.pos(fn_tok))) if arg is not None else None
        tok = t
        if tok.type == "BAREWORD":
            text = str(tok)
            if text.lower() in RESERVED:
                self.fail(f"unexpected '{text}'{_context(self.text, tok.start_pos or 0)}: expected a value",
                          self.pos(tok))
                return None
            if text in fieldtab.FIELDS:
                return Field(text, None, self.pos(tok))
            m = _INDEXED.fullmatch(text)
            if m and m.group(1) in fieldtab.FIELDS:
                return self.field(m.group(1), int(m.group(2)), self.pos(tok))
        item = self.item(tok)
        if left is None:
            return None
        return self.literal(item, left, op)

    def item(self, tok: Token) -> Item:
        if tok.type in ("DQSTRING", "SQSTRING"):
            return Item(unquote(str(tok)), True, self.pos(tok))
        return Item(str(tok), False, self.pos(tok))

    def items(self, toks: list[Tree[Token] | Token]) -> list[Item]:
        out: list[Item] = []
        for tok in toks:
            assert isinstance(tok, Token)
            it = self.item(tok)
            if not it.quoted and it.text.lower() in RESERVED:
                self.fail(f"unexpected '{it.text}'{_context(self.text, tok.start_pos or 0)}: expected a value",
                          it.pos)
                continue
            if not it.quoted and it.text in self.names.lists:
                try:
                    out.extend(self.names.list_items(it.text, it.pos))
                except RuleError as exc:
                    self.errors.append(exc)
                continue
            out.append(it)
        return out

    def literal(self, it: Item, left: Field | Call | None, op: str) -> Literal | None:
        """The value of ``it`` typed after the left operand: barewords become numbers or booleans where
        the field is one, and stay text where the field is text."""
        if left is None:
            return None
        want = elem_type(operand_type(left))
        if op in ("startswith", "endswith", "contains", "istartswith", "iendswith", "icontains", "iequals",
                  "glob", "regex", "cidr"):
            want = "str"
        elif op == "bitand":
            want = "int"
        if it.quoted or want == "str":
            return it.text
        if want in ("int", "float"):
            n = parse_number(it.text)
            if n is None:
                self.fail(f"'{it.text}' is not a number ({describe(left)} is {want})", it.pos)
                return None
            return n
        if want == "bool":
            low = it.text.lower()
            if low not in ("true", "false"):
                self.fail(f"'{it.text}' is not true or false ({describe(left)} is bool)", it.pos)
                return None
            return low == "true"
        n = parse_number(it.text)
        if n is not None:
            return n
        if it.text.lower() in ("true", "false"):
            return it.text.lower() == "true"
        return it.text


# ---------------------------------------------------------------- printing

def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") \
        .replace("\r", "\\r").replace("\0", "\\0") + '"'


def _lit_text(v: Literal) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return _quote(v)


def _operand_text(o: Operand) -> str:
    if isinstance(o, Field | Call):
        return describe(o)
    return _lit_text(o)


def to_text(node: Node) -> str:
    """Write a condition tree back in the language (parses to the same tree, positions aside)."""
    if isinstance(node, Compare):
        left = _operand_text(node.left)
        if node.op in ("in", "cidr"):
            vals = node.value if isinstance(node.value, tuple) else (node.value,)
            return f"{left} {node.op} ({', '.join(_operand_text(v) for v in vals)})"
        assert not isinstance(node.value, tuple)
        return f"{left} {node.op} {_operand_text(node.value)}"
    if isinstance(node, Exists):
        return f"{describe(node.field)} exists"
    if isinstance(node, Not):
        return f"not ({to_text(node.item)})"
    if isinstance(node, And | Or):
        word = " and " if isinstance(node, And) else " or "
        return word.join(f"({to_text(i)})" for i in node.items)
    raise ValueError(f"{node!r} has no text form")


def strip_positions(node: Any) -> Any:
    """The same tree with every position reset (to compare trees built from different texts)."""
    if isinstance(node, Field):
        return Field(node.name, node.index)
    if isinstance(node, Call):
        return Call(node.func, strip_positions(node.arg))
    if isinstance(node, Compare):
        v = node.value
        return Compare(strip_positions(node.left), node.op, v if isinstance(v, tuple) else strip_positions(v))
    if isinstance(node, Exists):
        return Exists(strip_positions(node.field))
    if isinstance(node, And):
        return And(tuple(strip_positions(i) for i in node.items))
    if isinstance(node, Or):
        return Or(tuple(strip_positions(i) for i in node.items))
    if isinstance(node, Not):
        return Not(strip_positions(node.item))
    return node


def names_from(lists: Mapping[str, Iterable[str]] | None = None,
               macros: Mapping[str, str] | None = None) -> Names:
    """Names for tests and tools: lists of plain items and macros given as text."""
    n = Names()
    for name, items in (lists or {}).items():
        n.lists[name] = ListDef(name, [Item(str(i), False, Pos()) for i in items], Pos())
    for name, text in (macros or {}).items():
        n.macros[name] = MacroDef(name, text, SourceMap.plain(text, f"<macro {name}>"), Pos(f"<macro {name}>", 1, 1))
    return n


