"""Policy files (YAML) to a :class:`~sentinel_edge.enforce.model.PolicySet`, every problem located.

A policy file is one mapping with a ``policies:`` list (docs/policies.md is
the reference)::

    policies:
      - id: no-exec-from-tmp            # unique across every loaded file
        description: Nothing runs from world-writable directories
        mode: enforce                   # audit (the default: alert only) | enforce
        severity: high                  # info | low | medium | high (default) | critical
        techniques: [T1059, T1204.002]  # ATT&CK technique ids
        scope:                          # who it applies to; left out: everybody
          users: [1000, www-data]       #   uids, or user names looked up here (pwd)
          containers: any               #   any | host | containers | [container ids]
          parents: [/usr/sbin/nginx]    #   only children of these executables
        exec:                           # exactly one of exec, file, connect, inbound, kernel
          deny:
            files: [/usr/bin/nc.openbsd]
            prefixes: [/tmp/, /dev/shm/]
            sha256: [<64 hex digits>]

Nothing stops at the first problem: every file is read, every problem is
kept as one :class:`PolicyError` located at ``file:line:column`` with the
field path (``policies[2].connect.cidrs[1]``), and a load with any problem
raises one PolicyError whose ``errors`` lists them all, so the policy set
in force is never replaced by a half-valid one. YAML is composed into nodes
(not constructed), so positions survive and aliases are never expanded.
Hostile input (invalid UTF-8, NUL bytes, deep nesting, huge files or paths)
gives located errors, never another exception.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import pwd
import re
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from sentinel_edge.enforce.model import (
    KIND_CONNECT,
    KIND_EXEC,
    KIND_FILE,
    KIND_INBOUND,
    KIND_KERNEL,
    KINDS,
    MODES,
    ConnectDeny,
    ExecDeny,
    FileDeny,
    InboundDrop,
    IPNetwork,
    KernelDeny,
    Mode,
    Policy,
    PolicySet,
    Scope,
    Spec,
)
from sentinel_edge.errors import PolicyError
from sentinel_edge.rules.loader import TECHNIQUE_RE
from sentinel_edge.rules.model import SEVERITIES

__all__ = ["MAX_FILE_BYTES", "load_policy_files", "load_policy_text", "policy_files", "spec_summary"]

MAX_FILE_BYTES = 4 * 1024 * 1024    # a policy file larger than this is refused unread
MAX_ERRORS_PER_FILE = 200           # past this, one more error says how many were left out
MAX_DEPTH = 32                      # YAML nesting (the language needs 5)
PATH_MAX = 4096                     # bytes with the trailing NUL, as the kernel counts
NAME_MAX = 255                      # bytes of one path component
MAX_PORT_RANGE = 1024               # ports one "low-high" item may expand to
POLICY_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
USER_NAME_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?", re.IGNORECASE)
CONTAINER_ID_RE = re.compile(r"[0-9a-f]{12,64}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
IFNAME_RE = re.compile(r"[^/\s:%]{1,15}")
PORT_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
GLOB_CHARS = frozenset("*?[")
UID_MAX = 0xFFFFFFFE                # (u32)-1 means "no id"

TOP_KEYS = ("policies",)
POLICY_KEYS = ("id", "description", "mode", "severity", "techniques", "scope", *KINDS)
SCOPE_KEYS = ("users", "containers", "parents")
CONTAINER_WORDS = ("any", "host", "containers")
EXEC_KEYS = ("deny",)
EXEC_DENY_KEYS = ("files", "prefixes", "sha256")
FILE_KEYS = ("paths", "access", "allow")
ACCESS = ("read", "write")
CONNECT_KEYS = ("cidrs", "ports")
INBOUND_KEYS = ("interfaces", "sources")
KERNEL_KEYS = ("deny", "allow")
KERNEL_DENY = ("module_load", "bpf_load")
# keys of nested sections written directly in a policy: where they belong
_BELONGS_UNDER = {
    **{k: "'scope:'" for k in SCOPE_KEYS}, **{k: "'exec: deny:'" for k in EXEC_DENY_KEYS},
    "deny": "'exec:' or 'kernel:'", **{k: "'file:'" for k in FILE_KEYS}, **{k: "'connect:'" for k in CONNECT_KEYS},
    **{k: "'inbound:'" for k in INBOUND_KEYS}, "allow": "'file:' or 'kernel:'",
}
ALL_NETWORKS: tuple[IPNetwork, ...] = (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0"))

_NULL_TAG = "tag:yaml.org,2002:null"

Keys = dict[str, tuple[yaml.Node, yaml.Node]]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Read:
    """A policy read from a file, with where its id is (for duplicate-id errors across files)."""

    policy: Policy | None               # None: the policy had errors (its id still counts for duplicates)
    id_line: int
    id_col: int
    id_field: str
    id: str


def _printable(text: str) -> str:
    """Text safe to print anywhere: control characters and lone surrogates as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def _show(value: str, limit: int = 60) -> str:
    """A value quoted for a message: control characters escaped, long values cut (with their length)."""
    if len(value) > limit:
        size = len(value.encode("utf-8", "surrogatepass"))
        return f"'{_printable(value[:limit])}…' ({size} bytes)"
    return f"'{_printable(value)}'"


