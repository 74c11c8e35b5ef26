"""Native rule files (YAML) to compiled rules, with every problem located.

A load reads every file first (lists, macros and rules are global across
files and may come in any order), then checks every macro, then compiles
each rule. Nothing stops at the first problem: a broken rule is reported and
the others still load, and ``RuleSet.errors`` holds one RuleError per
problem, each naming file:line:column (YAML is composed into nodes, which
keep their marks, so even a value's position inside a folded block scalar is
known).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sentinel_edge.errors import RuleError
from sentinel_edge.model import KIND_EXEC, KIND_FILE, KIND_NET, Event
from sentinel_edge.rules import fields as fieldtab
from sentinel_edge.rules.ast import And, Field, Node, Not, Or, Pos
from sentinel_edge.rules.compiler import (
    CompiledRule,
    Predicate,
    compile_condition,
    compile_getter,
    compile_template,
    kinds_of,
)
from sentinel_edge.rules.correlate import (
    DEFAULT_MAX_KEYS,
    SequenceCorrelator,
    Step,
    ThresholdCorrelator,
    parse_duration,
)
from sentinel_edge.rules.lang import RESERVED, Item, ListDef, MacroDef, Names, SourceMap, parse_condition
from sentinel_edge.rules.model import ACTION_KINDS, SEVERITIES, ActionSpec, Attack, RuleMeta

DEFAULT_DIR = Path(__file__).parent / "default"
RULE_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TECHNIQUE_RE = re.compile(r"T[0-9]{4}(\.[0-9]{3})?")
# the 14 tactics of the ATT&CK Enterprise matrix, by short name
TACTICS = (
    "reconnaissance", "resource-development", "initial-access", "execution", "persistence",
    "privilege-escalation", "defense-evasion", "credential-access", "discovery", "lateral-movement",
    "collection", "command-and-control", "exfiltration", "impact",
)
RULE_TYPES = ("match", "sequence", "threshold")
COMMON_KEYS = {"rule", "title", "description", "severity", "attack", "tags", "output", "enabled", "type",
               "actions"}
KEYS_BY_TYPE = {
    "match": COMMON_KEYS | {"condition", "exceptions"},
    "sequence": COMMON_KEYS | {"steps", "by", "within", "exceptions"},
    "threshold": COMMON_KEYS | {"condition", "by", "within", "count", "distinct", "exceptions"},
}
LIST_KEYS = {"list", "items"}
MACRO_KEYS = {"macro", "condition"}
STEP_KEYS = {"name", "condition", "same"}
EXCEPTION_KEYS = {"name", "condition"}
ATTACK_KEYS = {"technique", "tactic"}
ACTION_KEYS = {"action", "ttl"}
# the event kinds an action needs among the rule's events (kill and kill_group: any event has a process)
ACTION_EVENT_KINDS = {"block_address": frozenset({KIND_NET}), "quarantine": frozenset({KIND_FILE, KIND_EXEC})}
MIN_ACTION_TTL_NS = 1_000_000_000


@dataclass
class RuleSet:
    """The result of a load: rules ready for the engine, and every problem found."""

    rules: list[CompiledRule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    disabled: list[RuleMeta] = field(default_factory=list)   # valid rules with ``enabled: false``
    files: list[Path] = field(default_factory=list)

    def check(self) -> None:
        """Raise one RuleError carrying every error (``.errors``) when there is any."""
        if self.errors:
            first = self.errors[0]
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            raise RuleError(first.reason + more, file=first.file, line=first.line, col=first.col,
                            errors=list(self.errors))


# ---------------------------------------------------------------- YAML helpers

def _pos(file: str, node: yaml.Node) -> Pos:
    return Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)


@dataclass
class _Src:
    """One file being loaded."""

    file: str
    text: str
    errors: list[RuleError]

    def err(self, msg: str, node: yaml.Node | Pos) -> None:
        p = node if isinstance(node, Pos) else _pos(self.file, node)
        self.errors.append(RuleError(msg, file=p.file, line=p.line, col=p.col))

    def add(self, exc: RuleError) -> None:
        self.errors.extend(exc.errors or [exc])

    def scalar(self, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.err(f"{what} must be a single value, not a {_node_kind(node)}", node)
            return None
        return str(node.value)

    def text_value(self, node: yaml.Node, what: str) -> str | None:
        v = self.scalar(node, what)
        if v is not None and node.tag == "tag:yaml.org,2002:null":
            self.err(f"{what} is empty", node)
            return None
        return v

    def mapping(self, node: yaml.Node, what: str, allowed: set[str],
                owner: str) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """Keys of a mapping node (key -> (key node, value node)); unknown and repeated keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            self.err(f"{what} must be a mapping (key: value), not a {_node_kind(node)}", node)
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.err(f"{owner} has a key that is not a name", k)
                continue
            name = str(k.value)
            if name in out:
                self.err(f"{owner} has key '{name}' twice", k)
                continue
            if name not in allowed:
                self.err(f"{owner} has unknown key '{name}' (allowed: {', '.join(sorted(allowed))})", k)
                continue
            out[name] = (k, v)
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.err(f"{what} must be a list, not a {_node_kind(node)}", node)
            return None
        return list(node.value)

    def smap(self, node: yaml.ScalarNode) -> SourceMap:
        return SourceMap.for_scalar(self.text, node, self.file)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return "single value"


