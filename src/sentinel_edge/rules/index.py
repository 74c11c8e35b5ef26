"""How the engine avoids evaluating every rule on every event.

Three mechanisms, all exact (they never change which rules match):

1. Buckets by (event kind, operation). A rule's kinds come from the compiler
   (``kinds_of``); its operations from a top-level ``event.op = X`` /
   ``event.op in (...)`` conjunct (:func:`rule_ops`).

2. Keys. For each rule, a necessary condition on one string (or boolean)
   operand, taken from a top-level conjunct (:func:`rule_keys`): equality /
   ``in`` / ``iequals`` (set lookup), a prefix (``startswith``, the literal
   head of a ``glob`` or of an anchored ``regex``), a suffix (``endswith``, the
   literal tail of a ``glob``), or a substring (``contains``). An ``or`` whose
   every branch has a key gives several keys (the rule is a candidate when one
   passes). Rules sharing an operand and a test form a group, tested once per
   event: one set lookup, one ``str.startswith(tuple)``, ``str.endswith(tuple)``
   or one regular expression for all substrings. Rules with no key are always
   candidates of their bucket.

3. Shared atoms. Every comparison of every rule in a bucket is an *atom*,
   numbered once per bucket (identical comparisons written in different
   rules or expanded from one macro share a number). Each rule is compiled
   to Python source over its atoms (``and``/``or``/``not`` with short-circuit),
   and an atom's value is computed at most once per event (a per-event memo
   list), so ``event.kind = file and event.op = open and file.is_write = true``
   costs its three tests once for all the rules that start with it. The atom
   itself is the compiler's own predicate (``compile_condition`` of the
   comparison): same semantics as the rule compiled on its own.
"""

from __future__ import annotations

import dataclasses
import re
import re._constants as _sre  # type: ignore[import-not-found]  # stdlib regex parser internals
import re._parser as _sre_parser  # type: ignore[import-not-found]
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sentinel_edge.errors import RuleError
from sentinel_edge.model import Event
from sentinel_edge.rules.ast import And, Call, Compare, Const, Exists, Field, Node, Not, Or, Pos
from sentinel_edge.rules.compiler import (
    CompiledRule,
    compile_condition,
    compile_getter,
    describe,
    kinds_of,
    operand_type,
)

_NOPOS = Pos()

# op -> (mode, case-insensitive)
_KEY_OPS = {
    "=": ("eq", False), "in": ("eq", False), "iequals": ("eq", True),
    "startswith": ("pre", False), "istartswith": ("pre", True),
    "endswith": ("suf", False), "iendswith": ("suf", True),
    "contains": ("sub", False), "icontains": ("sub", True),
}
# lower is a better (more selective, cheaper) key
_MODE_RANK = {"eq": 0, "ieq": 0, "pre": 1, "suf": 2, "sub": 3, "beq": 4}
# fields indexed by bucket already
_NOT_KEYS = {"event.kind", "event.op"}
_REGEX_META = set(".^$*+?{}[]\\|()")
_GLOB_META = set("*?[")
# shortest literal worth a substring key
MIN_LITERAL = 3


def conjuncts(node: Node) -> list[Node]:
    if isinstance(node, And):
        out: list[Node] = []
        for item in node.items:
            out.extend(conjuncts(item))
        return out
    return [node]


def _str_values(c: Compare) -> tuple[str, ...] | None:
    vals = c.value if isinstance(c.value, tuple) else (c.value,)
    if not vals or not all(isinstance(v, str) for v in vals):
        return None
    return tuple(v for v in vals if isinstance(v, str))


def rule_ops(node: Node | None) -> frozenset[str] | None:
    """The ops a rule requires (top-level ``event.op = X`` / ``in``); None when any op will do."""
    if node is None:
        return None
    ops: frozenset[str] | None = None
    for c in conjuncts(node):
        if (isinstance(c, Compare) and isinstance(c.left, Field) and c.left.name == "event.op"
                and c.left.index is None and c.op in ("=", "in")):
            vals = _str_values(c)
            if vals is not None:
                ops = frozenset(vals) if ops is None else ops & frozenset(vals)
    return ops


@dataclass(frozen=True, slots=True)
class RuleKey:
    """A necessary condition: ``operand <mode> one of values`` (values lower-cased when ci)."""

    operand: str            # describe() of the operand: with mode and ci, the group's identity
    mode: str               # eq | beq | pre | suf | sub
    ci: bool
    values: tuple[Any, ...]
    rank: int


