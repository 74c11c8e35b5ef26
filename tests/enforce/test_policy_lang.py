"""Policy files: every kind parsed into the model exactly, every error kind located, hostile input, the CLI."""

from __future__ import annotations

import io
import ipaddress
import os
import pwd
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel_edge.cli import build_parser
from sentinel_edge.enforce.model import (
    ConnectDeny,
    ExecDeny,
    FileDeny,
    InboundDrop,
    KernelDeny,
    Policy,
    PolicySet,
    Scope,
)
from sentinel_edge.enforce.policy import (
    MAX_ERRORS_PER_FILE,
    MAX_FILE_BYTES,
    load_policy_files,
    load_policy_text,
    spec_summary,
)
from sentinel_edge.errors import PolicyError

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples" / "policies"
SHA = "ab" * 32


def net(s: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(s)


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def errors_of(text: str, file: str = "p.yaml") -> list[tuple[int, int, str, str]]:
    """(line, column, field, reason) of every error of a policy text; fails when it loads."""
    with pytest.raises(PolicyError) as ei:
        load_policy_text(textwrap.dedent(text).lstrip("\n"), file)
    exc = ei.value
    assert exc.errors, "a failed load lists its errors"
    first = exc.errors[0]
    assert (exc.file, exc.line, exc.col, exc.field) == (first.file, first.line, first.col, first.field)
    assert str(exc).startswith(str(first))
    for e in exc.errors:
        assert e.file == file
        assert str(e) == (f"{file}:{e.line}:{e.col}: {e.field + ': ' if e.field else ''}{e.reason}"
                          if e.line else f"{file}: {e.field + ': ' if e.field else ''}{e.reason}")
    return [(e.line, e.col, e.field, e.reason) for e in exc.errors]


def one_error(text: str) -> tuple[int, int, str, str]:
    errs = errors_of(text)
    assert len(errs) == 1, errs
    return errs[0]


EVERY_KIND = """
policies:
  - id: no-exec-from-tmp
    description: "  Nothing runs from world-writable directories  "
    mode: enforce
    severity: critical
    techniques: [T1059, T1204.002, T1059]
    scope:
      users: [0, root, 1000]
      containers: [0123456789AB, 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef]
      parents: [/usr/sbin/nginx]
    exec:
      deny:
        files: [/usr/bin/nc.openbsd, /usr/bin/nc.openbsd]
        prefixes: [/tmp/, /dev/shm/, /opt/tool]
        sha256: [ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB]
  - id: protect-shadow
    file:
      paths: [/etc/shadow, "/etc/ssh/ssh_host_*_key", /etc/ssl/private/]
      access: [write]
      allow: [/usr/sbin/sshd]
  - id: no-smtp
    scope: {containers: containers}
    connect:
      cidrs: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7, "::1"]
      ports: [25, "587", 6660-6662]
  - id: drop-bad
    mode: audit
    inbound:
      interfaces: [eth0, veth-a.1]
      sources: [203.0.113.0/24, "2001:db8:bad::/48"]
  - id: no-bpf
    kernel:
      deny: [bpf_load]
      allow: [/usr/sbin/bpftool]
  - id: defaults.k
    kernel: {}
  - id: ports-only
    scope: {containers: host}
    connect: {ports: [25]}
"""


def test_every_kind_maps_onto_the_model_exactly(tmp_path: Path) -> None:
    f = write(tmp_path, "all.yaml", EVERY_KIND)
    ps = load_policy_files([f])
    name = str(f)
    assert ps == PolicySet(files=(name,), policies=(
        Policy(id="no-exec-from-tmp", kind="exec", mode="enforce", severity="critical",
               description="Nothing runs from world-writable directories",
               techniques=("T1059", "T1204.002"),
               scope=Scope(users=(0, 1000), parents=("/usr/sbin/nginx",),
                           containers=("0123456789ab", "0123456789abcdef" * 4)),
               spec=ExecDeny(files=("/usr/bin/nc.openbsd",), prefixes=("/tmp/", "/dev/shm/", "/opt/tool"),
                             sha256=(SHA,)),
               file=name, line=2),
        Policy(id="protect-shadow", kind="file", mode="audit", severity="high",
               spec=FileDeny(paths=("/etc/shadow", "/etc/ssh/ssh_host_*_key", "/etc/ssl/private/"),
                             access=frozenset({"write"}), allow=("/usr/sbin/sshd",)),
               file=name, line=16),
        Policy(id="no-smtp", kind="connect", mode="audit", scope=Scope(containers="containers"),
               spec=ConnectDeny(networks=(net("10.0.0.0/8"), net("2001:db8::/32"), net("192.0.2.7/32"),
                                          net("::1/128")), ports=(25, 587, 6660, 6661, 6662)),
               file=name, line=21),
        Policy(id="drop-bad", kind="inbound", mode="audit",
               spec=InboundDrop(interfaces=("eth0", "veth-a.1"),
                                sources=(net("203.0.113.0/24"), net("2001:db8:bad::/48"))),
               file=name, line=26),
        Policy(id="no-bpf", kind="kernel", mode="audit",
               spec=KernelDeny(module_load=False, bpf_load=True, allow=("/usr/sbin/bpftool",)),
               file=name, line=31),
        Policy(id="defaults.k", kind="kernel", mode="audit", spec=KernelDeny(module_load=True, bpf_load=True),
               file=name, line=35),
        Policy(id="ports-only", kind="connect", mode="audit", scope=Scope(containers="host"),
               spec=ConnectDeny(networks=(net("0.0.0.0/0"), net("::/0")), ports=(25,)),
               file=name, line=37),
    ))
    # defaults: audit unless enforce is written, severity high, everybody, read and write
    shadow = ps.by_id("protect-shadow")
    assert shadow is not None and shadow.scope.everybody and shadow.techniques == () and shadow.description == ""
    assert spec_summary(shadow) == ("deny write of /etc/shadow, /etc/ssh/ssh_host_*_key, /etc/ssl/private/ "
                                    "except by /usr/sbin/sshd")
    smtp = ps.by_id("no-smtp")
    assert smtp is not None
    assert spec_summary(smtp) == ("deny connect to 10.0.0.0/8, 2001:db8::/32, 192.0.2.7/32, ::1/128 "
                                  "ports 25, 587, 6660-6662")
    ports_only = ps.by_id("ports-only")
    assert ports_only is not None and spec_summary(ports_only) == "deny connect to any address ports 25"


def test_user_names_are_resolved_through_pwd() -> None:
    name = pwd.getpwuid(65534).pw_name  # nobody / nfsnobody
    ps = load_policy_text(f"policies:\n  - id: u\n    scope: {{users: [{name}, '42']}}\n    kernel: {{}}\n")
    assert ps.policies[0].scope.users == (65534, 42)
    assert ps.files == ("<string>",)


def test_empty_files_and_lists_have_no_policies(tmp_path: Path) -> None:
    for text in ("", "# only a comment\n", "policies:\n", "policies: []\n"):
        assert load_policy_text(text, "e.yaml") == PolicySet(files=("e.yaml",))


# ---------------------------------------------------------------- every error, located


def test_unknown_keys_suggest_the_closest_known_key() -> None:
    assert errors_of("""
        policies:
          - id: a
            mod: enforce
            scope: {user: [0]}
            connect:
              cidr: [10.0.0.0/8]
              port: [25]
          - id: b
            exec: {deny: {prefix: [/tmp/], zzz: 1}}
        """) == [
        (3, 5, "policies[0].mod", "unknown key 'mod' (did you mean 'mode'?)"),
        (4, 13, "policies[0].scope.user", "unknown key 'user' (did you mean 'users'?)"),
        (6, 7, "policies[0].connect.cidr", "unknown key 'cidr' (did you mean 'cidrs'?)"),
        (7, 7, "policies[0].connect.port", "unknown key 'port' (did you mean 'ports'?)"),
        (9, 19, "policies[1].exec.deny.prefix", "unknown key 'prefix' (did you mean 'prefixes'?)"),
        (9, 36, "policies[1].exec.deny.zzz", "unknown key 'zzz' (known keys: files, prefixes, sha256)"),
    ]


def test_field_paths_locate_values_inside_lists() -> None:
    assert errors_of("""
        policies:
          - id: ok
            kernel: {}
          - id: ok2
            kernel: {}
          - id: c
            connect:
              cidrs: [10.0.0.0/8, 10.0.0.1/8, 300.1.1.1, "fe80::1%eth0", 10.0.0.0/33]
              ports: [0, 70000, 10-5, 1-5000, http, 8080-8081]
        """) == [
        (8, 27, "policies[2].connect.cidrs[1]", "'10.0.0.1/8' has host bits set (did you mean '10.0.0.0/8'?)"),
        (8, 39, "policies[2].connect.cidrs[2]",
         "'300.1.1.1' is not an IPv4 or IPv6 network (10.0.0.0/8, 2001:db8::/32, or one address)"),
        (8, 50, "policies[2].connect.cidrs[3]",
         "'fe80::1%eth0' has a scope ('%'): scoped IPv6 addresses cannot be matched"),
        (8, 66, "policies[2].connect.cidrs[4]",
         "'10.0.0.0/33' is not an IPv4 or IPv6 network (10.0.0.0/8, 2001:db8::/32, or one address)"),
        (9, 15, "policies[2].connect.ports[0]", "'0' is not a port (1 to 65535) or a range of ports (6660-6669)"),
        (9, 18, "policies[2].connect.ports[1]",
         "'70000' is not a port (1 to 65535) or a range of ports (6660-6669)"),
        (9, 25, "policies[2].connect.ports[2]", "port range '10-5' runs backwards (write 5-10)"),
        (9, 31, "policies[2].connect.ports[3]",
         "port range '1-5000' has 5000 ports; a range may have at most 1024 (leave ports out to deny every port)"),
        (9, 39, "policies[2].connect.ports[4]", "'http' is not a port (1 to 65535) or a range of ports (6660-6669)"),
    ]


def test_paths_are_absolute_normalised_bounded_and_directories_end_with_a_slash() -> None:
    long_path = "/" + "a/" * 2100 + "b"
    assert errors_of(f"""
        policies:
          - id: p
            exec:
              deny:
                files: [bin/x, /tmp/, /usr/bin, "/x*y", /a//b]
                prefixes: [/tmp, /a/../b/, /x/./y/, /, "{long_path}", "/{'c' * 256}/"]
          - id: f
            file:
              paths: [/etc, /, relative/file, "/etc/ok\\0no"]
              allow: [/usr/sbin/]
            scope: {{parents: [./nginx]}}
        """) == [
        (5, 17, "policies[0].exec.deny.files[0]",
         "path 'bin/x' is relative: write an absolute path (starting with '/')"),
        (5, 24, "policies[0].exec.deny.files[1]",
         "path '/tmp/' ends with '/': name an executable file (to deny everything under a directory, "
         "use exec.deny.prefixes)"),
        (5, 31, "policies[0].exec.deny.files[2]",
         "'/usr/bin' is a directory on this host, not an executable (to deny everything under it, "
         "put '/usr/bin/' in exec.deny.prefixes)"),
        (5, 41, "policies[0].exec.deny.files[3]",
         "path '/x*y' has glob characters (*, ?, [): globs are only allowed in file.paths"),
        (5, 49, "policies[0].exec.deny.files[4]",
         "path '/a//b' is not normalised (an empty, '.' or '..' component): paths are compared as the kernel "
         "resolves them; write '/a/b'"),
        (6, 20, "policies[0].exec.deny.prefixes[0]",
         "'/tmp' is a directory on this host: a prefix meant as a directory must end with '/' "
         "(write '/tmp/'; without it only that exact path matches)"),
        (6, 26, "policies[0].exec.deny.prefixes[1]",
         "path '/a/../b/' is not normalised (an empty, '.' or '..' component): paths are compared as the "
         "kernel resolves them; write '/b/'"),
        (6, 36, "policies[0].exec.deny.prefixes[2]",
         "path '/x/./y/' is not normalised (an empty, '.' or '..' component): paths are compared as the "
         "kernel resolves them; write '/x/y/'"),
        (6, 45, "policies[0].exec.deny.prefixes[3]", "prefix '/' would deny every program on the host"),
        (6, 48, "policies[0].exec.deny.prefixes[4]",
         f"path '{long_path[:60]}…' (4202 bytes) is too long: paths are limited to 4095 bytes (PATH_MAX)"),
        (6, 4254, "policies[0].exec.deny.prefixes[5]",
         f"path '/{'c' * 59}…' (258 bytes) has a component of more than 255 bytes (NAME_MAX): "
         f"'{'c' * 30}…' (256 bytes)"),
        (9, 15, "policies[1].file.paths[0]",
         "'/etc' is a directory on this host: write '/etc/' to protect the files directly in it"),
        (9, 21, "policies[1].file.paths[1]",
         "'/' would protect every file directly under the root directory; name the files"),
        (9, 24, "policies[1].file.paths[2]",
         "path 'relative/file' is relative: write an absolute path (starting with '/')"),
        (9, 39, "policies[1].file.paths[3]", "contains a NUL character: '/etc/ok\\x00no'"),
        (10, 15, "policies[1].file.allow[0]", "path '/usr/sbin/' ends with '/': name an executable file"),
        (11, 23, "policies[1].scope.parents[0]",
         "path './nginx' is relative: write an absolute path (starting with '/')"),
    ]


def test_values_of_every_field_are_checked() -> None:
    assert errors_of("""
        policies:
          - id: Bad_ID
            mode: enforced
            severity: hi
            techniques: [X1, T1059]
            description: [a, list]
            scope:
              users: [nobody-such-user, -1, 4294967295, "a b"]
              containers: [abc, ZZZZZZZZZZZZZZ]
            exec: {deny: {sha256: [abc, "%s"]}}
          - id: i
            inbound:
              interfaces: [eth0/1, averyveryverylongname, ".."]
              sources: []
          - id: k
            kernel: {deny: [module_loads], allow: [/usr/bin/kmod]}
          - id: a
            file: {paths: [/etc/shadow], access: [execute]}
          - id: s
            scope: {containers: everywhere}
            connect: {ports: [25]}
        """ % ("0" * 63 + "g")) == [
        (2, 9, "policies[0].id", "policy id 'Bad_ID' is invalid: 1 to 64 lower-case letters, digits, '.', '_' "
                                 "and '-', starting with a letter or digit"),
        (3, 11, "policies[0].mode", "'enforced' is not one of audit, enforce (did you mean 'enforce'?)"),
        (4, 15, "policies[0].severity",
         "'hi' is not one of info, low, medium, high, critical (did you mean 'high'?)"),
        (5, 18, "policies[0].techniques[0]", "'X1' is not an ATT&CK technique id (T1234 or T1234.001)"),
        (6, 18, "policies[0].description", "must be a single value, not a list"),
        (8, 15, "policies[0].scope.users[0]",
         "no user named 'nobody-such-user' on this host (names are looked up when the policy is loaded; "
         "give the uid to name a user this host does not know)"),
        (8, 33, "policies[0].scope.users[1]", "'-1' is neither a uid (0 to 4294967294) nor a user name"),
        (8, 37, "policies[0].scope.users[2]", "uid '4294967295' is out of range (0 to 4294967294)"),
        (8, 49, "policies[0].scope.users[3]", "'a b' is neither a uid (0 to 4294967294) nor a user name"),
        (9, 20, "policies[0].scope.containers[0]",
         "'abc' is not a container id (12 to 64 hex digits: the full id or a unique prefix)"),
        (9, 25, "policies[0].scope.containers[1]",
         "'ZZZZZZZZZZZZZZ' is not a container id (12 to 64 hex digits: the full id or a unique prefix)"),
        (10, 28, "policies[0].exec.deny.sha256[0]",
         "'abc' is not a SHA-256 digest (64 hex digits, 3 characters given)"),
        (10, 33, "policies[0].exec.deny.sha256[1]",
         f"'{'0' * 60}…' (64 bytes) is not a SHA-256 digest (64 hex digits, 64 characters given)"),
        (13, 20, "policies[1].inbound.interfaces[0]",
         "'eth0/1' is not an interface name (1 to 15 bytes, no '/', ':', '%' or spaces)"),
        (13, 28, "policies[1].inbound.interfaces[1]",
         "'averyveryverylongname' is not an interface name (1 to 15 bytes, no '/', ':', '%' or spaces)"),
        (13, 51, "policies[1].inbound.interfaces[2]",
         "'..' is not an interface name (1 to 15 bytes, no '/', ':', '%' or spaces)"),
        (14, 16, "policies[1].inbound.sources", "is an empty list ([10.0.0.0/8, 2001:db8::/32])"),
        (16, 21, "policies[2].kernel.deny[0]",
         "'module_loads' is not one of module_load, bpf_load (did you mean 'module_load'?)"),
        (18, 43, "policies[3].file.access[0]", "'execute' is not one of read, write"),
        (20, 25, "policies[4].scope.containers",
         "'everywhere' is not one of any, host, containers"),
    ]


def test_structure_errors() -> None:
    assert errors_of("""
        policies:
          - id: two-kinds
            exec: {deny: {prefixes: [/tmp/]}}
            file: {paths: [/etc/shadow]}
          - id: no-kind
            mode: audit
          - description: no id
            kernel: {}
          - just a string
          - id: in
            scope: {users: [0]}
            inbound: {interfaces: [lo]}
          - id: empty-exec
            exec: {deny: {}}
          - id: no-deny
            exec: {}
          - id: empty-connect
            connect: {}
          - id: no-paths
            file: {access: [read]}
          - id: twice
            id: again
            kernel: {}
          - id: users-scalar
            scope: {users: 0, parents: }
            kernel: {}
          - id: merge
            <<: {mode: enforce}
            kernel: {}
        """) == [
        (4, 5, "policies[0].file", "the policy has 2 kinds (exec, file): give exactly one (write one policy per kind)"),
        (5, 5, "policies[1]", "the policy has no kind: give exactly one of exec, file, connect, inbound, kernel"),
        (7, 5, "policies[2]", "the policy has no 'id'"),
        (9, 5, "policies[3]", "must be a mapping (key: value), not a single value"),
        (11, 5, "policies[4].scope",
         "an inbound policy has no scope: packets dropped in XDP belong to no process yet "
         "(choose the interfaces and sources instead)"),
        (12, 14, "policies[4].inbound", "needs 'sources:'"),
        (14, 18, "policies[5].exec.deny", "needs at least one of files, prefixes, sha256"),
        (16, 11, "policies[6].exec", "needs 'deny:' with files, prefixes or sha256"),
        (18, 14, "policies[7].connect", "needs cidrs, ports or both"),
        (20, 11, "policies[8].file", "needs 'paths:' (the files to protect)"),
        (22, 5, "policies[9].id", "key 'id' given twice (first at line 21)"),
        (25, 20, "policies[10].scope.users", "must be a list, not a single value (write [0])"),
        (25, 31, "policies[10].scope.parents", "is empty: give a list ([/usr/sbin/nginx])"),
        (28, 5, "policies[11].<<", "merge keys ('<<') are not supported: write the keys out"),
    ]


def test_escapes_that_are_not_text_and_misplaced_keys() -> None:
    assert errors_of("""
        policies:
          - id: a
            users: [0]
            exec: {deny: {files: ["/tmp/\\ud800x"]}}
            "\\x07k": 1
            allow: [/usr/bin/kmod]
        """) == [
        (3, 5, "policies[0].users", "unknown key 'users' ('users' goes under 'scope:')"),
        (4, 27, "policies[0].exec.deny.files[0]",
         "contains a lone surrogate (\\ud800, from an escape): not text: '/tmp/\\ud800x'"),
        (5, 5, "policies[0].\\x07k", "unknown key '\\x07k' (known keys: id, description, mode, severity, "
                                     "techniques, scope, exec, file, connect, inbound, kernel)"),
        (6, 5, "policies[0].allow", "unknown key 'allow' ('allow' goes under 'file:' or 'kernel:')"),
    ]
    # raw (not escaped) characters YAML does not allow, in a str given directly
    assert one_error("policies:\n  - id: a\ud800\n") == (
        2, 10, "", "the character U+D800 is not allowed in a policy file (YAML text)")


def test_top_level_shapes() -> None:
    assert one_error("- id: a\n  kernel: {}\n") == (
        1, 1, "", "a policy file is a mapping with a 'policies:' list, not a bare list "
                  "(put 'policies:' on the first line and indent the list under it)")
    assert one_error("policy:\n  - id: a\n") == (1, 1, "policy", "unknown key 'policy' (did you mean 'policies'?)")
    assert one_error("policies: {id: a}\n") == (1, 11, "policies", "must be a list, not a mapping")
    assert one_error("just text\n") == (1, 1, "", "must be a mapping (key: value), not a single value")
    assert one_error("policies:\n  - id: a\n   bad: [\n") == (
        3, 4, "", "invalid YAML: expected <block end>, but found '<block mapping start>'")
    assert one_error("policies:\r  - id: a\r    description: \x1f\r") == (
        3, 18, "", "the control character U+001F is not allowed in a policy file (YAML text)")


def test_duplicate_ids_within_and_across_files(tmp_path: Path) -> None:
    a = write(tmp_path, "d/a.yaml", "policies:\n  - id: x\n    kernel: {}\n  - id: y\n    kernel: {}\n")
    b = write(tmp_path, "d/sub/b.yml", "policies:\n  - id: z\n    kernel: {}\n  - id:   x\n    kernel: {}\n")
    write(tmp_path, "d/notes.txt", "not a policy file: ignored")
    with pytest.raises(PolicyError) as ei:
        load_policy_files([tmp_path / "d"])
    assert [(e.file, e.line, e.col, e.field, e.reason) for e in ei.value.errors] == [
        (str(b), 4, 11, "policies[1].id", f"duplicate policy id 'x' (first defined at {a}:2)")]
    # within one file, also when the first of the two is broken
    assert errors_of("policies:\n  - id: x\n    kernel: {deny: [nope]}\n  - id: x\n    kernel: {}\n") == [
        (3, 21, "policies[0].kernel.deny[0]", "'nope' is not one of module_load, bpf_load"),
        (4, 9, "policies[1].id", "duplicate policy id 'x' (first defined at line 2)")]
    # the same file named twice (directly and through its directory) is read once
    ps = load_policy_files([a, tmp_path / "d" / "a.yaml", tmp_path / "d" / ".." / "d" / "a.yaml"])
    assert [p.id for p in ps.policies] == ["x", "y"] and ps.files == (str(a),)


def test_directories_are_read_sorted_and_recursively(tmp_path: Path) -> None:
    write(tmp_path, "d/20.yaml", "policies:\n  - id: second\n    kernel: {}\n")
    write(tmp_path, "d/10.yml", "policies:\n  - id: first\n    kernel: {}\n")
    write(tmp_path, "d/30/x.yaml", "policies:\n  - id: third\n    kernel: {}\n")
    write(tmp_path, "d/40.json", "{}")
    ps = load_policy_files([tmp_path / "d"])
    assert [p.id for p in ps.policies] == ["first", "second", "third"]
    assert ps.files == (str(tmp_path / "d/10.yml"), str(tmp_path / "d/20.yaml"), str(tmp_path / "d/30/x.yaml"))
    assert load_policy_files([tmp_path / "d" / "20.yaml", tmp_path / "d" / "20.yaml"]).files == (
        str(tmp_path / "d/20.yaml"),)
    assert load_policy_files([]) == PolicySet()


def test_every_file_is_checked_before_failing(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "policies:\n  - id: a\n    mode: x\n    kernel: {}\n")
    b = write(tmp_path, "b.yaml", "policies:\n  - id: b\n    severity: y\n    kernel: {}\n")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PolicyError) as ei:
        load_policy_files([a, missing, b])
    got = [(e.file, e.line, e.field) for e in ei.value.errors]
    assert got == [(str(missing), 0, ""), (str(a), 3, "policies[0].mode"), (str(b), 3, "policies[0].severity")]
    assert ei.value.errors[0].reason == "no such file or directory"
    assert str(ei.value) == f"{missing}: no such file or directory (and 2 more)"