# ---------------------------------------------------------------- the load

@dataclass
class _RawRule:
    src: _Src
    node: yaml.MappingNode
    keys: dict[str, tuple[yaml.Node, yaml.Node]]
    id: str
    pos: Pos


def rule_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[RuleError]]:
    """The rule files named by ``paths`` (directories give their *.yaml/*.yml, recursively, sorted)."""
    files: list[Path] = []
    errors: list[RuleError] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file()))
        elif p.exists():
            files.append(p)
        else:
            errors.append(RuleError("no such file or directory", file=str(p)))
    return files, errors


def load_default_rules(*, state_max_keys: int = DEFAULT_MAX_KEYS) -> RuleSet:
    """The rule set shipped in the package (``sentinel_edge/rules/default/*.yaml``)."""
    if not DEFAULT_DIR.is_dir():
        return RuleSet()
    return load_rule_files([DEFAULT_DIR], state_max_keys=state_max_keys)


def load_rule_files(paths: Iterable[str | Path], *, state_max_keys: int = DEFAULT_MAX_KEYS) -> RuleSet:
    """Load and compile every rule in ``paths`` (files or directories); see :class:`RuleSet`."""
    files, errors = rule_files(paths)
    texts: list[tuple[str, str]] = []
    for f in files:
        try:
            texts.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(RuleError(f"cannot read: {exc}", file=str(f)))
    rs = load_rule_texts(texts, state_max_keys=state_max_keys)
    rs.errors[:0] = errors
    rs.files = files
    return rs


def load_rule_texts(texts: Iterable[tuple[str, str]], *, state_max_keys: int = DEFAULT_MAX_KEYS) -> RuleSet:
    """Load rules from (file name, YAML text) pairs, as :func:`load_rule_files` does from disk."""
    names = Names()
    raw_rules: list[_RawRule] = []
    srcs: list[_Src] = []
    defined: dict[str, Pos] = {}
    for file, text in texts:
        src = _Src(file, text, [])
        srcs.append(src)
        _read_file(src, names, raw_rules, defined)
    # every macro on its own, so a broken macro is reported even when no rule uses it
    by_file = {s.file: s for s in srcs}
    for name, mdef in names.macros.items():
        msrc = by_file[mdef.pos.file]
        try:
            names.check_macro(name)
            node, _size = names.macro(name, names.macros[name].pos)
            compile_condition(node)
        except RuleError as exc:
            msrc.add(exc)
    rs = RuleSet()
    seen: dict[str, Pos] = {}
    for raw in raw_rules:
        if raw.id in seen:
            first = seen[raw.id]
            raw.src.err(f"duplicate rule id '{raw.id}' (first defined at {first})", raw.pos)
            continue
        seen[raw.id] = raw.pos
        before = len(raw.src.errors)
        rule, enabled = _compile_rule(raw, names, state_max_keys)
        if rule is not None:
            _check_action_kinds(raw.src, rule)
        if rule is None or len(raw.src.errors) > before:
            continue
        if enabled:
            rs.rules.append(rule)
        else:
            rs.disabled.append(rule.meta)
    # one problem (a broken macro used by several rules) is reported once
    seen_msgs: set[str] = set()
    for src in srcs:
        for e in sorted(src.errors, key=lambda e: (e.file != src.file, e.line, e.col)):
            if str(e) not in seen_msgs:
                seen_msgs.add(str(e))
                rs.errors.append(e)
    return rs