def _has_top_level_alternation(body: str) -> bool:
    depth = 0
    i = 0
    in_class = False
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
        i += 1
    return False


def _regex_prefixes(pattern: str) -> tuple[str, ...] | None:
    """Literal prefixes one of which every match of an anchored regex starts with (None: unknown)."""
    if not pattern.startswith("^") or _has_top_level_alternation(pattern[1:]):
        return None
    body = pattern[1:]
    head = []
    for ch in body:
        if ch in _REGEX_META:
            break
        head.append(ch)
    literal = "".join(head)
    rest = body[len(literal):]
    if rest[:1] in ("*", "?", "{") and literal:
        literal = literal[:-1]  # the last char is optional or repeated
    if len(literal) >= 2:
        return (literal,)
    if literal:
        return None
    # ^(a|b|c)... with plain literal branches, the group not optional or repeated
    m = re.match(r"\((?:\?:)?([^()\[\]{}*+?.^$\\|]+(?:\|[^()\[\]{}*+?.^$\\|]+)*)\)", body)
    if m is None or body[m.end():m.end() + 1] in ("?", "*", "{"):
        return None
    alts = tuple(m.group(1).split("|"))
    if all(len(a) >= 2 for a in alts):
        return alts
    return None


def _seq_required(items: list[Any]) -> list[str] | None:
    """Literals one of which every match of this regex sequence contains (None: unknown)."""
    best: list[str] | None = None

    def consider(cand: list[str] | None) -> None:
        nonlocal best
        if not cand or any(len(x) < MIN_LITERAL for x in cand):
            return
        # fewer alternatives first, then the longest shortest one
        if best is None or (len(cand), -min(map(len, cand))) < (len(best), -min(map(len, best))):
            best = cand

    run: list[str] = []
    for op, av in items:
        if op is _sre.LITERAL:
            run.append(chr(av))
            continue
        consider(["".join(run)])
        run = []
        if op is _sre.SUBPATTERN:
            if av[1] or av[2]:  # inline flags inside: give up on this part
                continue
            consider(_seq_required(list(av[3])))
        elif op is _sre.BRANCH:
            alts: list[str] = []
            for branch in av[1]:
                r = _seq_required(list(branch))
                if r is None:
                    alts = []
                    break
                alts.extend(r)
            consider(alts or None)
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            consider(_seq_required(list(av[2])))
    consider(["".join(run)])
    return best


def regex_required(pattern: str) -> tuple[str, ...] | None:
    """Substrings one of which every match of ``pattern`` (search semantics) contains, or None."""
    try:
        parsed = _sre_parser.parse(pattern)
    except re.error:
        return None
    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    req = _seq_required(list(parsed))
    return tuple(dict.fromkeys(req)) if req else None


def _glob_affixes(pattern: str) -> tuple[str, str]:
    """(literal head, literal tail) of a glob: every match starts with the head and ends with the tail."""
    i = 0
    while i < len(pattern) and pattern[i] not in _GLOB_META:
        i += 1
    j = len(pattern)
    while j > i and pattern[j - 1] not in _GLOB_META and pattern[j - 1] != "]":
        j -= 1
    return pattern[:i], (pattern[j:] if j > i else "")