# ---------------------------------------------------------------- hostile input


def load_bytes(tmp: Path, data: bytes) -> list[PolicyError]:
    f = tmp / "h.yaml"
    f.write_bytes(data)
    with pytest.raises(PolicyError) as ei:
        load_policy_files([f])
    assert all(e.file == str(f) for e in ei.value.errors)
    return ei.value.errors


def test_invalid_utf8_is_located(tmp_path: Path) -> None:
    errs = load_bytes(tmp_path, "policies:\n  - id: x\n    description: café \xff\n".encode("latin-1")
                      .replace(b"caf\xe9", "café".encode()))
    assert [(e.line, e.col, e.reason) for e in errs] == [
        (3, 23, "invalid UTF-8 (byte 0xff): policy files must be UTF-8 text; 2 runs of non-ASCII bytes in the file")]


def test_nul_and_control_bytes_are_located(tmp_path: Path) -> None:
    errs = load_bytes(tmp_path, b"policies:\n  - id: x\x00y\n")
    assert [(e.line, e.col, e.reason) for e in errs] == [
        (2, 10, "a NUL byte is not allowed in a policy file (YAML text)")]
    errs = load_bytes(tmp_path, b"policies:\n  - id: x\n    description: a\x07b\n")
    assert [(e.line, e.col, e.reason) for e in errs] == [
        (3, 19, "the control character U+0007 is not allowed in a policy file (YAML text)")]


