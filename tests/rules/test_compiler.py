"""Compiled conditions: semantics of every operator and function, list fields, missing values, types, kinds.

Events are built directly (unit tests of pure logic). Besides real fields
(event.kind, proc.name, proc.exe, proc.args from the process info), a few
test fields (``t.*``) read ``event.data`` so every type can be exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sentinel_edge.errors import RuleError
from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.rules import fields as fieldtab
from sentinel_edge.rules.ast import And, Compare, Const, Field, Not, Or
from sentinel_edge.rules.compiler import (
    b64decode,
    compile_condition,
    compile_template,
    entropy,
    kinds_of,
    parse_number,
)
from sentinel_edge.rules.lang import names_from, parse_condition

TEST_FIELDS = {
    "t.s": ("str", None),
    "t.s2": ("str", None),
    "t.i": ("int", None),
    "t.i2": ("int", None),
    "t.b": ("bool", None),
    "t.ls": ("list[str]", None),
    "t.li": ("list[int]", None),
    "t.ip": ("str", frozenset({"net"})),
    "t.path": ("str", frozenset({"file"})),
    "t.any": ("any", None),
}


@pytest.fixture(autouse=True)
def test_fields(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, (typ, kinds) in TEST_FIELDS.items():
        key = name[2:]
        spec = fieldtab.FieldSpec(name, typ, lambda e, k=key: e.data.get(k), kinds)
        monkeypatch.setitem(fieldtab.FIELDS, name, spec)
    yield


def ev(kind: str = "exec", comm: str = "bash", exe: str | None = "/usr/bin/bash",
       cmdline: list[str] | None = None, **data: Any) -> Event:
    p = ProcessInfo(pid=10, start_ns=1, exec_id="e10", parent_exec_id=None, ppid=1, comm=comm, exe=exe,
                    cmdline=cmdline if cmdline is not None else [comm])
    return Event(kind, 1, 1000, 0, {"comm": comm.encode(), "pid": 10}, dict(data), process=p)


def check(cond: str, e: Event, **names: Any) -> bool:
    return compile_condition(parse_condition(cond, names=names_from(**names)))(e)


def load_error(cond: str) -> RuleError:
    with pytest.raises(RuleError) as info:
        compile_condition(parse_condition(cond, file="r.yaml"))
    return info.value


# ---------------------------------------------------------------- operators

@pytest.mark.parametrize(("cond", "want"), [
    ("t.s = abc", True), ("t.s = ABC", False), ("t.s != abc", False), ("t.s != x", True),
    ("t.s startswith ab", True), ("t.s startswith bc", False),
    ("t.s endswith bc", True), ("t.s endswith ab", False),
    ("t.s contains b", True), ("t.s contains z", False),
    ("t.s istartswith AB", True), ("t.s iendswith BC", True), ("t.s icontains B", True),
    ("t.s iequals ABC", True), ("t.s iequals ABD", False),
    ("t.s in (x, abc)", True), ("t.s in (x, ABC)", False),
    ("t.s glob 'a*'", True), ("t.s glob 'a?c'", True), ("t.s glob '[ab]bc'", True), ("t.s glob 'b*'", False),
    ("t.s regex 'b.$'", True), ("t.s regex '^b'", False), ("t.s regex '(?i)ABC'", True),
    ("t.i = 42", True), ("t.i != 42", False), ("t.i < 43", True), ("t.i <= 42", True), ("t.i > 42", False),
    ("t.i >= 42", True), ("t.i in (1, 42)", True), ("t.i in (1, 0x2a)", True), ("t.i = 0o52", True),
    ("t.i bitand 0x8", True), ("t.i bitand 0x1", False),
    ("t.b = true", True), ("t.b = false", False), ("t.b != false", True),
])
def test_operators(cond: str, want: bool) -> None:
    assert check(cond, ev(s="abc", i=42, b=True)) is want


def test_glob_star_crosses_slashes_and_is_case_sensitive() -> None:
    e = ev(path="/home/u/.ssh/id_rsa")
    assert check("t.path glob '/home/*/id_rsa'", e)
    assert not check("t.path glob '/HOME/*'", e)
    assert check("t.path glob '/home/*/.ssh/id_*'", e)


def test_cidr_v4_v6_and_mapped() -> None:
    nets = "t.ip cidr (10.0.0.0/8, 192.168.0.0/16, fd00::/8)"
    assert check(nets, ev("net", ip="10.1.2.3"))
    assert check(nets, ev("net", ip="fd12::1"))
    assert check(nets, ev("net", ip="::ffff:192.168.1.1"))    # IPv4-mapped IPv6
    assert not check(nets, ev("net", ip="8.8.8.8"))
    assert not check(nets, ev("net", ip="not-an-ip"))
    assert check("t.ip cidr (127.0.0.1)", ev("net", ip="127.0.0.1"))
    assert "invalid network '10.0.0.0/33'" in load_error("t.ip cidr (10.0.0.0/33)").reason


def test_exists_and_missing_values() -> None:
    e = ev(s="x")
    assert check("t.s exists", e) and not check("t.i exists", e)
    # a missing value makes every comparison false, also !=
    for cond in ("t.i = 1", "t.i != 1", "t.i < 5", "t.i in (1, 2)", "t.s2 != x", "t.s2 contains ''",
                 "lower(t.s2) = x", "t.ip cidr (0.0.0.0/0)", "t.s = t.s2", "t.s != t.s2"):
        assert not check(cond, e), cond
    # ... while `not` negates the whole test
    assert check("not t.i = 1", e)


def test_list_fields_match_when_any_element_does() -> None:
    e = ev(ls=["-c", "curl http://x | sh"], li=[22, 443])
    assert check("t.ls = -c", e)
    assert check("t.ls contains curl", e)
    assert not check("t.ls = -x", e)
    assert check("t.li in (80, 443)", e) and check("t.li > 400", e) and not check("t.li > 500", e)
    assert check("not t.ls = -x", e)
    assert not check("t.ls = x", ev(ls=[]))
    assert check("len(t.ls) = 2", e) and check("len(t.s) = 3", ev(s="abc"))
    assert check("lower(t.ls) = -c", e)
    # a real list field
    e2 = ev(cmdline=["bash", "-i", "-c", "id"])
    assert check("proc.args = -i", e2) and check("proc.args[1] = -c", e2) and not check("proc.args = bash", e2)


def test_field_to_field() -> None:
    assert check("t.s = t.s2", ev(s="a", s2="a"))
    assert not check("t.s = t.s2", ev(s="a", s2="b"))
    assert check("t.s startswith t.s2", ev(s="/tmp/x", s2="/tmp"))
    assert check("t.ls = t.s", ev(ls=["a", "b"], s="b"))
    assert check("t.i < t.i2", ev(i=1, i2=2))
    assert check("lower(t.s) = lower(t.s2)", ev(s="AbC", s2="aBc"))
    assert "cannot compare str t.s with int t.i" in load_error("t.s = t.i").reason
    assert "'regex' needs literal values" in load_error("t.s regex t.s2").reason


# ---------------------------------------------------------------- functions

def test_functions() -> None:
    e = ev(s="/usr/local/bin/Tool")
    assert check("basename(t.s) = Tool", e)
    assert check("dirname(t.s) = /usr/local/bin", e)
    assert check("lower(t.s) = /usr/local/bin/tool", e)
    assert check("upper(basename(t.s)) = TOOL", e)
    assert check("basename(t.s) = x", ev(s="/a/x/"))      # trailing slash
    assert check("b64decode(t.s) = 'curl http://x'", ev(s="Y3VybCBodHRwOi8veA=="))
    assert check("b64decode(t.s) contains curl", ev(s="Y3VybCBodHRwOi8veA"))   # padding optional
    assert check("b64decode(t.s) = ''", ev(s="not base64!"))


def test_entropy() -> None:
    assert entropy("") == 0.0
    assert entropy("aaaa") == 0.0
    assert entropy("ab") == pytest.approx(1.0)
    assert entropy("abcd") == pytest.approx(2.0)
    rnd = "x7Gq2LpZ9vKt4RwBmN8c"
    assert check("entropy(t.s) > 4", ev(s=rnd))
    assert not check("entropy(t.s) > 4", ev(s="www.example.com"))


def test_b64decode_and_numbers_helpers() -> None:
    assert b64decode("aGk=") == "hi" and b64decode("aGk") == "hi" and b64decode("") == ""
    assert b64decode("-_8=") == b64decode("+/8=")  # URL-safe alphabet
    assert b64decode("$$$") == ""
    assert parse_number("0x1F") == 31 and parse_number("-0o10") == -8 and parse_number("1.5") == 1.5
    assert parse_number("1e3") == 1000.0 and parse_number("abc") is None and parse_number("0x") is None


# ---------------------------------------------------------------- types

@pytest.mark.parametrize(("cond", "message"), [
    ("t.s < 5", "'<' works on numbers, but t.s is str"),
    ("t.i startswith 5", "'startswith' works on text, but t.i is int"),
    ("t.s bitand 1", "'bitand' works on integers, but t.s is str"),
    ("t.b regex x", "'regex' works on text"),
    ("t.s regex '(unclosed'", "invalid regex '(unclosed'"),
    ("entropy(t.i) > 1", "entropy() needs text, got int"),
    ("len(t.b) > 1", "len() needs text or a list"),
    ("t.s[2] = x", "not a list"),
])
def test_type_errors_at_load(cond: str, message: str) -> None:
    e = load_error(cond)
    assert message in e.reason
    assert (e.file, e.line) == ("r.yaml", 1) and e.col >= 1


def test_ast_built_by_other_front_ends_is_type_checked() -> None:
    # Sigma builds trees directly: literals of the wrong type are caught by the compiler
    with pytest.raises(RuleError, match=r"cannot compare str t\.s with int 5"):
        compile_condition(Compare(Field("t.s"), "=", 5))
    with pytest.raises(RuleError, match=r"cannot compare int t\.i with str 'x'"):
        compile_condition(Compare(Field("t.i"), "=", "x"))
    with pytest.raises(RuleError, match=r"unknown field 'nope\.x'"):
        compile_condition(Compare(Field("nope.x"), "=", "a"))
    # numeric text for an int field is fine, and several values mean "any of them"
    assert compile_condition(Compare(Field("t.i"), "=", ("7", "8")))(ev(i=8))
    assert compile_condition(Compare(Field("t.s"), "contains", ("zz", "b")))(ev(s="abc"))
    assert compile_condition(Compare(Field("t.s"), "endswith", ("zz", "c")))(ev(s="abc"))
    assert compile_condition(Compare(Field("t.s"), "regex", ("^z", "c$")))(ev(s="abc"))
    assert compile_condition(Compare(Field("t.s"), "iequals", ("ZZ", "ABC")))(ev(s="abc"))
    assert compile_condition(Compare(Field("t.i"), "bitand", (1, 4)))(ev(i=4))
    assert not compile_condition(Compare(Field("t.s"), "in", ()))(ev(s="a"))
    assert compile_condition(Const(True))(ev()) and not compile_condition(Const(False))(ev())
    # a field of unknown type: no static check, values of any shape
    assert compile_condition(Compare(Field("t.any"), "=", 5))(ev(any=5))
    assert compile_condition(Compare(Field("t.any"), "contains", "b"))(ev(any=["abc"]))
    assert not compile_condition(Compare(Field("t.any"), "contains", "b"))(ev(any=12))


def test_boolean_structure() -> None:
    e = ev(s="a", i=1)
    a, b = Compare(Field("t.s"), "=", "a"), Compare(Field("t.i"), "=", 2)
    assert compile_condition(Or((a, b)))(e) and not compile_condition(And((a, b)))(e)
    assert compile_condition(And((a, Not(b))))(e)
    many = [Compare(Field("t.i"), "=", n) for n in range(10)]
    assert compile_condition(Or(tuple(many)))(ev(i=9)) and not compile_condition(Or(tuple(many)))(ev(i=10))
    assert not compile_condition(And(tuple(many)))(ev(i=1))
    assert compile_condition(And((a, a, a, a)))(e) and not compile_condition(And((a, a, a, b)))(e)


# ---------------------------------------------------------------- kinds

@pytest.mark.parametrize(("cond", "kinds"), [
    ("event.kind = exec", {"exec"}),
    ("event.kind in (exec, file)", {"exec", "file"}),
    ("event.kind iequals EXEC", {"exec"}),
    ("event.kind = exec and t.s = x", {"exec"}),
    ("event.kind in (exec, file) and event.kind = file", {"file"}),
    ("event.kind = exec or event.kind = net", {"exec", "net"}),
    ("event.kind = exec or t.s = x", None),
    ("t.path = /etc/shadow", {"file"}),
    ("t.path exists", {"file"}),
    ("basename(t.path) = shadow", {"file"}),
    ("t.path = /x or t.ip = 1.2.3.4", {"file", "net"}),
    ("t.path = /x and t.ip = 1.2.3.4", set()),
    ("t.s = x", None),
    ("not event.kind = exec", None),
    ("event.kind != exec", None),
    ("event.kind startswith ex", None),
    ("t.s = x and not t.path = /tmp", None),
    ("t.path = /x and not t.s = y", {"file"}),
])
def test_kinds_of(cond: str, kinds: set[str] | None) -> None:
    got = kinds_of(parse_condition(cond))
    assert (None if got is None else set(got)) == kinds


def test_kinds_of_constants() -> None:
    assert kinds_of(Const(False)) == frozenset()
    assert kinds_of(Const(True)) is None


# ---------------------------------------------------------------- templates

def test_templates() -> None:
    r = compile_template("Shell {proc.name} ran {proc.exe} args={proc.args} s={t.s} b={t.b} n={t.i}")
    e = ev(comm="sh", exe="/bin/sh", cmdline=["sh", "-c", "id"], b=False)
    assert r(e) == "Shell sh ran /bin/sh args=-c, id s=<NA> b=false n=<NA>"
    assert compile_template("{{literal}} {proc.args[0]}")(e) == "{literal} -c"
    assert compile_template("no fields")(e) == "no fields"


@pytest.mark.parametrize(("text", "col", "message"), [
    ("x {proc.nmae}", 4, "unknown field 'proc.nmae' (did you mean 'proc.name'?)"),
    ("x {} y", 4, "bad placeholder '{}'"),
    ("open { brace", 6, "unbalanced '{'"),
    ("close } brace", 7, "unbalanced '}'"),
])
def test_template_errors(text: str, col: int, message: str) -> None:
    with pytest.raises(RuleError) as info:
        compile_template(text, "r.yaml", 7, col=1)
    assert message in info.value.reason
    assert (info.value.line, info.value.col) == (7, col)
