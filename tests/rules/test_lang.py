"""The condition grammar: every operator, function and literal form, precedence, names, located errors."""

from __future__ import annotations

import pytest
import yaml

from sentinel_edge.errors import RuleError
from sentinel_edge.rules.ast import OPS, And, Call, Compare, Const, Exists, Field, Not, Or, Pos
from sentinel_edge.rules.lang import SourceMap, names_from, parse_condition, strip_positions, to_text, unquote


def parse(text: str, **names: dict[str, object]) -> object:
    n = names_from(names.get("lists"), names.get("macros"))  # type: ignore[arg-type]
    return strip_positions(parse_condition(text, names=n))


def err(text: str, **names: dict[str, object]) -> RuleError:
    n = names_from(names.get("lists"), names.get("macros"))  # type: ignore[arg-type]
    with pytest.raises(RuleError) as info:
        parse_condition(text, file="r.yaml", names=n)
    return info.value


NAME = Field("proc.name")
EXE = Field("proc.exe")
KIND = Field("event.kind")


# ---------------------------------------------------------------- operators and literals

WORD_OPS = [op for op in OPS if op.isalpha() and op not in ("in", "cidr", "bitand")]


@pytest.mark.parametrize("op", WORD_OPS)
def test_every_text_operator(op: str) -> None:
    assert parse(f"proc.exe {op} /usr/bin/x") == Compare(EXE, op, "/usr/bin/x")
    # keywords and operators are case-insensitive
    assert parse(f"proc.exe {op.upper()} /usr/bin/x") == Compare(EXE, op, "/usr/bin/x")


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_symbol_operators_with_numbers(op: str) -> None:
    assert parse(f"proc.pid {op} 42") == Compare(Field("proc.pid"), op, 42)
    assert parse(f"proc.pid{op}42") == Compare(Field("proc.pid"), op, 42)


def test_bitand_and_integer_forms() -> None:
    mode = Field("file.mode")
    assert parse("file.mode bitand 0o111") == Compare(mode, "bitand", 0o111)
    assert parse("file.mode bitand 0x49") == Compare(mode, "bitand", 0x49)
    assert parse("file.mode bitand 0b1") == Compare(mode, "bitand", 1)
    assert parse("event.ret = -13") == Compare(Field("event.ret"), "=", -13)
    assert parse('proc.pid = "7"') == Compare(Field("proc.pid"), "=", "7")  # quoted: the compiler coerces


def test_floats_and_functions_in_comparisons() -> None:
    assert parse("entropy(file.name) > 3.5") == Compare(Call("entropy", Field("file.name")), ">", 3.5)
    assert parse("len(proc.args) >= 1e1") == Compare(Call("len", Field("proc.args")), ">=", 10.0)


def test_booleans_for_bool_fields() -> None:
    assert parse("file.is_write = true") == Compare(Field("file.is_write"), "=", True)
    assert parse("proc.tty = FALSE") == Compare(Field("proc.tty"), "=", False)
    assert "not true or false" in str(err("proc.tty = yes"))


def test_barewords_are_text_for_text_fields() -> None:
    # a number or a boolean written bare is text when the field is text
    assert parse("proc.name = 1234") == Compare(NAME, "=", "1234")
    assert parse("proc.name = true") == Compare(NAME, "=", "true")
    assert parse("proc.cmdline contains --port=4444") == Compare(Field("proc.cmdline"), "contains", "--port=4444")
    assert parse("proc.name in (7z, 123)") == Compare(NAME, "in", ("7z", "123"))
    assert parse("proc.exe glob /tmp/*.sh") == Compare(EXE, "glob", "/tmp/*.sh")
    assert parse("proc.exe regex ^/dev/shm/") == Compare(EXE, "regex", "^/dev/shm/")


def test_quoted_strings_and_escapes() -> None:
    assert parse('proc.name = "a b"') == Compare(NAME, "=", "a b")
    assert parse("proc.name = 'a b'") == Compare(NAME, "=", "a b")
    assert parse(r'proc.cmdline contains "say \"hi\""') == Compare(Field("proc.cmdline"), "contains", 'say "hi"')
    assert parse(r"proc.cmdline contains 'it\'s'") == Compare(Field("proc.cmdline"), "contains", "it's")
    assert parse(r'proc.cmdline contains "a\tb\nc\\d"') == Compare(Field("proc.cmdline"), "contains", "a\tb\nc\\d")
    # other backslashes stay, so regexes read naturally
    assert parse(r'proc.exe regex "\d+\.sh$"') == Compare(EXE, "regex", r"\d+\.sh$")
    assert parse('proc.name = "and"') == Compare(NAME, "=", "and")  # quoted keywords are values
    assert unquote('"x"') == "x"


def test_in_cidr_exists() -> None:
    assert parse("event.kind in (exec, 'file', \"net\")") == Compare(KIND, "in", ("exec", "file", "net"))
    ip = Field("net.remote_ip")
    assert parse("net.remote_ip cidr (10.0.0.0/8, 'fe80::/10')") == Compare(ip, "cidr", ("10.0.0.0/8", "fe80::/10"))
    assert parse("proc.ld_preload exists") == Exists(Field("proc.ld_preload"))
    assert parse("net.remote_port in (3333, 4444)") == Compare(Field("net.remote_port"), "in", (3333, 4444))