def test_huge_files_are_refused_unparsed(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    with open(f, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)   # sparse: a 4 MiB + 1 file of NULs
    with pytest.raises(PolicyError) as ei:
        load_policy_files([f])
    assert [(e.file, e.line, e.reason) for e in ei.value.errors] == [
        (str(f), 0, "file is larger than 4 MiB: policy files are limited to that")]
    with pytest.raises(PolicyError) as ei:
        load_policy_text("#" * (MAX_FILE_BYTES + 1), "t.yaml")
    assert ei.value.errors[0].reason == "file is larger than 4 MiB: policy files are limited to that"


def test_deep_nesting_and_aliases(tmp_path: Path) -> None:
    errs = load_bytes(tmp_path, b"policies: " + b"[" * 3000 + b"]" * 3000 + b"\n")
    assert [(e.line, e.col, e.reason) for e in errs] == [(1, 42, "invalid YAML: nested more than 32 levels deep")]
    errs = load_bytes(tmp_path, b"policies: " + b"[" * 40 + b"]" * 40 + b"\n")
    assert [(e.line, e.col, e.reason) for e in errs] == [(1, 42, "nested more than 32 levels deep")]
    # a recursive alias and a billion-laughs tree are never expanded
    errs = load_bytes(tmp_path, b"policies: &a [*a]\n")
    assert [(e.line, e.field, e.reason) for e in errs] == [
        (1, "policies[0]", "must be a mapping (key: value), not a list")]
    laughs = (b"policies:\n  - &p {id: p, connect: {cidrs: &c [10.0.0.0/8, 10.0.0.0/8, 10.0.0.0/8]}}\n"
              + b"".join(b"  - {id: p%d, connect: {cidrs: *c}}\n" % i for i in range(50)))
    f = tmp_path / "aliases.yaml"
    f.write_bytes(laughs)
    ps = load_policy_files([f])
    assert len(ps.policies) == 51 and ps.policies[7].spec == ConnectDeny(networks=(net("10.0.0.0/8"),))


def test_many_errors_are_capped(tmp_path: Path) -> None:
    text = "policies:\n  - id: c\n    connect:\n      cidrs:\n" + "".join(f"        - bad{i}\n" for i in range(500))
    errs = load_bytes(tmp_path, text.encode())
    assert len(errs) == MAX_ERRORS_PER_FILE + 1
    assert errs[0].field == "policies[0].connect.cidrs[0]" and errs[0].line == 5
    assert errs[-1].reason == f"too many errors: only the first {MAX_ERRORS_PER_FILE} are listed"


def test_paths_that_are_not_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(PolicyError) as ei:
        load_policy_files([fifo])   # never opened: a FIFO would block
    assert [(e.file, e.reason) for e in ei.value.errors] == [(str(fifo), "not a regular file")]


# ---------------------------------------------------------------- property tests: only PolicyError, always located

VOCAB = ["policies", "id", "description", "mode", "severity", "techniques", "scope", "users", "containers",
         "parents", "exec", "deny", "files", "prefixes", "sha256", "file", "paths", "access", "allow", "connect",
         "cidrs", "ports", "inbound", "interfaces", "sources", "kernel", "module_load", "bpf_load", "enforce",
         "audit", "read", "write", "host", "any", "/tmp/", "/tmp", "/etc/shadow", "/etc/ssh/*_key", "10.0.0.0/8",
         "::1", "25", "6660-6669", "root", "0", "T1059", "x", "", "/", "..", "a/b", "\\0", "é", "\t", "%"]

scalars = st.one_of(st.sampled_from(VOCAB), st.integers(-2, 70000), st.none(), st.booleans(),
                    st.text(max_size=6), st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=3))