def _compare_keys(c: Compare) -> list[tuple[RuleKey, Field | Call]] | None:
    if not isinstance(c.left, Field | Call):
        return None
    if isinstance(c.left, Field) and c.left.name in _NOT_KEYS:
        return None
    try:
        t = operand_type(c.left)
    except RuleError:
        return None
    operand = describe(c.left)
    if t == "bool" and c.op == "=" and isinstance(c.value, bool):
        return [(RuleKey(operand, "beq", False, (c.value,), _MODE_RANK["beq"]), c.left)]
    if t in ("int", "list[int]") and c.op in ("=", "in"):
        ints = c.value if isinstance(c.value, tuple) else (c.value,)
        if ints and all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            return [(RuleKey(operand, "ieq", False, tuple(ints), _MODE_RANK["ieq"]), c.left)]
        return None
    if t not in ("str", "list[str]"):
        return None
    vals = _str_values(c)
    if vals is None:
        return None
    if c.op in _KEY_OPS:
        mode, ci = _KEY_OPS[c.op]
        if mode != "eq" and any(v == "" for v in vals):
            return None  # an empty prefix/suffix/substring matches everything
        vs = tuple(v.lower() for v in vals) if ci else vals
        return [(RuleKey(operand, mode, ci, vs, _MODE_RANK[mode]), c.left)]
    if c.op == "glob":
        heads, tails = zip(*(_glob_affixes(v) for v in vals), strict=True)
        if all(len(h) >= 2 for h in heads):
            return [(RuleKey(operand, "pre", False, tuple(heads), _MODE_RANK["pre"]), c.left)]
        if all(len(x) >= 2 for x in tails):
            return [(RuleKey(operand, "suf", False, tuple(tails), _MODE_RANK["suf"]), c.left)]
        return None
    if c.op == "regex":
        prefixes: list[str] = []
        for v in vals:
            p = _regex_prefixes(v)
            if p is None:
                break
            prefixes.extend(p)
        else:
            return [(RuleKey(operand, "pre", False, tuple(prefixes), _MODE_RANK["pre"]), c.left)]
        subs: list[str] = []
        for v in vals:
            q = regex_required(v)
            if q is None:
                return None
            subs.extend(q)
        return [(RuleKey(operand, "sub", False, tuple(subs), _MODE_RANK["sub"]), c.left)]
    return None


Keys = list[tuple[RuleKey, Field | Call]]


def rule_keys(node: Node | None) -> Keys | None:
    """Keys of which one passes whenever the rule matches (None: no key, always a candidate)."""
    if node is None:
        return None
    if isinstance(node, Compare):
        return _compare_keys(node)
    if isinstance(node, Or):
        out: list[tuple[RuleKey, Field | Call]] = []
        for item in node.items:
            k = rule_keys(item)
            if k is None:
                return None
            out.extend(k)
        return out
    if isinstance(node, And):
        best: list[tuple[RuleKey, Field | Call]] | None = None
        best_rank = 99
        for item in conjuncts(node):
            k = rule_keys(item) if isinstance(item, Compare | Or) else None
            if not k:
                continue
            rank = max(key.rank for key, _ in k) * 8 + min(len(k), 7)
            if rank < best_rank:
                best, best_rank = k, rank
        return best
    return None


def specialize(node: Node, kind: str, op: str | None) -> Node:
    """The condition as events of one (kind, op) can meet it: branches of an ``or`` that require
    another kind or op are dropped (an ``or`` left with none is false). Exact for those events;
    used to find keys per bucket (``file_modified and ...`` keeps only its open branch for opens)."""
    if isinstance(node, And):
        items = tuple(specialize(i, kind, op) for i in node.items)
        if any(isinstance(i, Const) and not i.value for i in items):
            return Const(False)
        return And(items)
    if isinstance(node, Or):
        kept = []
        for item in node.items:
            ks = kinds_of(item)
            ops = rule_ops(item)
            if (ks is not None and kind not in ks) or (ops is not None and op not in ops):
                continue
            s = specialize(item, kind, op)
            if not (isinstance(s, Const) and not s.value):
                kept.append(s)
        if not kept:
            return Const(False)
        return kept[0] if len(kept) == 1 else Or(tuple(kept))
    if isinstance(node, Compare | Exists) and _absent(node, kind, op):
        return Const(False)
    return node


# fields that have a value only for some ops of their kind (rules/fields.py): a comparison on
# them is false for events of any other op, as every comparison on a missing value is
OP_ONLY_FIELDS = {
    "file.new_path": frozenset({"rename", "link", "symlink"}),
    "file.new_name": frozenset({"rename", "link", "symlink"}),
    "file.target": frozenset({"symlink"}),
}


def _absent(node: Compare | Exists, kind: str, op: str | None) -> bool:
    """The node's (left) field certainly has no value for events of this kind and op."""
    if isinstance(node, Compare) and isinstance(node.value, tuple) and not node.value:
        return False  # an empty value list compiles to a constant, whatever the field
    left: Any = node.field if isinstance(node, Exists) else node.left
    while isinstance(left, Call):
        left = left.arg
    if not isinstance(left, Field):
        return False
    ops = OP_ONLY_FIELDS.get(left.name)
    return ops is not None and kind == "file" and op not in ops


def key_options(node: Node | None) -> list[Keys]:
    """Every key set a rule could be indexed by (one per keyable top-level conjunct)."""
    if node is None:
        return []
    if isinstance(node, And):
        out = []
        for item in conjuncts(node):
            k = rule_keys(item) if isinstance(item, Compare | Or) else None
            if k:
                out.append(k)
        return out
    k = rule_keys(node)
    return [k] if k else []