def test_functions_and_indexes() -> None:
    for fn in ("lower", "upper", "basename", "dirname", "b64decode"):
        assert parse(f"{fn}(proc.exe) = x") == Compare(Call(fn, EXE), "=", "x")
    assert parse("LOWER(proc.name) = sh") == Compare(Call("lower", NAME), "=", "sh")
    assert parse("len(proc.cmdline) > 1000") == Compare(Call("len", Field("proc.cmdline")), ">", 1000)
    assert parse("lower(basename(proc.exe)) = sh") == Compare(Call("lower", Call("basename", EXE)), "=", "sh")
    assert parse("proc.aname[2] = sshd") == Compare(Field("proc.aname", 2), "=", "sshd")


def test_field_on_the_right() -> None:
    assert parse("proc.exe = parent.exe") == Compare(EXE, "=", Field("parent.exe"))
    assert parse("proc.name != proc.aname[1]") == Compare(NAME, "!=", Field("proc.aname", 1))
    assert parse("lower(proc.name) = lower(parent.name)") == Compare(Call("lower", NAME), "=",
                                                                     Call("lower", Field("parent.name")))
    # quoted, it is the text
    assert parse("proc.exe = 'parent.exe'") == Compare(EXE, "=", "parent.exe")


# ---------------------------------------------------------------- precedence

A = Compare(NAME, "=", "a")
B = Compare(NAME, "=", "b")
C = Compare(NAME, "=", "c")


def test_precedence_not_and_or() -> None:
    assert parse("proc.name = a or proc.name = b and proc.name = c") == Or((A, And((B, C))))
    assert parse("not proc.name = a and proc.name = b") == And((Not(A), B))
    assert parse("not not proc.name = a") == Not(Not(A))
    assert parse("(proc.name = a or proc.name = b) and proc.name = c") == And((Or((A, B)), C))
    assert parse("proc.name = a and proc.name = b and proc.name = c") == And((A, B, C))
    assert parse("proc.name = a OR proc.name = b Or proc.name = c") == Or((A, B, C))
    assert parse("not (proc.name = a or proc.name = b)") == Not(Or((A, B)))


# ---------------------------------------------------------------- lists and macros

def test_lists_expand_inside_in() -> None:
    lists = {"shells": ["bash", "sh"], "more": ["shells", "zsh"]}
    assert parse("proc.name in (shells, fish)", lists=lists) == Compare(NAME, "in", ("bash", "sh", "fish"))
    # a list naming a list
    assert parse("proc.name in (more)", lists=lists) == Compare(NAME, "in", ("bash", "sh", "zsh"))
    # quoted, a list name is only text
    assert parse("proc.name in ('shells')", lists=lists) == Compare(NAME, "in", ("shells",))
    assert parse("proc.name in (empty)", lists={"empty": []}) == Const(False)
    assert "list cycle: a -> b -> a" in str(err("proc.name in (a)", lists={"a": ["b"], "b": ["a"]}))
    assert "list 'shells' can only be used inside" in str(err("shells", lists=lists))


def test_macros_expand_and_are_shared() -> None:
    macros = {"spawned": "event.kind = exec", "shell": "spawned and proc.name in (bash, sh)"}
    n = names_from(macros=macros)
    t1 = parse_condition("shell and not proc.exe exists", names=n)
    t2 = parse_condition("shell or spawned", names=n)
    assert strip_positions(t1) == And((And((Compare(KIND, "=", "exec"), Compare(NAME, "in", ("bash", "sh")))),
                                       Not(Exists(EXE))))
    assert isinstance(t1, And) and isinstance(t2, Or)
    assert t1.items[0] is t2.items[0]   # parsed once, shared


def test_macro_errors() -> None:
    e = err("a", macros={"a": "b", "b": "event.kind = exec and a"})
    assert "macro cycle: a -> b -> a" in e.reason
    e = err("spawnd", macros={"spawned": "event.kind = exec"})
    assert e.reason == "unknown macro 'spawnd' (did you mean 'spawned'?)"
    assert (e.line, e.col) == (1, 1)
    e = err("event.kind = exec and broken", macros={"broken": "proc.nme = x"})
    assert "macro 'broken' is invalid (see <macro broken>:1:1)" in e.reason
    assert (e.line, e.col) == (1, 23)
    assert "needs an operator" in err("proc.tty").reason


# ---------------------------------------------------------------- errors, located