trees = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                     st.dictionaries(st.sampled_from(VOCAB), kids, max_size=4)),
                     max_leaves=30)


def assert_located(text: str, exc: PolicyError) -> None:
    lines = re.split("\r\n|[\r\n\x85\u2028\u2029]", text)   # YAML's line breaks
    assert exc.errors
    for e in exc.errors:
        assert e.file == "f.yaml"
        if e.line:
            assert 1 <= e.line <= len(lines), (text, str(e))
            assert 1 <= e.col <= len(lines[e.line - 1]) + 1, (text, str(e))


def check_text(text: str) -> None:
    try:
        load_policy_text(text, "f.yaml")
    except PolicyError as exc:
        assert_located(text, exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text_raises_only_located_policy_errors(text: str) -> None:
    check_text(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["policies", "x"]),
                       st.lists(st.dictionaries(st.sampled_from(VOCAB), trees, max_size=6), max_size=3),
                       min_size=1, max_size=2))
def test_random_policy_shaped_yaml_raises_only_located_policy_errors(doc: dict[str, object]) -> None:
    check_text(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(EVERY_KIND) - 1), st.integers(0, 8),
       st.text(alphabet=list("[]{}:,-'\"#&*!|> \n\t\0\x07é/") , max_size=4))
def test_garbled_valid_file_raises_only_located_policy_errors(pos: int, cut: int, insert: str) -> None:
    check_text(EVERY_KIND[:pos] + insert + EVERY_KIND[pos + cut:])