def _read_file(src: _Src, names: Names, raw_rules: list[_RawRule], defined: dict[str, Pos]) -> None:
    try:
        root = yaml.compose(src.text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        src.errors.append(RuleError(f"invalid YAML: {problem}", file=src.file, line=line, col=col))
        return
    except yaml.YAMLError as exc:
        src.errors.append(RuleError(f"invalid YAML: {exc}", file=src.file))
        return
    if root is None:
        return
    items = src.sequence(root, "a rule file")
    if items is None:
        return
    for item in items:
        if not isinstance(item, yaml.MappingNode):
            src.err(f"each item must be a mapping with 'list', 'macro' or 'rule', not a {_node_kind(item)}", item)
            continue
        kinds = [str(k.value) for k, _ in item.value
                 if isinstance(k, yaml.ScalarNode) and k.value in ("list", "macro", "rule")]
        if len(kinds) != 1:
            src.err("each item needs exactly one of 'list', 'macro' or 'rule'"
                    + (f" (it has {', '.join(kinds)})" if kinds else ""), item)
            continue
        kind = kinds[0]
        if kind == "list":
            _read_list(src, item, names, defined)
        elif kind == "macro":
            _read_macro(src, item, names, defined)
        else:
            _read_rule(src, item, raw_rules)


def _define(src: _Src, what: str, name: str, node: yaml.Node, defined: dict[str, Pos]) -> bool:
    if not NAME_RE.fullmatch(name) or name.lower() in RESERVED:
        src.err(f"{what} name '{name}' is invalid (letters, digits and _, not starting with a digit; "
                "not and/or/not)", node)
        return False
    if name in fieldtab.FIELDS:
        src.err(f"{what} name '{name}' is a field name", node)
        return False
    if name in defined:
        src.err(f"'{name}' is already defined at {defined[name]}", node)
        return False
    defined[name] = _pos(src.file, node)
    return True


def _read_list(src: _Src, item: yaml.MappingNode, names: Names, defined: dict[str, Pos]) -> None:
    keys = src.mapping(item, "a list", LIST_KEYS, "list")
    if keys is None:
        return
    name = src.text_value(keys["list"][1], "the list name")
    if name is None or not _define(src, "list", name, keys["list"][1], defined):
        return
    if "items" not in keys:
        src.err(f"list '{name}' has no 'items'", item)
        return
    nodes = src.sequence(keys["items"][1], f"items of list '{name}'")
    if nodes is None:
        return
    out: list[Item] = []
    for n in nodes:
        v = src.scalar(n, f"an item of list '{name}'")
        if v is not None:
            assert isinstance(n, yaml.ScalarNode)
            out.append(Item(v, n.style in ("'", '"'), _pos(src.file, n)))
    names.lists[name] = ListDef(name, out, _pos(src.file, keys["list"][1]))


def _read_macro(src: _Src, item: yaml.MappingNode, names: Names, defined: dict[str, Pos]) -> None:
    keys = src.mapping(item, "a macro", MACRO_KEYS, "macro")
    if keys is None:
        return
    name = src.text_value(keys["macro"][1], "the macro name")
    if name is None or not _define(src, "macro", name, keys["macro"][1], defined):
        return
    if "condition" not in keys:
        src.err(f"macro '{name}' has no 'condition'", item)
        return
    cnode = keys["condition"][1]
    text = src.text_value(cnode, f"the condition of macro '{name}'")
    if text is None:
        return
    assert isinstance(cnode, yaml.ScalarNode)
    names.macros[name] = MacroDef(name, text, src.smap(cnode), _pos(src.file, keys["macro"][1]))


def _read_rule(src: _Src, item: yaml.MappingNode, raw_rules: list[_RawRule]) -> None:
    id_node = next(v for k, v in item.value if isinstance(k, yaml.ScalarNode) and k.value == "rule")
    rid = src.text_value(id_node, "the rule id")
    if rid is None:
        return
    if not RULE_ID_RE.fullmatch(rid):
        src.err(f"rule id '{rid}' is invalid: lower-case letters, digits, '.', '_' and '-'", id_node)
        return
    type_node = next((v for k, v in item.value if isinstance(k, yaml.ScalarNode) and k.value == "type"), None)
    rtype = "match"
    if type_node is not None:
        t = src.scalar(type_node, "type")
        if t not in RULE_TYPES:
            if t is not None:
                src.err(f"rule '{rid}' has unknown type '{t}' (one of {', '.join(RULE_TYPES)})", type_node)
            return
        rtype = t
    keys = src.mapping(item, "a rule", KEYS_BY_TYPE[rtype],
                       f"rule '{rid}'" + (f" ({rtype})" if rtype != "match" else ""))
    if keys is None:
        return
    raw_rules.append(_RawRule(src, item, keys, rid, _pos(src.file, item)))


# ---------------------------------------------------------------- one rule

def _condition(src: _Src, node: yaml.Node, what: str, names: Names) -> Node | None:
    text = src.text_value(node, what)
    if text is None:
        return None
    assert isinstance(node, yaml.ScalarNode)
    if not text.strip():
        src.err(f"{what} is empty", node)
        return None
    try:
        return parse_condition(text, file=src.file, smap=src.smap(node), names=names)
    except RuleError as exc:
        src.add(exc)
        return None


def _compile(src: _Src, node: Node) -> Predicate | None:
    try:
        return compile_condition(node)
    except RuleError as exc:
        src.add(exc)
        return None


def _field_name(src: _Src, node: yaml.Node, what: str, allow_tree: bool = False) -> str | None:
    name = src.text_value(node, what)
    if name is None:
        return None
    if allow_tree and name == "proc.tree":
        return name
    if name not in fieldtab.FIELDS:
        hits = difflib.get_close_matches(name, [*fieldtab.FIELDS, *(["proc.tree"] if allow_tree else [])],
                                         n=1, cutoff=0.75)
        hint = hits[0] if hits else None
        extra = " or proc.tree" if allow_tree else ""
        src.err(f"{what}: unknown field '{name}'" + (f" (did you mean '{hint}'?)" if hint else "")
                + (f"; expected a field{extra}" if not hint else ""), node)
        return None
    return name


def _compile_rule(raw: _RawRule, names: Names, max_keys: int) -> tuple[CompiledRule | None, bool]:
    src, keys, rid = raw.src, raw.keys, raw.id
    owner = f"rule '{rid}'"

    def get(key: str) -> yaml.Node | None:
        kv = keys.get(key)
        return kv[1] if kv else None

    rtype = "match"
    tnode = get("type")
    if tnode is not None:
        rtype = str(tnode.value)
    required = ["title", "severity"] + (["steps", "by", "within"] if rtype == "sequence" else ["condition"])
    if rtype == "threshold":
        required += ["by", "within", "count"]
    for key in required:
        if key not in keys:
            src.err(f"{owner} has no '{key}'", raw.node)
    title = _text(src, get("title"), f"the title of {owner}") or ""
    description = _text(src, get("description"), f"the description of {owner}") or ""
    severity = "info"
    snode = get("severity")
    if snode is not None:
        sev = src.text_value(snode, f"the severity of {owner}")
        if sev is not None and sev not in SEVERITIES:
            src.err(f"{owner} has unknown severity '{sev}' (one of {', '.join(SEVERITIES)})", snode)
        elif sev is not None:
            severity = sev
    attack = _attack(src, get("attack"), owner)
    tags = _tags(src, get("tags"), owner)
    enabled = True
    enode = get("enabled")
    if enode is not None:
        ev = src.scalar(enode, f"enabled of {owner}")
        if ev is not None and ev.lower() not in ("true", "false"):
            src.err(f"{owner}: enabled must be true or false, not '{ev}'", enode)
        elif ev is not None:
            enabled = ev.lower() == "true"
    output = ""
    render: Callable[[Event], str] = lambda e: title  # noqa: E731
    onode = get("output")
    if onode is not None:
        out_text = src.text_value(onode, f"the output of {owner}")
        if out_text is not None:
            assert isinstance(onode, yaml.ScalarNode)
            output = out_text
            try:
                render = compile_template(out_text, src.file, raw.pos.line, locate=src.smap(onode).locate)
            except RuleError as exc:
                src.add(exc)
    excepts = _exceptions(src, get("exceptions"), owner, names)
    actions = _actions(src, get("actions"), owner)
    meta = RuleMeta(id=rid, title=title, severity=severity, description=description, attack=attack, tags=tags,
                    output=output, source="native", file=src.file, line=raw.pos.line, kind=rtype,
                    actions=actions)

    def guarded(node: Node) -> Node:
        return And((node, *(Not(x) for x in excepts))) if excepts else node

    if rtype == "sequence":
        return _sequence(src, raw, names, meta, render, guarded, max_keys), enabled
    cnode = get("condition")
    if cnode is None:
        return None, enabled
    cond = _condition(src, cnode, f"the condition of {owner}", names)
    if cond is None:
        return None, enabled
    full = guarded(cond)
    match = _compile(src, full)
    if match is None:
        return None, enabled
    kinds = kinds_of(full)
    if rtype == "match":
        return CompiledRule(meta, match, kinds, render, node=full), enabled
    by = _field_name(src, keys["by"][1], f"by of {owner}", allow_tree=True) if "by" in keys else None
    within = _within(src, get("within"), owner)
    count = _count(src, get("count"), owner)
    distinct = _field_name(src, keys["distinct"][1], f"distinct of {owner}") if "distinct" in keys else None
    if by is None or within is None or count is None or ("distinct" in keys and distinct is None):
        return None, enabled
    corr = ThresholdCorrelator(meta, match, by, count, within, render, distinct=distinct, max_keys=max_keys)
    return CompiledRule(meta, match, kinds, render, corr, node=full), enabled


def _text(src: _Src, node: yaml.Node | None, what: str) -> str | None:
    if node is None:
        return None
    v = src.text_value(node, what)
    return v.strip() if v is not None else None


def _attack(src: _Src, node: yaml.Node | None, owner: str) -> tuple[Attack, ...]:
    if node is None:
        return ()
    items = src.sequence(node, f"attack of {owner}")
    if items is None:
        return ()
    out = []
    for it in items:
        keys = src.mapping(it, f"an attack entry of {owner}", ATTACK_KEYS, f"an attack entry of {owner}")
        if keys is None:
            continue
        if "technique" not in keys:
            src.err(f"an attack entry of {owner} has no 'technique'", it)
            continue
        if "tactic" not in keys:
            src.err(f"an attack entry of {owner} has no 'tactic'", it)
            continue
        tnode, cnode = keys["technique"][1], keys["tactic"][1]
        tech = src.text_value(tnode, "technique")
        tactic = src.text_value(cnode, "tactic")
        ok = True
        if tech is not None and not TECHNIQUE_RE.fullmatch(tech):
            src.err(f"{owner}: technique '{tech}' is not an ATT&CK id (T1234 or T1234.001)", tnode)
            ok = False
        if tactic is not None and tactic not in TACTICS:
            src.err(f"{owner}: unknown tactic '{tactic}' (one of {', '.join(TACTICS)})", cnode)
            ok = False
        if ok and tech is not None and tactic is not None:
            out.append(Attack(tech, tactic))
    return tuple(out)


def _tags(src: _Src, node: yaml.Node | None, owner: str) -> tuple[str, ...]:
    if node is None:
        return ()
    items = src.sequence(node, f"tags of {owner}")
    if items is None:
        return ()
    return tuple(t for t in (src.text_value(i, f"a tag of {owner}") for i in items) if t is not None)


def _actions(src: _Src, node: yaml.Node | None, owner: str) -> tuple[ActionSpec, ...]:
    """``actions:``: a list of action names, or of ``{action: NAME, ttl: DURATION}`` mappings."""
    if node is None:
        return ()
    items = src.sequence(node, f"actions of {owner}")
    if items is None:
        return ()
    out: list[ActionSpec] = []
    seen: dict[str, Pos] = {}
    for it in items:
        ttl_node: yaml.Node | None = None
        if isinstance(it, yaml.MappingNode):
            keys = src.mapping(it, f"an action of {owner}", ACTION_KEYS, f"an action of {owner}")
            if keys is None:
                continue
            if "action" not in keys:
                src.err(f"an action of {owner} has no 'action'", it)
                continue
            name_node = keys["action"][1]
            ttl_node = keys["ttl"][1] if "ttl" in keys else None
        elif isinstance(it, yaml.ScalarNode):
            name_node = it
        else:
            src.err(f"an action of {owner} must be an action name or a mapping (action: NAME), not a "
                    f"{_node_kind(it)}", it)
            continue
        name = src.text_value(name_node, f"an action of {owner}")
        if name is None:
            continue
        if not name.strip():
            src.err(f"an action of {owner} is empty", name_node)
            continue
        pos = _pos(src.file, name_node)
        if name not in ACTION_KINDS:
            hits = difflib.get_close_matches(name, ACTION_KINDS, n=1, cutoff=0.6)
            src.err(f"{owner}: unknown action '{name}'" + (f" (did you mean '{hits[0]}'?)" if hits else "")
                    + f" (one of {', '.join(ACTION_KINDS)})", name_node)
            continue
        if name in seen:
            src.err(f"{owner}: action '{name}' is named twice (first at {seen[name]})", name_node)
            continue
        seen[name] = pos
        ttl_s: float | None = None
        if ttl_node is not None:
            if name != "block_address":
                src.err(f"{owner}: action '{name}' takes no ttl (only block_address does)", ttl_node)
                continue
            v = src.text_value(ttl_node, f"the ttl of action '{name}' of {owner}")
            if v is None:
                continue
            ns = parse_duration(v)
            if ns is None or ns < MIN_ACTION_TTL_NS:
                src.err(f"{owner}: ttl '{v}' of action '{name}' is not a duration of at least 1s "
                        "(a number with ms, s, m or h: 10m)", ttl_node)
                continue
            ttl_s = ns / 1e9
        out.append(ActionSpec(name, ttl_s, pos.file, pos.line, pos.col))
    return tuple(out)


def _check_action_kinds(src: _Src, rule: CompiledRule) -> None:
    """An action whose event kind the rule can never match is an error (it would never do anything)."""
    if rule.kinds is None:
        return
    for a in rule.meta.actions:
        need = ACTION_EVENT_KINDS.get(a.kind)
        if need is not None and not (need & rule.kinds):
            src.err(f"rule '{rule.meta.id}': action '{a.kind}' needs {' or '.join(sorted(need))} events, "
                    f"but the rule only matches {', '.join(sorted(rule.kinds))} events",
                    Pos(a.file, a.line, a.col))


def _exceptions(src: _Src, node: yaml.Node | None, owner: str, names: Names) -> list[Node]:
    if node is None:
        return []
    items = src.sequence(node, f"exceptions of {owner}")
    if items is None:
        return []
    out: list[Node] = []
    seen: set[str] = set()
    for it in items:
        keys = src.mapping(it, f"an exception of {owner}", EXCEPTION_KEYS, f"an exception of {owner}")
        if keys is None:
            continue
        if "name" not in keys or "condition" not in keys:
            src.err(f"an exception of {owner} needs 'name' and 'condition'", it)
            continue
        name = src.text_value(keys["name"][1], "the exception name")
        if name is not None and name in seen:
            src.err(f"{owner} has two exceptions named '{name}'", keys["name"][1])
        seen.add(name or "")
        cond = _condition(src, keys["condition"][1], f"exception '{name}' of {owner}", names)
        if cond is not None:
            out.append(cond)
    return out


def _within(src: _Src, node: yaml.Node | None, owner: str) -> int | None:
    if node is None:
        return None
    v = src.text_value(node, f"within of {owner}")
    if v is None:
        return None
    ns = parse_duration(v)
    if ns is None:
        src.err(f"{owner}: within '{v}' is not a duration (a positive number with ms, s, m or h: 30s)", node)
    return ns


def _count(src: _Src, node: yaml.Node | None, owner: str) -> int | None:
    if node is None:
        return None
    v = src.text_value(node, f"count of {owner}")
    if v is None:
        return None
    if not v.isdigit() or int(v) < 1:
        src.err(f"{owner}: count must be a positive integer, not '{v}'", node)
        return None
    return int(v)


def _sequence(src: _Src, raw: _RawRule, names: Names, meta: RuleMeta, render: Callable[[Event], str],
              guarded: Callable[[Node], Node], max_keys: int) -> CompiledRule | None:
    keys, owner = raw.keys, f"rule '{raw.id}'"
    by = _field_name(src, keys["by"][1], f"by of {owner}", allow_tree=True) if "by" in keys else None
    within = _within(src, keys["within"][1] if "within" in keys else None, owner)
    if "steps" not in keys:
        return None
    nodes = src.sequence(keys["steps"][1], f"steps of {owner}")
    if nodes is None:
        return None
    if len(nodes) < 2:
        src.err(f"{owner}: a sequence needs at least 2 steps", keys["steps"][1])
    steps: list[Step] = []
    conds: list[Node] = []
    step_index: dict[str, int] = {}
    ok = True
    for i, snode in enumerate(nodes):
        skeys = src.mapping(snode, f"a step of {owner}", STEP_KEYS, f"a step of {owner}")
        if skeys is None:
            ok = False
            continue
        if "name" not in skeys or "condition" not in skeys:
            src.err(f"a step of {owner} needs 'name' and 'condition'", snode)
            ok = False
            continue
        name_node = skeys["name"][1]
        name = src.text_value(name_node, "the step name")
        if name is None or not NAME_RE.fullmatch(name):
            if name is not None:
                src.err(f"step name '{name}' is invalid (letters, digits and _)", name_node)
            ok = False
            continue
        if name in step_index:
            src.err(f"{owner} has two steps named '{name}'", name_node)
            ok = False
            continue
        cond = _condition(src, skeys["condition"][1], f"step '{name}' of {owner}", names)
        pred = _compile(src, guarded(cond)) if cond is not None else None
        same = _same(src, skeys["same"][1], step_index, owner, name) if "same" in skeys else []
        step_index[name] = i
        if cond is None or pred is None or same is None:
            ok = False
            continue
        conds.append(guarded(cond))
        steps.append(Step(name, pred, same))
    if not ok or by is None or within is None or len(steps) < 2:
        return None
    kinds: frozenset[str] | None = frozenset()
    for c in conds:
        k = kinds_of(c)
        kinds = None if (k is None or kinds is None) else kinds | k
    preds = [s.match for s in steps]

    def any_step(e: Event) -> bool:
        return any(p(e) for p in preds)

    corr = SequenceCorrelator(meta, steps, by, within, render, max_keys=max_keys)
    # an event that matches no step changes nothing: the union of the steps is the rule's index condition
    return CompiledRule(meta, any_step, kinds, render, corr, node=Or(tuple(conds)))


def _same(src: _Src, node: yaml.Node, earlier: dict[str, int], owner: str,
          step: str) -> list[tuple[Any, int, str]] | None:
    if not isinstance(node, yaml.MappingNode):
        src.err(f"same of step '{step}' must be a mapping (field: step.field), not a {_node_kind(node)}", node)
        return None
    out: list[tuple[Any, int, str]] = []
    ok = True
    for k, v in node.value:
        here = _field_name(src, k, f"same of step '{step}' of {owner}")
        ref = src.text_value(v, f"same of step '{step}'")
        if here is None or ref is None:
            ok = False
            continue
        sname, _, fname = ref.partition(".")
        if sname not in earlier:
            src.err(f"same of step '{step}' of {owner}: '{ref}' must name an earlier step and a field "
                    "(write.file.path)", v)
            ok = False
            continue
        if fname not in fieldtab.FIELDS:
            hint = fieldtab.suggest(fname)
            src.err(f"same of step '{step}' of {owner}: unknown field '{fname}'"
                    + (f" (did you mean '{hint}'?)" if hint else ""), v)
            ok = False
            continue
        out.append((compile_getter(Field(here)), earlier[sname], fname))
    return out if ok else None
