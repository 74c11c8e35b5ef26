"""The issue's benign workload under the full default rule set: few alerts, none high or critical.

One shell (the workload's dedicated parent) runs, one after the other:
- an autotools-style ``./configure && make && make check`` of a small C project
  (configure writes, compiles and runs test programs in a directory under /tmp,
  as autoconf's does, and probes the host with uname and hostname);
- ``pip wheel`` of a tiny local project (an in-tree PEP 517 backend, so nothing
  is fetched) and ``pip install`` of that wheel into a fresh venv;
- ``dpkg-deb --build`` of a small package, ``dpkg -i`` and ``dpkg -r``;
- ``git init``/``commit``/``clone``/``commit`` of a local repository;
- a log rotation by logrotate with its own configuration and state file.
Alerts are attributed to the workload when its shell is the actor or one of
the actor's ancestors.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from rules_b_support import PYTHON, Obj, in_tree, marks, tree_pids

from conftest import ARTIFACTS, AgentHandle, alert_rule

pytestmark = pytest.mark.kernel

MAX_ALERTS = 5
HIGH = 4  # OCSF severity_id of "high"; 5 is critical

CONFIGURE = r"""#!/bin/sh
# A small autoconf-style configure: probes the host and the compiler with test programs in /tmp.
set -e
: "${CC:=cc}"
: "${TMPDIR:=/tmp}"
srcdir=$(cd "$(dirname "$0")" && pwd)
echo "configure: building for $(uname -m)-$(uname -s | tr A-Z a-z) on $( (hostname || uname -n) 2>/dev/null)"
tmp=$(mktemp -d "$TMPDIR/conf.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
: > confdefs.h
check_run() {  # name, program text: compile and run a test program
  printf 'checking %s... ' "$1"
  printf '%s\n' "$2" > "$tmp/conftest.c"
  if $CC -o "$tmp/conftest" "$tmp/conftest.c" 2>>config.log && "$tmp/conftest" >>config.log 2>&1; then
    echo yes; return 0
  fi
  echo no; return 1
}
check_run "whether the C compiler works" 'int main(void) { return 0; }'
check_run "for stdint.h" '#include <stdint.h>
int main(void) { uint32_t x = 1; return (int)(x - 1); }' && echo '#define HAVE_STDINT_H 1' >> confdefs.h
check_run "size of long" '#include <stdio.h>
int main(void) { printf("%d\n", (int)sizeof(long)); return 0; }' \
  && echo "#define SIZEOF_LONG $("$tmp/conftest")" >> confdefs.h
check_run "for strlcpy" '#include <string.h>
int main(void) { char b[4]; return (int)strlcpy(b, "x", sizeof b) - 1; }' \
  && echo '#define HAVE_STRLCPY 1' >> confdefs.h || true
mv confdefs.h config.h
sed -e "s|@CC@|$CC|g" -e "s|@srcdir@|$srcdir|g" Makefile.in > Makefile
echo "configure: creating Makefile and config.h"
"""

MAKEFILE_IN = """CC = @CC@
CFLAGS = -O2 -Wall -include config.h
OBJS = main.o util.o

all: hello

hello: $(OBJS)
\t$(CC) $(CFLAGS) -o $@ $(OBJS)

%.o: @srcdir@/%.c config.h
\t$(CC) $(CFLAGS) -c -o $@ $<

check: hello
\t./hello | grep -q 'hello, 42'

clean:
\trm -f hello $(OBJS)
"""

MAIN_C = """#include <stdio.h>
int answer(void);
int main(void) { printf("hello, %d\\n", answer()); return 0; }
"""

UTIL_C = "int answer(void) { return 42; }\n"

BACKEND = '''"""A minimal in-tree PEP 517 build backend: a pure-Python wheel from one module, no dependencies."""
import base64, hashlib, os, zipfile

NAME, VERSION = "se_rb_hello", "1.0"
DIST = f"{NAME}-{VERSION}"

def get_requires_for_build_wheel(config_settings=None):
    return []

def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    here = os.path.dirname(os.path.abspath(__file__))
    files = {
        f"{NAME}.py": open(os.path.join(here, f"{NAME}.py"), "rb").read(),
        f"{DIST}.dist-info/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode(),
        f"{DIST}.dist-info/WHEEL": (b"Wheel-Version: 1.0\\nGenerator: se_backend\\nRoot-Is-Purelib: true\\n"
                                    b"Tag: py3-none-any\\n"),
        f"{DIST}.dist-info/entry_points.txt": f"[console_scripts]\\nse-rb-hello = {NAME}:main\\n".encode(),
    }
    record = [_record_line(n, d) for n, d in files.items()] + [f"{DIST}.dist-info/RECORD,,"]
    files[f"{DIST}.dist-info/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel = f"{DIST}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return wheel
'''

PYPROJECT = """[build-system]
requires = []
build-backend = "se_backend"
backend-path = ["."]
"""

MODULE = "def main():\n    print('hello from a local wheel')\n"

WORKLOAD = r"""set -eu
W="$1"; PY="$2"; PKG="$3"
export TMPDIR=/tmp CC=cc
echo "== configure && make"
cd "$W/proj" && ./configure > configure.out && make -s && make -s check
echo "== pip wheel + pip install into a fresh venv"
cd "$W"
"$PY" -m venv "$W/venv"
"$PY" -m pip wheel -q --no-index --no-deps -w "$W/dist" "$W/pyproj"
"$W/venv/bin/python" -m pip install -q --no-index "$W"/dist/se_rb_hello-1.0-py3-none-any.whl
"$W/venv/bin/python" -c 'import se_rb_hello; se_rb_hello.main()'
echo "== dpkg"
dpkg-deb --build --root-owner-group "$W/deb" "$W/$PKG.deb" > /dev/null
dpkg -i "$W/$PKG.deb" > /dev/null
dpkg -r "$PKG" > /dev/null
echo "== git"
git init -q "$W/origin" && cd "$W/origin"
echo "first" > README && git add README
git -c user.name=bench -c user.email=bench@example.invalid commit -qm init
git clone -q "$W/origin" "$W/clone" && cd "$W/clone"
echo "second" >> README
git -c user.name=bench -c user.email=bench@example.invalid commit -qam change
echo "== logrotate"
logrotate -s "$W/logrotate.state" "$W/logrotate.conf"
ls "$W/log/app.log.1.gz" > /dev/null
echo "== done"
"""


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def generate(w: Path, pkg: str) -> None:
    write(w / "proj" / "configure", CONFIGURE, 0o755)
    write(w / "proj" / "Makefile.in", MAKEFILE_IN)
    write(w / "proj" / "main.c", MAIN_C)
    write(w / "proj" / "util.c", UTIL_C)
    write(w / "pyproj" / "se_backend.py", BACKEND)
    write(w / "pyproj" / "pyproject.toml", PYPROJECT)
    write(w / "pyproj" / "se_rb_hello.py", MODULE)
    write(w / "deb" / "DEBIAN" / "control", textwrap.dedent(f"""\
        Package: {pkg}
        Version: 1.0
        Architecture: all
        Maintainer: SentinelEdge tests <tests@example.invalid>
        Description: benign workload package of the SentinelEdge tests
        """))
    write(w / "deb" / "DEBIAN" / "postinst", "#!/bin/sh\nset -e\necho configured > /dev/null\n", 0o755)
    write(w / "deb" / "usr" / "share" / "doc" / pkg / "README", "benign workload package\n")
    write(w / "log" / "app.log", "line\n" * 100)
    write(w / "logrotate.conf", textwrap.dedent(f"""\
        {w}/log/app.log {{
            rotate 2
            size 1
            compress
            missingok
            create 0640 root root
        }}
        """))


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="se-rb-bench-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def describe(a: Obj) -> str:
    return f"{alert_rule(a)} severity_id={a.get('severity_id')}: {a.get('message', '')[:300]}"


@pytest.mark.skipif(shutil.which("logrotate") is None,
                    reason="logrotate not installed: scripts/install.sh must install it for the benign workload")
def test_benign_workload_raises_few_low_alerts(agent: AgentHandle, workdir: Path) -> None:
    for tool in ("cc", "make", "git", "dpkg", "dpkg-deb"):
        assert shutil.which(tool), f"{tool} is needed by the benign workload"
    pkg = "se-rb-bench-" + secrets.token_hex(4)
    generate(workdir, pkg)
    m = marks(agent)
    p = subprocess.Popen(["bash", "-c", WORKLOAD, "workload", str(workdir), PYTHON, pkg],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "LC_ALL": "C"})
    try:
        out, _ = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(["dpkg", "-r", pkg], capture_output=True, timeout=120)  # already gone unless a step failed
    assert p.returncode == 0, out.decode()[-4000:]
    # wait until the agent has seen the workload's last command, then give thresholds a moment
    agent.wait_for(lambda o: o.get("unmapped", {}).get("event") == "exec"
                   and o.get("process", {}).get("name") == "ls"
                   and o.get("unmapped", {}).get("proc", {}).get("ppid") == p.pid, m.events, timeout=60)
    agent.assert_no_alert("se.__none__", m.alerts, settle=2.0)
    raised = agent.find_alerts(None, m.alerts, in_tree(p.pid))
    if os.environ.get("SE_RB_DEBUG"):
        for a in agent.find_alerts(None, m.alerts):
            print("ALL:", describe(a)[:200], tree_pids(a)[:6])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "benign_workload_alerts.json").write_text(json.dumps(raised, indent=1))
    summary = "\n".join(describe(a) for a in raised) or "(none)"
    print(f"benign workload raised {len(raised)} alert(s):\n{summary}")
    high = [a for a in raised if int(a.get("severity_id", 0)) >= HIGH]
    assert not high, f"high or critical alerts from the benign workload:\n{summary}"
    assert len(raised) <= MAX_ALERTS, f"{len(raised)} alerts from the benign workload (max {MAX_ALERTS}):\n{summary}"