@pytest.fixture(scope="module")
def bytes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("policy-bytes")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_random_bytes_from_disk_raise_only_policy_errors(bytes_dir: Path, data: bytes) -> None:
    f = bytes_dir / "b.yaml"
    f.write_bytes(data)
    try:
        load_policy_files([f])
    except PolicyError as exc:
        assert exc.errors and all(e.file == str(f) for e in exc.errors)


# ---------------------------------------------------------------- examples and CLI


def test_shipped_examples_validate() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 4
    ps = load_policy_files([EXAMPLES])
    assert ps.files == tuple(str(f) for f in files)
    assert {p.kind for p in ps.policies} == {"exec", "file", "connect", "inbound", "kernel"}
    assert any(p.mode == "enforce" for p in ps.policies) and any(p.mode == "audit" for p in ps.policies)
    assert all(p.description and p.techniques for p in ps.policies)


def run_cli(*argv: str) -> tuple[int, str, str]:
    from sentinel_edge.enforce.cli import run_policy

    args = build_parser().parse_args(["policy", *argv])
    out, err = io.StringIO(), io.StringIO()
    rc = run_policy(args, out, err)
    return rc, out.getvalue(), err.getvalue()


def test_cli_validate_prints_a_summary_or_every_error(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", EVERY_KIND)
    rc, out, err = run_cli("validate", str(good))
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == ("7 policies OK in 1 file: 2 connect, 1 exec, 1 file, 1 inbound, 2 kernel; "
                        "1 enforce, 6 audit")
    assert lines[1] == ("  no-exec-from-tmp [exec, enforce, critical] (scoped) deny exec of /usr/bin/nc.openbsd, "
                        "/opt/tool; anything under /tmp/, /dev/shm/; 1 SHA-256 digest")
    assert lines[4] == ("  drop-bad [inbound, audit, high] drop inbound from 203.0.113.0/24, 2001:db8:bad::/48 "
                        "on eth0, veth-a.1")
    assert len(lines) == 8
    bad = write(tmp_path, "bad.yaml", "policies:\n  - id: a\n    mode: x\n    kernel: {deny: [y]}\n")
    rc, out, err = run_cli("validate", str(bad), str(good))
    assert (rc, out) == (1, "")
    assert err.splitlines() == [
        f"{bad}:3:11: policies[0].mode: 'x' is not one of audit, enforce",
        f"{bad}:4:21: policies[0].kernel.deny[0]: 'y' is not one of module_load, bpf_load",
        "2 errors in 1 file",
    ]


def test_cli_is_registered_in_the_main_command(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "policies:\n  - id: a\n    kernel: {allow: [usr/bin/kmod]}\n")
    res = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "policy", "validate", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == (f"{bad}:3:22: policies[0].kernel.allow[0]: path 'usr/bin/kmod' is relative: write an "
                          "absolute path (starting with '/')\n1 error in 1 file\n")
    res = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "policy", "validate", str(EXAMPLES)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{len(load_policy_files([EXAMPLES]).policies)} policies OK in ")