@pytest.mark.parametrize(("text", "line", "col", "message"), [
    ("proc.name in (and)", 1, 15, "unexpected 'and' after 'proc.name in (': expected a value"),
    ("proc.name = ", 1, 12, "unexpected end of the condition after 'proc.name =': expected a value"),
    ("proc.name = x and", 1, 18, "unexpected end of the condition after 'proc.name = x and': expected a condition"),
    ("(proc.name = x", 1, 15, "unexpected end of the condition after '(proc.name = x': expected ')'"),
    ("proc.name = x)", 1, 14, "unexpected ')' after 'proc.name = x': expected the end of the condition"),
    ("(proc.name = x))", 1, 16, "unexpected ')' after '(proc.name = x)': expected the end of the condition"),
    ("proc.name = x or or", 1, 18, "unexpected 'or' after 'proc.name = x or': expected a condition"),
    ("proc.name bogus x", 1, 11,
     "unexpected 'bogus' after 'proc.name': expected an operator, 'and', 'or' or the end of the condition"),
    ("proc.name in bash", 1, 14, "unexpected 'bash' after 'proc.name in': expected '('"),
    ("proc.name in (a b)", 1, 17, "unexpected 'b' after 'proc.name in (a': expected ',' or ')'"),
    ("proc.aname[x] = 1", 1, 12, "unexpected 'x' after 'proc.aname[': expected an index number"),
    ('proc.name = "abc', 1, 13, 'unterminated string: " is never closed'),
    ("and proc.name = x", 1, 1, "unexpected 'and' at the start of the condition: expected a condition"),
    ("proc.nmae = x", 1, 1, "unknown field 'proc.nmae' (did you mean 'proc.name'?)"),
    ("proc.name = x and\n  frob(proc.name) = y", 2, 3, "unknown function 'frob'"),
    ("proc.name[1] = x", 1, 1, "field 'proc.name' is not a list: it takes no [index]"),
    ("proc.pid = abc", 1, 12, "'abc' is not a number (proc.pid is int)"),
    ("proc.name = x\n  and\n    proc.name = )", 3, 17,
     "unexpected ')' after 'proc.name = x and proc.name =': expected a value"),
    ("proc.name = ;;(", 1, 16, "unexpected end of the condition after 'proc.name = ;;(': expected a field"),
])
def test_errors_name_line_column_and_what_was_expected(text: str, line: int, col: int, message: str) -> None:
    e = err(text)
    assert (e.file, e.line, e.col) == ("r.yaml", line, col), str(e)
    assert message in e.reason, e.reason
    assert str(e).startswith(f"r.yaml:{line}:{col}: ")


def test_semantic_errors_are_all_gathered() -> None:
    e = err("proc.nmae = x and proc.exx = y or proc.pid = z")
    assert [(x.line, x.col) for x in e.errors] == [(1, 1), (1, 19), (1, 46)]
    assert "proc.exe" in e.errors[1].reason and "not a number" in e.errors[2].reason


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    e = err("not " * 500 + "proc.name = x")
    assert "nested more than" in e.reason and e.line == 1
    e = err("(proc.name = x and " * 300 + "proc.name = x" + ")" * 300)
    assert "nested more than" in e.reason
    # parentheses alone add no depth
    assert parse("(" * 500 + "proc.name = a" + ")" * 500) == A


# ---------------------------------------------------------------- positions in YAML files

def _scalar(doc: str) -> yaml.ScalarNode:
    root = yaml.compose(doc, Loader=yaml.SafeLoader)
    node = root.value[0][1]
    assert isinstance(node, yaml.ScalarNode)
    return node


@pytest.mark.parametrize(("doc", "line", "col"), [
    ('c: proc.name = x and proc.nmae = y\n', 1, 22),
    ('c: "proc.name = x and proc.nmae = y"\n', 1, 23),
    ("c: 'proc.name = x and proc.nmae = y'\n", 1, 23),
    ("c: >\n  proc.name = x and\n  proc.nmae = y\n", 3, 3),
    ("c: |\n    proc.name = x and\n      proc.nmae = y\n", 3, 7),
    ("c: >-\n\n  proc.name = x\n  and proc.nmae = y\n", 4, 7),
    ("c: proc.name = x\n   and proc.nmae = y\n", 2, 8),
])
def test_positions_inside_yaml_scalars(doc: str, line: int, col: int) -> None:
    node = _scalar(doc)
    smap = SourceMap.for_scalar(doc, node, "f.yaml")
    with pytest.raises(RuleError) as info:
        parse_condition(node.value, file="f.yaml", smap=smap)
    assert (info.value.line, info.value.col) == (line, col)
    assert "proc.nmae" in doc.splitlines()[line - 1][col - 1:]


def test_source_map_plain_offsets() -> None:
    m = SourceMap.plain("ab\ncd", "f", line=14, col=16)
    assert m.locate(0) == (14, 16) and m.locate(1) == (14, 17)
    assert m.locate(3) == (15, 1) and m.locate(5) == (15, 3)
    assert m.pos(4) == Pos("f", 15, 2)


# ---------------------------------------------------------------- printer

@pytest.mark.parametrize("text", [
    "proc.name = x or proc.exe startswith '/tmp/' and not proc.tty = true",
    "net.remote_ip cidr (10.0.0.0/8) and net.remote_port in (1, 2)",
    "lower(proc.name) = lower(parent.name) and proc.aname[3] exists",
    r"proc.cmdline regex 'a\\b\"c' or entropy(file.name) > 3.25",
])
def test_printer_round_trip(text: str) -> None:
    tree = parse(text)
    assert parse(to_text(tree)) == tree  # type: ignore[arg-type]