def choose_keys(options: dict[str, list[Keys]]) -> dict[str, Keys | None]:
    """One key set per rule, preferring operands many rules test (each operand is one field read
    per event in the generated index), then the more selective test."""
    popularity: dict[str, int] = {}
    same: dict[RuleKey, int] = {}
    for opts in options.values():
        for operand in {key.operand for keys in opts for key, _ in keys}:
            popularity[operand] = popularity.get(operand, 0) + 1
        for key in {key for keys in opts for key, _ in keys}:
            same[key] = same.get(key, 0) + 1

    def score(keys: Keys) -> tuple[int, int, int, int]:
        weak = max(key.rank for key, _ in keys) >= _MODE_RANK["beq"]
        # a field of a handful of values tested alike in many rules is a shared filter (Sigma's
        # `net.family in (inet, inet6)` in every network rule): it tells those rules apart from
        # nothing and most events pass it, so another key is better
        shared = any(key.operand in COARSE_OPERANDS and same[key] > SHARED_KEY_RULES for key, _ in keys)
        return (int(weak), int(shared), -min(popularity[key.operand] for key, _ in keys),
                max(key.rank for key, _ in keys) * 8 + min(len(keys), 7))

    return {rid: (min(opts, key=score) if opts else None) for rid, opts in options.items()}


class _Group:
    """Rules whose keys test the same operand the same way; tested once per event."""

    def __init__(self, operand: Field | Call, mode: str, ci: bool) -> None:
        self.operand = describe(operand)
        self.get = compile_getter(operand)
        try:
            self.scalar_str = operand_type(operand) == "str"
        except RuleError:
            self.scalar_str = False
        self.mode = mode
        self.ci = ci
        self.entries: list[tuple[int, RuleKey]] = []  # (rule slot, key)
        self._by_value: dict[Any, list[int]] = {}
        self._affixes: tuple[str, ...] = ()
        self._rx: re.Pattern[str] | None = None

    def add(self, slot: int, key: RuleKey) -> None:
        self.entries.append((slot, key))

    def seal(self) -> None:
        if self.mode in ("eq", "beq", "ieq"):
            for slot, key in self.entries:
                for v in set(key.values):
                    self._by_value.setdefault(v, []).append(slot)
            return
        vals = sorted({v for _, key in self.entries for v in key.values})
        self._affixes = tuple(vals)
        if self.mode == "sub":
            self._rx = re.compile("|".join(re.escape(v) for v in vals))

    def refine(self, x: str, out: set[int]) -> None:
        """The group's affix test passed on x: add the rules whose own values pass."""
        for slot, key in self.entries:
            if slot not in out and _key_passes(key, x):
                out.add(slot)

    def hits(self, ev: Event, out: set[int]) -> None:
        """Reference implementation of the generated test (used by tests)."""
        v = self.get(ev)
        if v is None:
            return
        if self.mode == "beq":
            found = self._by_value.get(v)
            if found:
                out.update(found)
            return
        if self.mode == "ieq":
            for x in (v if isinstance(v, list) else (v,)):
                found = self._by_value.get(x)
                if found:
                    out.update(found)
            return
        for x in (v if isinstance(v, list) else (v,)):
            if not isinstance(x, str):
                continue
            if self.ci:
                x = x.lower()
            if self.mode == "eq":
                found = self._by_value.get(x)
                if found:
                    out.update(found)
                continue
            if self.mode == "pre":
                ok = x.startswith(self._affixes)
            elif self.mode == "suf":
                ok = x.endswith(self._affixes)
            else:
                assert self._rx is not None
                ok = self._rx.search(x) is not None
            if ok:
                for slot, key in self.entries:
                    if slot not in out and _key_passes(key, x):
                        out.add(slot)


def _key_passes(key: RuleKey, x: str) -> bool:
    if key.mode == "pre":
        return x.startswith(key.values)
    if key.mode == "suf":
        return x.endswith(key.values)
    return any(s in x for s in key.values)


