"""Property tests: the parser never crashes and locates every error; printed trees parse back to themselves."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel_edge.errors import RuleError
from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.rules.ast import And, Call, Compare, Exists, Field, Node, Not, Or
from sentinel_edge.rules.compiler import compile_condition
from sentinel_edge.rules.lang import SourceMap, names_from, parse_condition, strip_positions, to_text
from sentinel_edge.rules.loader import load_rule_texts

NAMES = names_from({"shells": ["bash", "sh"]}, {"spawned": "event.kind = exec"})

TOKENS = ["proc.name", "proc.pid", "proc.args", "proc.aname", "parent.exe", "proc.nmae", "file.mode", "spawned",
          "shells", "and", "or", "not", "in", "cidr", "exists", "=", "!=", "<", "<=", ">", ">=", "startswith",
          "contains", "icontains", "glob", "regex", "bitand", "lower", "len", "entropy", "(", ")", "[", "]", ",",
          "'", '"', "x", "42", "0x1f", "-1", "1.5", "true", "\\", "\n", " ", "\t", "/tmp/*", "'a b'", '"q\\"x"']


def within_input(text: str, e: RuleError) -> bool:
    lines = text.split("\n")
    if not 1 <= e.line <= len(lines):
        return False
    return 1 <= e.col <= len(lines[e.line - 1]) + 1


def check_parse(text: str) -> None:
    try:
        node = parse_condition(text, file="h.yaml", names=NAMES)
    except RuleError as e:
        assert e.file == "h.yaml"
        assert within_input(text, e), (text, str(e))
        for sub in e.errors:
            assert within_input(text, sub), (text, str(sub))
        return
    # what parses also compiles or fails with a located error
    try:
        compile_condition(node)
    except RuleError as e:
        assert within_input(text, e), (text, str(e))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_random_text_never_crashes(text: str) -> None:
    check_parse(text)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join))
def test_token_soup_never_crashes(text: str) -> None:
    check_parse(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("ab =()'\"\n|>-#:")), max_size=40))
def test_random_rule_files_give_located_errors(cond: str) -> None:
    # the condition inside a YAML file: every error points inside the file
    text = f"- rule: h.r\n  title: t\n  severity: low\n  condition: {cond}\n"
    rs = load_rule_texts([("h.yaml", text)])
    lines = text.split("\n")
    for e in rs.errors:
        assert e.file == "h.yaml"
        assert 1 <= e.line <= len(lines) and 1 <= e.col <= len(lines[e.line - 1]) + 1, (text, str(e))


# ---------------------------------------------------------------- round trip of valid trees

safe_text = st.text(max_size=12)
STR_FIELDS = [Field("proc.name"), Field("proc.exe"), Field("parent.name"), Field("proc.aname", 2),
              Field("proc.args")]
INT_FIELDS = [Field("proc.pid"), Field("file.mode"), Field("net.remote_port")]


def str_operand() -> st.SearchStrategy[Any]:
    f = st.sampled_from(STR_FIELDS)
    return st.one_of(f, st.builds(Call, st.sampled_from(["lower", "upper", "basename", "dirname", "b64decode"]), f))


def compare() -> st.SearchStrategy[Node]:
    text_ops = st.sampled_from(["=", "!=", "startswith", "endswith", "contains", "istartswith", "iendswith",
                                "icontains", "iequals", "glob"])
    return st.one_of(
        st.builds(Compare, str_operand(), text_ops, safe_text),
        st.builds(Compare, str_operand(), st.just("in"), st.lists(safe_text, min_size=1, max_size=4).map(tuple)),
        st.builds(Compare, st.sampled_from(INT_FIELDS), st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "bitand"]),
                  st.integers(-2**40, 2**40)),
        st.builds(Compare, st.sampled_from(INT_FIELDS), st.just("in"),
                  st.lists(st.integers(0, 70000), min_size=1, max_size=4).map(tuple)),
        st.builds(Compare, st.just(Call("entropy", Field("proc.name"))), st.sampled_from(["<", ">"]),
                  st.floats(0, 8, allow_nan=False)),
        st.builds(Compare, st.just(Field("proc.tty")), st.sampled_from(["=", "!="]), st.booleans()),
        st.builds(Compare, st.just(Field("proc.exe")), st.sampled_from(["=", "!="]), st.just(Field("parent.exe"))),
        st.builds(Compare, st.just(Field("net.remote_ip")), st.just("cidr"),
                  st.sampled_from([("10.0.0.0/8",), ("127.0.0.1", "::1/128")])),
        st.builds(Exists, st.sampled_from([Field("proc.exe"), Field("file.path"), Field("proc.aname", 1)])),
    )


trees: st.SearchStrategy[Node] = st.recursive(
    compare(),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=8,
)

SAMPLE = Event("exec", 1, 1, 0, {"comm": b"bash", "pid": 7}, {},
               process=ProcessInfo(7, 1, "e7", None, 1, "bash", exe="/usr/bin/bash", cmdline=["bash", "-c", "id"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_printed_trees_parse_back(tree: Node) -> None:
    text = to_text(tree)
    back = strip_positions(parse_condition(text))
    assert back == tree, text
    # and the tree compiles into something that answers for any event
    assert compile_condition(back)(SAMPLE) in (True, False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees, st.sampled_from(["plain", "double", "folded", "literal"]))
def test_positions_survive_yaml_quoting(tree: Node, style: str) -> None:
    """A tree written in any YAML scalar style parses to the same tree at positions inside the file."""
    text = to_text(tree)
    if not text.isprintable():
        return  # YAML cannot hold control characters unescaped
    if style == "plain":
        doc = f"c: {yaml.safe_dump(text, default_style=None, width=10_000).strip()}\n"
        if doc.count("\n") > 1 or doc.startswith("c: ..."):
            return
    elif style == "double":
        doc = "c: " + yaml.safe_dump(text, default_style='"', width=10_000).strip() + "\n"
    elif style == "folded":
        doc = "c: >-\n  " + text.replace(" and ", " and\n  ") + "\n"
    else:
        doc = "c: |-\n    " + text + "\n"
    root = yaml.compose(doc, Loader=yaml.SafeLoader)
    node = root.value[0][1]
    if node.value != text:
        return  # YAML changed the text (folding of unusual spacing): not what this test is about
    smap = SourceMap.for_scalar(doc, node, "f.yaml")
    parsed = parse_condition(node.value, file="f.yaml", smap=smap)
    assert strip_positions(parsed) == tree
    lines = doc.split("\n")

    def walk(n: Any) -> None:
        pos = getattr(n, "pos", None)
        if pos is not None:
            assert 1 <= pos.line <= len(lines) and 1 <= pos.col <= len(lines[pos.line - 1]) + 1
        for child in getattr(n, "items", ()) or ():
            walk(child)
        if isinstance(n, Not):
            walk(n.item)

    walk(parsed)
