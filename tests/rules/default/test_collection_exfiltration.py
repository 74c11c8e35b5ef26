"""Default collection and exfiltration rules against the real agent: each rule's behaviour and its benign neighbour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rules_b_support import (
    actor_is,
    event_of,
    exec_in,
    expect_alert,
    expect_quiet,
    free_port,
    http_sink,
    in_tree,
    marks,
    py,
    run,
    scratch_dir,
    tcp_listener,
)

from conftest import AgentHandle

pytestmark = pytest.mark.kernel


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        (d / "notes.txt").write_text("ordinary notes\n")
        yield d


# -- se.collection.sensitive_data_archived --------------------------------------------

ARCHIVE = "se.collection.sensitive_data_archived"


def test_archiving_etc_ssh_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    # an archive written to /dev/null: GNU tar then reads nothing, the command line is the behaviour
    pid, _ = run(["tar", "-cf", "/dev/null", "/etc/ssh"])
    expect_alert(agent, ARCHIVE, m, actor_is(pid), ["T1560.001", "T1005"])


def test_archiving_ordinary_directory_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    pid, _ = run(["tar", "-czf", str(scratch / "notes.tgz"), "-C", str(scratch), "notes.txt"])
    expect_quiet(agent, ARCHIVE, m, actor_is(pid), event_of(pid, "exec"))


# -- se.exfiltration.http_file_upload ---------------------------------------------------

UPLOAD = "se.exfiltration.http_file_upload"


def test_curl_upload_file_alerts(agent: AgentHandle, scratch: Path) -> None:
    with http_sink() as port:
        m = marks(agent)
        pid, _ = run(["curl", "-sS", "-T", str(scratch / "notes.txt"), f"http://127.0.0.1:{port}/up"])
        a = expect_alert(agent, UPLOAD, m, actor_is(pid), ["T1048", "T1567"])
        assert a["severity_id"] == 2


def test_curl_get_is_quiet(agent: AgentHandle) -> None:
    with http_sink() as port:
        m = marks(agent)
        pid, _ = run(["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{port}/"])
        expect_quiet(agent, UPLOAD, m, actor_is(pid), event_of(pid, "net"))


# -- se.exfiltration.http_upload_of_sensitive_file -------------------------------------

SENSITIVE_UPLOAD = "se.exfiltration.http_upload_of_sensitive_file"


def test_curl_form_upload_of_passwd_alerts(agent: AgentHandle) -> None:
    with http_sink() as port:
        m = marks(agent)
        pid, _ = run(["curl", "-sS", "-F", "f=@/etc/passwd", f"http://127.0.0.1:{port}/"])
        expect_alert(agent, SENSITIVE_UPLOAD, m, actor_is(pid), ["T1048", "T1567", "T1552.001"])


def test_curl_form_upload_of_ordinary_file_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    with http_sink() as port:
        m = marks(agent)
        pid, _ = run(["curl", "-sS", "-F", f"f=@{scratch / 'notes.txt'}", f"http://127.0.0.1:{port}/"])
        expect_quiet(agent, SENSITIVE_UPLOAD, m, actor_is(pid), event_of(pid, "net"))


# -- se.exfiltration.remote_copy_of_sensitive_file -------------------------------------

REMOTE_COPY = "se.exfiltration.remote_copy_of_sensitive_file"
SCP_OPTS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null"]


def test_scp_of_ssh_config_to_remote_alerts(agent: AgentHandle) -> None:
    # nothing listens on the port: ssh is refused on loopback and nothing leaves the host
    m = marks(agent)
    pid, _ = run(["scp", *SCP_OPTS, "-P", str(free_port()), "/etc/ssh/ssh_config", "root@127.0.0.1:/tmp/x"],
                 check=False)
    expect_alert(agent, REMOTE_COPY, m, actor_is(pid), ["T1048"])


def test_scp_of_ordinary_file_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    pid, _ = run(["scp", *SCP_OPTS, "-P", str(free_port()), str(scratch / "notes.txt"), "root@127.0.0.1:/tmp/x"],
                 check=False)
    expect_quiet(agent, REMOTE_COPY, m, actor_is(pid), event_of(pid, "exec"))


# -- se.exfiltration.data_streamed_to_socket -------------------------------------------

STREAM = "se.exfiltration.data_streamed_to_socket"


def test_tar_output_on_socket_alerts(agent: AgentHandle, scratch: Path) -> None:
    with tcp_listener() as port:
        m = marks(agent)
        code = ("import socket, subprocess\n"
                f"s = socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
                f"subprocess.run(['tar', '-cf', '-', '{scratch}'], stdout=s.fileno(), check=True, timeout=20)\n"
                "s.close()\n")
        pid, _ = py(code)
        a = expect_alert(agent, STREAM, m, in_tree(pid), ["T1048", "T1560.001"])
        assert a["actor"]["process"]["name"] == "tar"


def test_tar_output_on_pipe_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    code = f"import subprocess; subprocess.run(['tar', '-cf', '-', '{scratch}'], stdout=subprocess.PIPE, check=True)"
    pid, _ = py(code)
    expect_quiet(agent, STREAM, m, in_tree(pid), exec_in(pid, "tar"))