def _strip(n: Any) -> Any:
    """The node without positions, so equal comparisons from different places are one atom."""
    if isinstance(n, Field):
        return dataclasses.replace(n, pos=_NOPOS)
    if isinstance(n, Call):
        return dataclasses.replace(n, arg=_strip(n.arg), pos=_NOPOS)
    if isinstance(n, Compare):
        return dataclasses.replace(n, left=_strip(n.left), value=_strip(n.value), pos=_NOPOS)
    if isinstance(n, Exists):
        return dataclasses.replace(n, field=_strip(n.field), pos=_NOPOS)
    return n


_UNSET = object()
# a test of one of these few-valued fields written identically in more rules than this is a
# shared filter, a poor key
SHARED_KEY_RULES = 2
COARSE_OPERANDS = frozenset({"net.family", "net.type", "net.proto", "net.state", "net.old_state", "event.errno"})
# fewest rules sharing a key test for it to be tested as a group
MIN_GROUP = 1
# an And is tested cheapest-first, like the compiler does (atoms are pure, order only changes speed)
_COST_FIRST = ("event.kind", "event.op", "event.success")


def _cost(n: Node) -> int:
    if isinstance(n, Compare):
        if isinstance(n.left, Field) and n.left.name in _COST_FIRST:
            return 0
        if n.op in ("regex", "glob", "cidr") or isinstance(n.left, Call):
            return 3
        return 1 if n.op in ("=", "in", "!=", "bitand") else 2
    if isinstance(n, Exists | Const):
        return 1
    if isinstance(n, Not):
        return _cost(n.item)
    return 4