def _kind_of(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return "single value"


class _TooManyErrors(Exception):
    """Raised inside one file once MAX_ERRORS_PER_FILE problems are recorded."""


@dataclass
class _Src:
    """One policy file being read: its name and the problems found so far."""

    file: str
    errors: list[PolicyError] = field(default_factory=list)

    def err(self, reason: str, node: yaml.Node | None, where: str) -> None:
        line, col = (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (0, 0)
        self.errors.append(PolicyError(reason, file=self.file, line=line, col=col, field=where))
        if len(self.errors) >= MAX_ERRORS_PER_FILE:
            raise _TooManyErrors

    # -- node shapes ----------------------------------------------------------------

    def mapping(self, node: yaml.Node, where: str, allowed: tuple[str, ...]) -> Keys | None:
        """Keys of a mapping (name -> (key node, value node)); unknown and repeated keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            self.err(f"must be a mapping (key: value), not a {_kind_of(node)}", node, where)
            return None
        out: Keys = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.err(f"has a key that is a {_kind_of(k)}, not a name", k, where)
                continue
            name = str(k.value)
            sub = f"{where}.{_printable(name)}" if where else _printable(name)
            if name in out:
                first = out[name][0].start_mark
                self.err(f"key {_show(name)} given twice (first at line {first.line + 1})", k, sub)
                continue
            if name == "<<":
                self.err("merge keys ('<<') are not supported: write the keys out", k, sub)
                continue
            if name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                home = _BELONGS_UNDER.get(name) if allowed is POLICY_KEYS else None
                self.err(f"unknown key {_show(name)}"
                         + (f" (did you mean '{hint[0]}'?)" if hint else
                            f" ('{name}' goes under {home})" if home else
                            f" (known keys: {', '.join(allowed)})"), k, sub)
                continue
            out[name] = (k, v)
        return out

    def sequence(self, node: yaml.Node, where: str, example: str = "") -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
                self.err("is empty: give a list" + (f" ({example})" if example else ""), node, where)
            elif isinstance(node, yaml.ScalarNode):
                shown = _printable(str(node.value))[:60]
                self.err(f"must be a list, not a single value (write [{shown}])", node, where)
            else:
                self.err(f"must be a list, not a {_kind_of(node)}", node, where)
            return None
        return list(node.value)

    def nonempty_sequence(self, node: yaml.Node, where: str, example: str = "") -> list[yaml.Node] | None:
        items = self.sequence(node, where, example)
        if items is not None and not items:
            self.err("is an empty list" + (f" ({example})" if example else ""), node, where)
            return None
        return items

    def text(self, node: yaml.Node, where: str) -> str | None:
        """A single non-empty value as text."""
        if not isinstance(node, yaml.ScalarNode):
            self.err(f"must be a single value, not a {_kind_of(node)}", node, where)
            return None
        if node.tag == _NULL_TAG and node.style is None:
            self.err("is empty", node, where)
            return None
        value = str(node.value)
        if "\0" in value:
            self.err(f"contains a NUL character: {_show(value)}", node, where)
            return None
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                self.err(f"contains a lone surrogate (\\u{ord(value[exc.start]):04x}, from an escape): "
                         f"not text: {_show(value)}", node, where)
                return None
        return value

    def choice(self, node: yaml.Node, where: str, choices: tuple[str, ...]) -> str | None:
        v = self.text(node, where)
        if v is None:
            return None
        if v not in choices:
            hint = difflib.get_close_matches(v, choices, n=1, cutoff=0.6)
            self.err(f"{_show(v)} is not one of {', '.join(choices)}"
                     + (f" (did you mean '{hint[0]}'?)" if hint else ""), node, where)
            return None
        return v

    # -- values ---------------------------------------------------------------------

    def path(self, node: yaml.Node, where: str, role: str) -> str | None:
        """An absolute, normalised path.

        ``role``: ``exe`` (an executable: allow lists, parents, exec files),
        ``prefix`` (exec prefixes: a trailing '/' means everything under a
        directory, none means that one path) or ``protected`` (file.paths:
        globs allowed, a trailing '/' means the files directly in a directory).
        """
        p = self.text(node, where)
        if p is None:
            return None
        size = len(p.encode("utf-8"))
        if size >= PATH_MAX:
            self.err(f"path {_show(p)} is too long: paths are limited to {PATH_MAX - 1} bytes (PATH_MAX)",
                     node, where)
            return None
        if not p.startswith("/"):
            self.err(f"path {_show(p)} is relative: write an absolute path (starting with '/')", node, where)
            return None
        parts = p.split("/")[1:]
        if p.endswith("/"):
            parts = parts[:-1]
        long_part = next((c for c in parts if len(c.encode("utf-8")) > NAME_MAX), None)
        if long_part is not None:
            self.err(f"path {_show(p)} has a component of more than {NAME_MAX} bytes (NAME_MAX): "
                     f"{_show(long_part, 30)}", node, where)
            return None
        if p != "/" and any(c in ("", ".", "..") for c in parts):
            fixed = os.path.normpath(p) + ("/" if p.endswith("/") and os.path.normpath(p) != "/" else "")
            self.err(f"path {_show(p)} is not normalised (an empty, '.' or '..' component): "
                     f"paths are compared as the kernel resolves them; write {_show(fixed)}", node, where)
            return None
        if role != "protected" and GLOB_CHARS & set(p):
            self.err(f"path {_show(p)} has glob characters (*, ?, [): globs are only allowed in file.paths",
                     node, where)
            return None
        if p.endswith("/"):
            if role == "exe":
                self.err(f"path {_show(p)} ends with '/': name an executable file"
                         + (" (to deny everything under a directory, use exec.deny.prefixes)"
                            if ".files" in where else ""), node, where)
                return None
            if p == "/" and role == "prefix":
                self.err("prefix '/' would deny every program on the host", node, where)
                return None
            if p == "/":
                self.err("'/' would protect every file directly under the root directory; name the files",
                         node, where)
                return None
            return p
        if not (GLOB_CHARS & set(p)) and os.path.isdir(p):
            if role == "exe":
                self.err(f"{_show(p)} is a directory on this host, not an executable"
                         + (f" (to deny everything under it, put {_show(p + '/')} in exec.deny.prefixes)"
                            if ".files" in where else ""), node, where)
            elif role == "prefix":
                self.err(f"{_show(p)} is a directory on this host: a prefix meant as a directory must end "
                         f"with '/' (write {_show(p + '/')}; without it only that exact path matches)", node, where)
            else:
                self.err(f"{_show(p)} is a directory on this host: write {_show(p + '/')} to protect the files "
                         "directly in it", node, where)
            return None
        return p

    def paths(self, node: yaml.Node, where: str, role: str, example: str) -> tuple[str, ...] | None:
        items = self.nonempty_sequence(node, where, example)
        if items is None:
            return None
        out = [self.path(n, f"{where}[{i}]", role) for i, n in enumerate(items)]
        return _unique(out)

    def network(self, node: yaml.Node, where: str) -> IPNetwork | None:
        v = self.text(node, where)
        if v is None:
            return None
        if "%" in v:
            self.err(f"{_show(v)} has a scope ('%'): scoped IPv6 addresses cannot be matched", node, where)
            return None
        try:
            return ipaddress.ip_network(v, strict=True)
        except ValueError as exc:
            try:
                loose = ipaddress.ip_network(v, strict=False)
            except ValueError:
                self.err(f"{_show(v)} is not an IPv4 or IPv6 network (10.0.0.0/8, 2001:db8::/32, or one "
                         "address)", node, where)
                return None
            self.err(f"{_show(v)} has host bits set (did you mean '{loose}'?)" if "host bits" in str(exc)
                     else f"{_show(v)} is not a valid network: {exc}", node, where)
            return None

    def networks(self, node: yaml.Node, where: str) -> tuple[IPNetwork, ...] | None:
        items = self.nonempty_sequence(node, where, "[10.0.0.0/8, 2001:db8::/32]")
        if items is None:
            return None
        return _unique([self.network(n, f"{where}[{i}]") for i, n in enumerate(items)])


def _unique(values: list[_T | None]) -> tuple[_T, ...] | None:
    """The values in order without repeats, or None when any of them was invalid."""
    if any(v is None for v in values):
        return None
    return tuple(dict.fromkeys(v for v in values if v is not None))


# ---------------------------------------------------------------- files


def policy_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[PolicyError]]:
    """The policy files named by ``paths``: files as given, directories' *.yaml/*.yml (recursively, sorted)."""
    found: list[Path] = []
    errors: list[PolicyError] = []
    for p in map(Path, paths):
        try:
            if p.is_dir():
                found.extend(sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file()))
            elif p.is_file():
                found.append(p)
            elif p.exists():
                errors.append(PolicyError("not a regular file", file=str(p)))
            else:
                errors.append(PolicyError("no such file or directory", file=str(p)))
        except OSError as exc:
            errors.append(PolicyError(f"cannot read: {exc.strerror or exc}", file=str(p)))
    # a file named twice (or also through its directory) is read once
    files: list[Path] = []
    seen: set[str] = set()
    for f in found:
        real = os.path.realpath(f)
        if real not in seen:
            seen.add(real)
            files.append(f)
    return files, errors


def load_policy_files(paths: Iterable[str | Path]) -> PolicySet:
    """Read, validate and combine every policy in ``paths`` (files or directories).

    Raises one :class:`PolicyError` listing every problem (``errors``) when
    there is any; policy ids must be unique across all the files.
    """
    files, errors = policy_files(paths)
    read: list[tuple[str, list[_Read], list[PolicyError]]] = []
    for f in files:
        name = str(f)
        src = _Src(name)
        try:
            # O_NONBLOCK and a check of what was opened: a file swapped for a FIFO cannot block the load
            fd = os.open(f, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
            with open(fd, "rb", closefd=True) as fh:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(0, "not a regular file")
                data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            src.errors.append(PolicyError(f"cannot read: {exc.strerror or exc}", file=name))
            read.append((name, [], src.errors))
            continue
        read.append((name, *_load_bytes(data, src)))
    return _combine(read, errors)


def load_policy_text(text: str, file: str = "<string>") -> PolicySet:
    """The policies of one file's text (``file`` names it in errors); raises PolicyError like load_policy_files."""
    src = _Src(file)
    if len(text) > MAX_FILE_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        src.errors.append(PolicyError(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: policy files "
                                      "are limited to that", file=file))
        policies: list[_Read] = []
    else:
        policies = _load_text(text, src)
    return _combine([(file, policies, src.errors)], [])


def _combine(read: list[tuple[str, list[_Read], list[PolicyError]]], errors: list[PolicyError]) -> PolicySet:
    """One PolicySet from per-file results; duplicate ids across files are errors; raise if anything failed."""
    all_errors = list(errors)
    seen: dict[str, tuple[str, int]] = {}
    policies: list[Policy] = []
    for name, got, errs in read:
        dup: list[PolicyError] = []
        for r in got:
            first = seen.get(r.id)
            if first is not None:
                dup.append(PolicyError(f"duplicate policy id '{r.id}' (first defined at {first[0]}:{first[1]})",
                                       file=name, line=r.id_line, col=r.id_col, field=r.id_field))
                continue
            seen[r.id] = (name, r.id_line)
            if r.policy is not None:
                policies.append(r.policy)
        # errors of the whole file (no line: unreadable, too large, too many errors) after the located ones
        all_errors.extend(sorted(errs + dup, key=lambda e: (e.line or sys.maxsize, e.col)))
    if all_errors:
        first_err = all_errors[0]
        more = f" (and {len(all_errors) - 1} more)" if len(all_errors) > 1 else ""
        raise PolicyError(f"{first_err}{more}", file=first_err.file, line=first_err.line, col=first_err.col,
                          field=first_err.field, errors=all_errors)
    return PolicySet(policies=tuple(policies), files=tuple(name for name, _, _ in read))


def _load_bytes(data: bytes, src: _Src) -> tuple[list[_Read], list[PolicyError]]:
    if len(data) > MAX_FILE_BYTES:
        src.errors.append(PolicyError(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: policy files "
                                      "are limited to that", file=src.file))
        return [], src.errors
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        head = data[:start].decode("utf-8")       # valid up to the first bad byte
        line, col = _line_col(head, len(head))
        bad = sum(1 for _ in re.finditer(rb"[\x80-\xff]+", data)) if len(data) < 1 << 20 else 0
        src.errors.append(PolicyError(
            f"invalid UTF-8 (byte 0x{data[start]:02x}): policy files must be UTF-8 text"
            + (f"; {bad} runs of non-ASCII bytes in the file" if bad > 1 else ""),
            file=src.file, line=line, col=col))
        return [], src.errors
    return _load_text(text, src), src.errors


_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")     # what YAML counts as a line break


def _line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of character ``pos``, counting lines as YAML marks do."""
    line, start = 1, 0
    for m in _LINE_BREAK.finditer(text, 0, pos):
        line, start = line + 1, m.end()
    return line, pos - start + 1


def _compose(text: str, src: _Src) -> yaml.Node | None:
    """The YAML node tree of a file; YAML problems become located errors."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        ch = exc.character
        code = ch if isinstance(ch, int) else ord(ch) if isinstance(ch, str) and len(ch) == 1 else -1
        what = ("a NUL byte" if code == 0 else
                f"the control character U+{code:04X}" if 0 <= code < 0x20 or 0x7F <= code < 0xA0 else
                f"the character U+{code:04X}" if code > 0 else "a character")
        src.errors.append(PolicyError(f"{what} is not allowed in a policy file (YAML text)",
                                      file=src.file, line=line, col=col))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        src.errors.append(PolicyError(f"invalid YAML: {problem}", file=src.file, line=line, col=col))
    except yaml.YAMLError as exc:
        src.errors.append(PolicyError(f"invalid YAML: {exc}", file=src.file))
    except RecursionError:
        line, col = _too_deep(text)
        src.errors.append(PolicyError(f"invalid YAML: nested more than {MAX_DEPTH} levels deep",
                                      file=src.file, line=line, col=col))
    return None


def _too_deep(text: str) -> tuple[int, int]:
    """Where the nesting first exceeds MAX_DEPTH (the event parser is not recursive)."""
    depth = 0
    try:
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH and ev.start_mark is not None:
                    return ev.start_mark.line + 1, ev.start_mark.column + 1
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return 1, 1


def _load_text(text: str, src: _Src) -> list[_Read]:
    root = _compose(text, src)
    if root is None:
        return []
    if _depth_exceeded(root):
        line, col = _too_deep(text)
        src.errors.append(PolicyError(f"nested more than {MAX_DEPTH} levels deep", file=src.file,
                                      line=line, col=col))
        return []
    policies: list[_Read] = []
    try:
        _read_root(root, src, policies)
    except _TooManyErrors:
        src.errors.append(PolicyError(f"too many errors: only the first {MAX_ERRORS_PER_FILE} are listed",
                                      file=src.file))
        return []
    return policies


def _depth_exceeded(root: yaml.Node) -> bool:
    """True when the tree nests deeper than MAX_DEPTH (checked without recursion; aliases visited once)."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    seen: set[int] = set()
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((n, depth + 1) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
    return False


# ---------------------------------------------------------------- the language


def _read_root(root: yaml.Node, src: _Src, out: list[_Read]) -> None:
    if isinstance(root, yaml.ScalarNode) and root.tag == _NULL_TAG:
        return  # an empty file (or only comments): no policies
    if isinstance(root, yaml.SequenceNode):
        src.err("a policy file is a mapping with a 'policies:' list, not a bare list "
                "(put 'policies:' on the first line and indent the list under it)", root, "")
        return
    keys = src.mapping(root, "", TOP_KEYS)
    if keys is None:
        return
    if "policies" not in keys:
        if not isinstance(root, yaml.MappingNode) or not root.value:
            src.err("no 'policies:' list in this file", root, "")
        return
    pnode = keys["policies"][1]
    if isinstance(pnode, yaml.ScalarNode) and pnode.tag == _NULL_TAG:
        return  # "policies:" with nothing under it: no policies
    items = src.sequence(pnode, "policies")
    if items is None:
        return
    ids: dict[str, _Read] = {}
    for i, item in enumerate(items):
        r = _read_policy(item, f"policies[{i}]", src)
        if r is None:
            continue
        first = ids.get(r.id)
        if first is not None:
            src.errors.append(PolicyError(f"duplicate policy id '{r.id}' (first defined at line "
                                          f"{first.id_line})", file=src.file, line=r.id_line, col=r.id_col,
                                          field=r.id_field))
            continue
        ids[r.id] = r
        out.append(r)


def _read_policy(item: yaml.Node, where: str, src: _Src) -> _Read | None:
    """One policy; None when it has no usable id. ``_Read.policy`` is None when anything in it is wrong
    (every part is still checked, so all of its problems are reported at once)."""
    before = len(src.errors)
    keys = src.mapping(item, where, POLICY_KEYS)
    if keys is None:
        return None
    pid = ""
    id_node: yaml.Node = item
    if "id" not in keys:
        src.err("the policy has no 'id'", item, where)
    else:
        id_node = keys["id"][1]
        v = src.text(id_node, f"{where}.id")
        if v is not None and not POLICY_ID_RE.fullmatch(v):
            src.err(f"policy id {_show(v)} is invalid: 1 to 64 lower-case letters, digits, '.', '_' and '-', "
                    "starting with a letter or digit", id_node, f"{where}.id")
        elif v is not None:
            pid = v
    description = ""
    if "description" in keys:
        description = (src.text(keys["description"][1], f"{where}.description") or "").strip()
    mode: Mode = "audit"
    if "mode" in keys:
        m = src.choice(keys["mode"][1], f"{where}.mode", MODES)
        mode = "enforce" if m == "enforce" else "audit"
    severity = "high"
    if "severity" in keys:
        severity = src.choice(keys["severity"][1], f"{where}.severity", SEVERITIES) or severity
    techniques = _techniques(keys, where, src)
    kinds = [k for k in KINDS if k in keys]
    scope = Scope()
    if "scope" in keys:
        if KIND_INBOUND in kinds:
            src.err("an inbound policy has no scope: packets dropped in XDP belong to no process yet "
                    "(choose the interfaces and sources instead)", keys["scope"][0], f"{where}.scope")
        else:
            scope = _scope(keys["scope"][1], f"{where}.scope", src) or scope
    if not kinds:
        src.err(f"the policy has no kind: give exactly one of {', '.join(KINDS)}", item, where)
    elif len(kinds) > 1:
        second = min((keys[k][0] for k in kinds[1:]), key=lambda n: (n.start_mark.line, n.start_mark.column))
        src.err(f"the policy has {len(kinds)} kinds ({', '.join(kinds)}): give exactly one "
                "(write one policy per kind)", second, f"{where}.{second.value}")
    specs = [_SPECS[k](keys[k][1], f"{where}.{k}", src) for k in kinds]
    read = _Read(None, id_node.start_mark.line + 1, id_node.start_mark.column + 1, f"{where}.id", pid)
    if len(specs) != 1 or specs[0] is None or len(src.errors) > before or not pid:
        return read if pid else None
    policy = Policy(id=pid, kind=kinds[0], mode=mode, spec=specs[0], scope=scope, description=description,
                    severity=severity, techniques=techniques, file=src.file, line=item.start_mark.line + 1)
    return _Read(policy, read.id_line, read.id_col, read.id_field, pid)


def _techniques(keys: Keys, where: str, src: _Src) -> tuple[str, ...]:
    if "techniques" not in keys:
        return ()
    w = f"{where}.techniques"
    items = src.sequence(keys["techniques"][1], w, "[T1059, T1204.002]")
    if items is None:
        return ()
    out: list[str] = []
    for i, n in enumerate(items):
        t = src.text(n, f"{w}[{i}]")
        if t is None:
            continue
        if not TECHNIQUE_RE.fullmatch(t):
            src.err(f"{_show(t)} is not an ATT&CK technique id (T1234 or T1234.001)", n, f"{w}[{i}]")
            continue
        out.append(t)
    return tuple(dict.fromkeys(out))


def _scope(node: yaml.Node, where: str, src: _Src) -> Scope | None:
    keys = src.mapping(node, where, SCOPE_KEYS)
    if keys is None:
        return None
    users: tuple[int, ...] = ()
    containers: str | tuple[str, ...] = "any"
    parents: tuple[str, ...] = ()
    ok = True
    if "users" in keys:
        got = _users(keys["users"][1], f"{where}.users", src)
        ok = ok and got is not None
        users = got or ()
    if "containers" in keys:
        c = _containers(keys["containers"][1], f"{where}.containers", src)
        ok = ok and c is not None
        containers = c if c is not None else "any"
    if "parents" in keys:
        ps = src.paths(keys["parents"][1], f"{where}.parents", "exe", "[/usr/sbin/nginx]")
        ok = ok and ps is not None
        parents = ps or ()
    return Scope(users=users, containers=containers, parents=parents) if ok else None


def _users(node: yaml.Node, where: str, src: _Src) -> tuple[int, ...] | None:
    items = src.nonempty_sequence(node, where, "[0, 1000, www-data]")
    if items is None:
        return None
    out: list[int | None] = []
    for i, n in enumerate(items):
        w = f"{where}[{i}]"
        v = src.text(n, w)
        if v is None:
            out.append(None)
        elif v.isascii() and v.isdigit():
            uid = int(v)
            if uid > UID_MAX:
                src.err(f"uid {_show(v)} is out of range (0 to {UID_MAX})", n, w)
                out.append(None)
            else:
                out.append(uid)
        elif not USER_NAME_RE.fullmatch(v):
            src.err(f"{_show(v)} is neither a uid (0 to {UID_MAX}) nor a user name", n, w)
            out.append(None)
        else:
            try:
                out.append(pwd.getpwnam(v).pw_uid)
            except KeyError:
                src.err(f"no user named {_show(v)} on this host (names are looked up when the policy is loaded; "
                        "give the uid to name a user this host does not know)", n, w)
                out.append(None)
    return _unique(out)


def _containers(node: yaml.Node, where: str, src: _Src) -> str | tuple[str, ...] | None:
    if isinstance(node, yaml.ScalarNode):
        return src.choice(node, where, CONTAINER_WORDS)
    items = src.nonempty_sequence(node, where, "any, host, containers, or a list of container ids")
    if items is None:
        return None
    out: list[str | None] = []
    for i, n in enumerate(items):
        w = f"{where}[{i}]"
        v = src.text(n, w)
        if v is not None and not CONTAINER_ID_RE.fullmatch(v.lower()):
            src.err(f"{_show(v)} is not a container id (12 to 64 hex digits: the full id or a unique prefix)", n, w)
            v = None
        out.append(v.lower() if v is not None else None)
    return _unique(out)


def _exec(node: yaml.Node, where: str, src: _Src) -> ExecDeny | None:
    keys = src.mapping(node, where, EXEC_KEYS)
    if keys is None:
        return None
    if "deny" not in keys:
        src.err("needs 'deny:' with files, prefixes or sha256", node, where)
        return None
    w = f"{where}.deny"
    dkeys = src.mapping(keys["deny"][1], w, EXEC_DENY_KEYS)
    if dkeys is None:
        return None
    if not dkeys and not getattr(keys["deny"][1], "value", None):
        src.err("needs at least one of files, prefixes, sha256", keys["deny"][1], w)
        return None
    files: tuple[str, ...] | None = ()
    prefixes: tuple[str, ...] | None = ()
    digests: tuple[str, ...] | None = ()
    if "files" in dkeys:
        files = src.paths(dkeys["files"][1], f"{w}.files", "exe", "[/usr/bin/nc.openbsd]")
    if "prefixes" in dkeys:
        prefixes = src.paths(dkeys["prefixes"][1], f"{w}.prefixes", "prefix", "[/tmp/, /dev/shm/]")
    if "sha256" in dkeys:
        digests = _digests(dkeys["sha256"][1], f"{w}.sha256", src)
    if files is None or prefixes is None or digests is None:
        return None
    return ExecDeny(files=files, prefixes=prefixes, sha256=digests)


def _digests(node: yaml.Node, where: str, src: _Src) -> tuple[str, ...] | None:
    items = src.nonempty_sequence(node, where, "[<64 hex digits>]")
    if items is None:
        return None
    out: list[str | None] = []
    for i, n in enumerate(items):
        w = f"{where}[{i}]"
        v = src.text(n, w)
        if v is not None and not SHA256_RE.fullmatch(v.lower()):
            src.err(f"{_show(v)} is not a SHA-256 digest (64 hex digits, {len(v)} characters given)", n, w)
            v = None
        out.append(v.lower() if v is not None else None)
    return _unique(out)


def _file(node: yaml.Node, where: str, src: _Src) -> FileDeny | None:
    keys = src.mapping(node, where, FILE_KEYS)
    if keys is None:
        return None
    if "paths" not in keys:
        src.err("needs 'paths:' (the files to protect)", node, where)
        return None
    paths = src.paths(keys["paths"][1], f"{where}.paths", "protected", "[/etc/shadow, /etc/ssh/ssh_host_*_key]")
    access: frozenset[str] | None = frozenset(ACCESS)
    if "access" in keys:
        items = src.nonempty_sequence(keys["access"][1], f"{where}.access", "[read, write]")
        got = [src.choice(n, f"{where}.access[{i}]", ACCESS) for i, n in enumerate(items or [])]
        u = _unique(got) if items is not None else None
        access = frozenset(u) if u is not None else None
    allow: tuple[str, ...] | None = ()
    if "allow" in keys:
        allow = src.paths(keys["allow"][1], f"{where}.allow", "exe", "[/usr/sbin/sshd]")
    if paths is None or access is None or allow is None:
        return None
    return FileDeny(paths=paths, access=access, allow=allow)


def _ports(node: yaml.Node, where: str, src: _Src) -> tuple[int, ...] | None:
    items = src.nonempty_sequence(node, where, "[25, 4444, 6660-6669]")
    if items is None:
        return None
    out: list[int] = []
    ok = True
    for i, n in enumerate(items):
        w = f"{where}[{i}]"
        v = src.text(n, w)
        if v is None:
            ok = False
            continue
        m = PORT_RE.fullmatch(v.strip())
        lo = int(m.group(1)) if m else 0
        hi = int(m.group(2)) if m and m.group(2) else lo
        if m is None or not (1 <= lo <= 65535 and 1 <= hi <= 65535):
            src.err(f"{_show(v)} is not a port (1 to 65535) or a range of ports (6660-6669)", n, w)
            ok = False
        elif hi < lo:
            src.err(f"port range {_show(v)} runs backwards (write {hi}-{lo})", n, w)
            ok = False
        elif hi - lo + 1 > MAX_PORT_RANGE:
            src.err(f"port range {_show(v)} has {hi - lo + 1} ports; a range may have at most {MAX_PORT_RANGE} "
                    "(leave ports out to deny every port)", n, w)
            ok = False
        else:
            out.extend(range(lo, hi + 1))
    return tuple(dict.fromkeys(out)) if ok else None


def _connect(node: yaml.Node, where: str, src: _Src) -> ConnectDeny | None:
    keys = src.mapping(node, where, CONNECT_KEYS)
    if keys is None:
        return None
    if not keys and not getattr(node, "value", None):
        src.err("needs cidrs, ports or both", node, where)
        return None
    networks: tuple[IPNetwork, ...] | None = ALL_NETWORKS
    ports: tuple[int, ...] | None = ()
    if "cidrs" in keys:
        networks = src.networks(keys["cidrs"][1], f"{where}.cidrs")
    if "ports" in keys:
        ports = _ports(keys["ports"][1], f"{where}.ports", src)
    if networks is None or ports is None:
        return None
    return ConnectDeny(networks=networks, ports=ports)


def _inbound(node: yaml.Node, where: str, src: _Src) -> InboundDrop | None:
    keys = src.mapping(node, where, INBOUND_KEYS)
    if keys is None:
        return None
    for need in INBOUND_KEYS:
        if need not in keys:
            src.err(f"needs '{need}:'", node, where)
    if len(keys) < len(INBOUND_KEYS):
        return None
    w = f"{where}.interfaces"
    items = src.nonempty_sequence(keys["interfaces"][1], w, "[eth0]")
    names: list[str | None] = []
    for i, n in enumerate(items or []):
        v = src.text(n, f"{w}[{i}]")
        if v is not None and (not IFNAME_RE.fullmatch(v) or v in (".", "..")
                              or len(v.encode("utf-8")) > 15):
            src.err(f"{_show(v)} is not an interface name (1 to 15 bytes, no '/', ':', '%' or spaces)", n,
                    f"{w}[{i}]")
            v = None
        names.append(v)
    interfaces = _unique(names) if items is not None else None
    sources = src.networks(keys["sources"][1], f"{where}.sources")
    if interfaces is None or sources is None:
        return None
    return InboundDrop(interfaces=interfaces, sources=sources)


def _kernel(node: yaml.Node, where: str, src: _Src) -> KernelDeny | None:
    keys = src.mapping(node, where, KERNEL_KEYS)
    if keys is None:
        return None
    deny: tuple[str, ...] | None = KERNEL_DENY
    if "deny" in keys:
        items = src.nonempty_sequence(keys["deny"][1], f"{where}.deny", "[module_load, bpf_load]")
        got = [src.choice(n, f"{where}.deny[{i}]", KERNEL_DENY) for i, n in enumerate(items or [])]
        deny = _unique(got) if items is not None else None
    allow: tuple[str, ...] | None = ()
    if "allow" in keys:
        allow = src.paths(keys["allow"][1], f"{where}.allow", "exe", "[/usr/sbin/modprobe]")
    if deny is None or allow is None:
        return None
    return KernelDeny(module_load="module_load" in deny, bpf_load="bpf_load" in deny, allow=allow)


_SPECS = {
    KIND_EXEC: _exec,
    KIND_FILE: _file,
    KIND_CONNECT: _connect,
    KIND_INBOUND: _inbound,
    KIND_KERNEL: _kernel,
}


def spec_summary(p: Policy) -> str:
    """One line saying what a policy denies (for listings and reports; long lists are cut)."""
    s: Spec = p.spec
    if isinstance(s, ExecDeny):
        names = [*s.files, *(x for x in s.prefixes if not x.endswith("/"))]
        dirs = [x for x in s.prefixes if x.endswith("/")]
        parts = [_few(names)] if names else []
        parts += [f"anything under {_few(dirs)}"] if dirs else []
        parts += [_count(len(s.sha256), "SHA-256 digest")] if s.sha256 else []
        return "deny exec of " + "; ".join(parts)
    if isinstance(s, FileDeny):
        return (f"deny {'/'.join(a for a in ACCESS if a in s.access)} of {_few(s.paths)}"
                + (f" except by {_few(s.allow)}" if s.allow else ""))
    if isinstance(s, ConnectDeny):
        nets = "any address" if s.networks == ALL_NETWORKS else _few([str(n) for n in s.networks])
        return f"deny connect to {nets}" + (f" ports {_port_text(s.ports)}" if s.ports else "")
    if isinstance(s, InboundDrop):
        return f"drop inbound from {_few([str(n) for n in s.sources])} on {_few(s.interfaces)}"
    what = [w for w, on in (("module loads", s.module_load), ("BPF program loads", s.bpf_load)) if on]
    return f"deny {' and '.join(what)}" + (f" except by {_few(s.allow)}" if s.allow else "")


def _few(items: Iterable[str], n: int = 4) -> str:
    got = list(items)
    return ", ".join(got[:n]) + (f" and {len(got) - n} more" if len(got) > n else "")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def _port_text(ports: tuple[int, ...]) -> str:
    """Ports with consecutive runs written as ranges (80, 443, 6660-6669)."""
    out: list[str] = []
    run: list[int] = []
    for p in sorted(ports):
        if run and p == run[-1] + 1:
            run.append(p)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [p]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