class Bucket:
    """The rules one (kind, op) can meet, compiled over shared atoms, with their key groups."""

    def __init__(self, rules: Sequence[CompiledRule], keys: dict[str, Keys | None]) -> None:
        self.rules = list(rules)
        self._atoms: dict[Any, int] = {}
        self._atom_fns: list[Callable[[Event], bool]] = []
        self.matchers: list[Callable[[Event, list[Any]], bool]] = [self._gen(r) for r in self.rules]
        # sequences: one matcher per step over the same atoms (their node is the Or of the steps)
        self.step_matchers: list[list[Callable[[Event, list[Any]], bool]] | None] = [
            self._gen_steps(r) for r in self.rules]
        self.n_atoms = len(self._atom_fns)
        # a group costs a field read and a test per event: worth it only when it can skip several
        # rules at once; rules keyed only by smaller groups are evaluated directly (memoized atoms)
        count: dict[tuple[str, str, bool], int] = {}
        for r in self.rules:
            for key, _ in keys.get(r.meta.id) or ():
                gid = (key.operand, key.mode, key.ci)
                count[gid] = count.get(gid, 0) + 1
        self.plain: list[int] = []
        groups: dict[tuple[str, str, bool], _Group] = {}
        for slot, r in enumerate(self.rules):
            k = keys.get(r.meta.id)
            if not k or any(count[(key.operand, key.mode, key.ci)] < MIN_GROUP for key, _ in k):
                self.plain.append(slot)
                continue
            for key, operand in k:
                gid = (key.operand, key.mode, key.ci)
                g = groups.get(gid)
                if g is None:
                    g = groups[gid] = _Group(operand, key.mode, key.ci)
                g.add(slot, key)
        for g in groups.values():
            g.seal()
        self.groups = tuple(groups.values())
        self._all = list(range(len(self.rules)))
        self._cand = self._gen_candidates()

    def candidates(self, ev: Event) -> list[int]:
        """Slots of the rules to evaluate for this event, in load order."""
        if not self.groups:
            return self._all
        out: set[int] = set(self.plain)
        self._cand(ev, out)
        return sorted(out)

    def _gen_candidates(self) -> Callable[[Event, set[int]], None]:
        """One function testing every group: each operand read once, each group one C-level test."""
        by_operand: dict[str, list[int]] = {}
        for gi, g in enumerate(self.groups):
            by_operand.setdefault(g.operand, []).append(gi)
        ns: dict[str, Any] = {}
        lines = ["def cand(e, out):"]
        for oi, gis in enumerate(by_operand.values()):
            g0 = self.groups[gis[0]]
            ns[f"G{oi}"] = g0.get
            lines.append(f"    v = G{oi}(e)")
            lines.append("    if v is not None:")
            beq = [gi for gi in gis if self.groups[gi].mode == "beq"]
            strs = [gi for gi in gis if self.groups[gi].mode != "beq"]
            for gi in beq:
                ns[f"D{gi}"] = self.groups[gi]._by_value
                lines.append(f"        h = D{gi}.get(v)")
                lines.append("        if h:")
                lines.append("            out.update(h)")
            ieq = [gi for gi in gis if self.groups[gi].mode == "ieq"]
            for gi in ieq:
                ns[f"D{gi}"] = self.groups[gi]._by_value
                lines.append("        for x in (v if type(v) is list else (v,)):")
                lines.append(f"            h = D{gi}.get(x)")
                lines.append("            if h:")
                lines.append("                out.update(h)")
            strs = [gi for gi in strs if self.groups[gi].mode != "ieq"]
            if not strs:
                lines.append("        pass")
                continue
            if g0.scalar_str:
                # a str operand: no loop over elements
                lines.append("        x = v")
                lines.append("        if True:")
            else:
                lines.append("        for x in (v if type(v) is list else (v,)):")
                lines.append("            if type(x) is not str:")
                lines.append("                continue")
            if any(self.groups[gi].ci for gi in strs):
                lines.append("            xl = x.lower()")
            for gi in strs:
                g = self.groups[gi]
                var = "xl" if g.ci else "x"
                if g.mode == "eq":
                    ns[f"D{gi}"] = g._by_value
                    lines.append(f"            h = D{gi}.get({var})")
                    lines.append("            if h:")
                    lines.append("                out.update(h)")
                    continue
                ns[f"R{gi}"] = g.refine
                if g.mode == "pre":
                    ns[f"A{gi}"] = g._affixes
                    lines.append(f"            if {var}.startswith(A{gi}):")
                elif g.mode == "suf":
                    ns[f"A{gi}"] = g._affixes
                    lines.append(f"            if {var}.endswith(A{gi}):")
                else:
                    assert g._rx is not None
                    ns[f"S{gi}"] = g._rx.search
                    lines.append(f"            if S{gi}({var}) is not None:")
                lines.append(f"                R{gi}({var}, out)")
        lines.append("    return None")
        exec(compile("\n".join(lines) + "\n", "<rule index>", "exec"), ns)
        fn: Callable[[Event, set[int]], None] = ns["cand"]
        return fn

    def new_memo(self) -> list[Any]:
        return [_UNSET] * self.n_atoms

    # -- code generation ------------------------------------------------------------

    def _atom(self, n: Node) -> int:
        key = _strip(n)
        i = self._atoms.get(key)
        if i is None:
            i = self._atoms[key] = len(self._atom_fns)
            self._atom_fns.append(compile_condition(n))
        return i

    def _expr(self, n: Node) -> str:
        if isinstance(n, Compare | Exists):
            i = self._atom(n)
            return f"(m[{i}] if m[{i}] is not U else A({i}, e, m))"
        if isinstance(n, Const):
            return "True" if n.value else "False"
        if isinstance(n, Not):
            return f"(not {self._expr(n.item)})"
        if isinstance(n, And):
            return "(" + " and ".join(self._expr(i) for i in sorted(n.items, key=_cost)) + ")"
        if isinstance(n, Or):
            return "(" + " or ".join(self._expr(i) for i in n.items) + ")"
        raise RuleError(f"not a condition node: {n!r}")

    def _gen(self, r: CompiledRule) -> Callable[[Event, list[Any]], bool]:
        if r.node is None:
            match = r.match
            return lambda e, m: match(e)
        try:
            src = f"def rule(e, m):\n    return {self._expr(r.node)}\n"
            ns: dict[str, Any] = {"U": _UNSET, "A": self._compute}
            exec(compile(src, f"<rule {r.meta.id}>", "exec"), ns)
        except (RecursionError, SyntaxError, MemoryError):  # too deep for generated code: use the closure
            match = r.match
            return lambda e, m: match(e)
        fn: Callable[[Event, list[Any]], bool] = ns["rule"]
        return fn

    def _gen_steps(self, r: CompiledRule) -> list[Callable[[Event, list[Any]], bool]] | None:
        steps = getattr(r.correlator, "steps", None)
        if steps is None or not isinstance(r.node, Or) or len(r.node.items) != len(steps):
            return None
        out = []
        for i, item in enumerate(r.node.items):
            sub = dataclasses.replace(r, node=item, meta=dataclasses.replace(r.meta, id=f"{r.meta.id}#{i}"))
            out.append(self._gen(sub))
        return out

    def _compute(self, i: int, e: Event, m: list[Any]) -> bool:
        v = self._atom_fns[i](e)
        m[i] = v
        return v
