"""Where alerts go: JSON lines file, stdout, rotating file, syslog (RFC 5424), HTTP webhook.

Every sink takes one finding at a time: ``write(finding, line)`` where
``line`` is the finding's compact JSON plus ``\\n``. File and stdout sinks
write synchronously (one ``os.write`` per alert, nothing buffered in user
space, so a reader sees each alert as soon as ``emit`` returns). Syslog and
the webhook are slow (network, retries): :class:`AlertOutput` runs each in
its own thread behind a :class:`QueuedSink` with a bounded queue, so the
event pipeline never waits for them; a full queue drops the alert, counts it
and logs a health message. See docs/alerts.md for the delivery guarantees.
"""

from __future__ import annotations

import datetime as dt
import errno
import http.client
import logging
import os
import queue
import random
import select
import socket
import sys
import threading
import time
import urllib.parse
from typing import Any

import orjson

from sentinel_edge import __version__
from sentinel_edge.errors import OutputError

log = logging.getLogger(__name__)

__all__ = [
    "BaseSink",
    "FileSink",
    "QueuedSink",
    "RotatingFileSink",
    "StdoutSink",
    "SyslogSink",
    "WebhookSink",
    "format_rfc5424",
]


class RateLimitedLog:
    """Logs a recurring problem at once, then at most every ``interval`` seconds with a count."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0

    def __call__(self, level: int, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += f" ({self._suppressed} similar message(s) suppressed)"
            self._suppressed = 0
        self._next = now + self.interval
        log.log(level, msg, *args)


class BaseSink:
    """One alert destination. ``write`` raises OutputError when the alert is not delivered."""

    #: slow sinks (network) are run in their own thread by AlertOutput
    slow = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.written = 0  # alerts delivered
        self.failed = 0  # alerts given up (counted by write before it raises)
        self.errors = 0  # failed attempts (a retried alert may count several)

    def write(self, finding: dict[str, Any], line: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Stop waiting (retries, backoff) as soon as possible: the agent is stopping."""

    def close(self) -> None:
        """Release files and sockets."""

    def stats(self) -> dict[str, Any]:
        return {"written": self.written, "failed": self.failed, "errors": self.errors, "dropped": self.failed}


# ---------------------------------------------------------------- files


def _append(fd: int, data: bytes, what: str) -> None:
    """Write ``data`` (one whole line) to ``fd``; on failure cut a partial line back off."""
    try:
        start: int | None = os.lseek(fd, 0, os.SEEK_END)
    except OSError:
        start = None  # pipe / terminal
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as exc:
        if start is not None and len(view) != len(data):
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
        raise OutputError(f"writing an alert to {what} failed: {exc}") from exc


def _open_append(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OutputError(f"cannot open {what} {path}: {exc}") from exc


class FileSink(BaseSink):
    """JSON lines appended to a file: O_APPEND, one os.write per alert, optional fsync."""

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        super().__init__(f"file:{path}")
        self.path = path
        self.fsync = fsync
        self._fd = _open_append(path, "alerts file")

    def write(self, finding: dict[str, Any], line: bytes) -> None:
        try:
            _append(self._fd, line, f"alerts file {self.path}")
            if self.fsync:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    raise OutputError(f"fsync of alerts file {self.path} failed: {exc}") from exc
        except OutputError:
            self.errors += 1
            self.failed += 1
            raise
        self.written += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class StdoutSink(BaseSink):
    """JSON lines on standard output (or another fd), one os.write per alert."""

    def __init__(self, fd: int | None = None) -> None:
        super().__init__("stdout")
        self._fd = sys.stdout.fileno() if fd is None else fd

    def write(self, finding: dict[str, Any], line: bytes) -> None:
        try:
            _append(self._fd, line, "stdout")
        except OutputError:
            self.errors += 1
            self.failed += 1
            raise
        self.written += 1


class RotatingFileSink(BaseSink):
    """JSON lines in PATH, rotated by size to PATH.1 (newest) ... PATH.<backups> (oldest).

    A line is never split: rotation happens between alerts, before a line
    that would make PATH exceed ``max_bytes`` (a longer line gets a file of
    its own). Rotation keeps PATH in place at every instant: older backups
    shift up with rename(2), the current file is hard-linked as PATH.1 and a
    new empty file is renamed over PATH (each step atomic). Without hard
    links (some file systems) PATH is renamed to PATH.1 before the new file
    takes its name.
    """

    def __init__(self, path: str, *, max_bytes: int, backups: int, fsync: bool = False) -> None:
        super().__init__(f"rotating:{path}")
        if max_bytes < 1 or backups < 1:
            raise OutputError(f"rotating file {path}: max_bytes and backups must be >= 1")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self.rotations = 0
        self._fd = _open_append(path, "rotating alerts file")
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        p = self.path
        try:
            for i in range(self.backups - 1, 0, -1):
                try:
                    os.replace(f"{p}.{i}", f"{p}.{i + 1}")
                except FileNotFoundError:
                    pass
            tmp = f"{p}.rotating"
            new_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                try:
                    os.unlink(f"{p}.1")  # only left when backups == 1: the oldest, dropped
                except FileNotFoundError:
                    pass
                try:
                    os.link(p, f"{p}.1")
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
                        raise
                    os.replace(p, f"{p}.1")
                os.replace(tmp, p)
            except OSError:
                os.close(new_fd)
                raise
        except OSError as exc:
            raise OutputError(f"rotating alerts file {p} failed: {exc}") from exc
        old, self._fd = self._fd, new_fd
        os.close(old)
        self._size = 0
        self.rotations += 1

    def write(self, finding: dict[str, Any], line: bytes) -> None:
        try:
            if self._size > 0 and self._size + len(line) > self.max_bytes:
                self._rotate()
            _append(self._fd, line, f"rotating alerts file {self.path}")
            if self.fsync:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    raise OutputError(f"fsync of alerts file {self.path} failed: {exc}") from exc
        except OutputError:
            self.errors += 1
            self.failed += 1
            raise
        self._size += len(line)
        self.written += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "rotations": self.rotations}


# ---------------------------------------------------------------- syslog

#: OCSF severity_id -> syslog severity (RFC 5424 section 6.2.1)
SYSLOG_SEVERITY = {0: 6, 1: 6, 2: 5, 3: 4, 4: 3, 5: 2, 6: 1, 99: 6}
#: SD-ID of the structured data element (32473: the example enterprise number of RFC 5612)
SD_ID = "alert@32473"
UTF8_BOM = b"\xef\xbb\xbf"
UDP_MAX = 65_507  # largest UDP payload over IPv4


def _header_field(value: str, max_len: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, or the NILVALUE."""
    clean = "".join(c for c in value if 33 <= ord(c) <= 126)[:max_len]
    return clean or "-"


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_rfc5424(
    finding: dict[str, Any],
    body: bytes,
    *,
    facility: int,
    app_name: str,
    hostname: str,
    procid: int | None = None,
    msgid: str = "alert",
) -> bytes:
    """One RFC 5424 syslog message: header, structured data, BOM + ``body`` (the finding JSON).

    PRI = facility * 8 + the syslog severity of the finding's ``severity_id``
    (Critical -> 2 crit, High -> 3 err, Medium -> 4 warning, Low -> 5 notice,
    Informational -> 6 info). TIMESTAMP is the finding's ``time`` (UTC, ms).
    The structured data element ``alert@32473`` carries the rule id, finding
    uid, severity, count, activity and every ATT&CK technique.
    """
    sev = SYSLOG_SEVERITY.get(int(finding.get("severity_id", 1)), 6)
    pri = facility * 8 + sev
    t = dt.datetime.fromtimestamp(int(finding.get("time", 0)) / 1000, tz=dt.UTC)
    ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    info = finding.get("finding_info", {})
    params = [
        ("rule", str(info.get("analytic", {}).get("uid", ""))),
        ("uid", str(info.get("uid", ""))),
        ("severity", str(finding.get("severity", ""))),
        ("count", str(finding.get("count", 1))),
        ("activity", str(finding.get("activity_name", ""))),
    ]
    for a in info.get("attacks", []):
        tech = a.get("technique", {}).get("uid")
        if tech:
            params.append(("technique", str(tech)))
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params) + "]"
    header = (
        f"<{pri}>1 {ts} {_header_field(hostname, 255)} {_header_field(app_name, 48)} "
        f"{os.getpid() if procid is None else procid} {_header_field(msgid, 32)} {sd} "
    )
    return header.encode("utf-8") + UTF8_BOM + body


class SyslogSink(BaseSink):
    """RFC 5424 messages to a syslog collector over UDP or TCP (octet counting, RFC 6587).

    TCP: connected lazily, reconnected once per alert when the connection
    broke; a peer that closed the connection is noticed before the next send.
    UDP: one datagram per alert; a finding too large for a datagram is sent
    without its ``evidences`` (counted as ``truncated``).
    """

    slow = True

    def __init__(self, host: str, port: int, *, protocol: str = "udp", app_name: str = "sentinel-edge",
                 facility: int = 16, hostname: str | None = None, timeout_s: float = 5.0) -> None:
        super().__init__(f"syslog:{protocol}://{host}:{port}")
        if protocol not in ("udp", "tcp"):
            raise OutputError(f"syslog protocol {protocol!r}: must be udp or tcp")
        self.host = host
        self.port = port
        self.protocol = protocol
        self.app_name = app_name
        self.facility = facility
        self.hostname = hostname or socket.gethostname()
        self.timeout_s = timeout_s
        self.truncated = 0
        self.reconnects = 0
        self._sock: socket.socket | None = None
        self._addr: Any = None
        self._lock = threading.Lock()

    def _message(self, finding: dict[str, Any], line: bytes) -> bytes:
        return format_rfc5424(finding, line.rstrip(b"\n"), facility=self.facility, app_name=self.app_name,
                              hostname=self.hostname)

    def _udp(self, msg: bytes, finding: dict[str, Any]) -> None:
        if len(msg) > UDP_MAX:
            smaller = {k: v for k, v in finding.items() if k != "evidences"}
            msg = self._message(smaller, orjson.dumps(smaller))
            if len(msg) > UDP_MAX:
                raise OutputError(f"{self.name}: alert of {len(msg)} bytes does not fit in a UDP datagram")
            self.truncated += 1
        if self._sock is None:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, stype, proto, _, addr = infos[0]
            self._sock = socket.socket(family, stype, proto)
            self._addr = addr
        self._sock.sendto(msg, self._addr)

    def _tcp_connected(self) -> socket.socket:
        s = self._sock
        if s is not None:
            try:  # readable with no data = the collector closed the connection
                readable, _, _ = select.select([s], [], [], 0)
                if readable and s.recv(1, socket.MSG_PEEK) == b"":
                    self._drop_socket()
                    self.reconnects += 1
                    s = None
            except (OSError, ValueError):
                self._drop_socket()
                s = None
        if s is None:
            s = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            with self._lock:
                self._sock = s
        return s

    def _drop_socket(self) -> None:
        with self._lock:
            s, self._sock = self._sock, None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def write(self, finding: dict[str, Any], line: bytes) -> None:
        msg = self._message(finding, line)
        try:
            if self.protocol == "udp":
                try:
                    self._udp(msg, finding)
                except OSError:
                    self.errors += 1
                    self._drop_socket()
                    self._udp(msg, finding)
            else:
                frame = str(len(msg)).encode() + b" " + msg
                try:
                    self._tcp_connected().sendall(frame)
                except OSError:
                    self.errors += 1
                    self._drop_socket()
                    self.reconnects += 1
                    self._tcp_connected().sendall(frame)
        except (OSError, OutputError) as exc:
            self.errors += 1
            self.failed += 1
            self._drop_socket()
            if isinstance(exc, OutputError):
                raise
            raise OutputError(f"{self.name}: sending an alert failed: {exc}") from exc
        self.written += 1

    def abort(self) -> None:
        self._drop_socket()  # interrupts a blocked send

    def close(self) -> None:
        self._drop_socket()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "truncated": self.truncated, "reconnects": self.reconnects}


# ---------------------------------------------------------------- webhook

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookSink(BaseSink):
    """POST each finding as JSON to an HTTP(S) URL, retried with exponential backoff and jitter.

    An attempt fails on a connection error, a timeout (``timeout_s`` per
    socket operation) or a status outside 2xx. Connection errors, timeouts
    and 408/425/429/5xx are retried up to ``retries`` times; delay before
    retry k (1-based) is d/2 + uniform(0, d/2) with d = min(backoff_max_s,
    backoff_s * 2**(k-1)). Other statuses (4xx, 3xx) are not retried. When
    every attempt failed the alert is given up: counted as ``failed`` and
    OutputError raised (the QueuedSink logs it).
    """

    slow = True

    def __init__(self, url: str, *, timeout_s: float = 5.0, retries: int = 3, headers: dict[str, str] | None = None,
                 backoff_s: float = 0.5, backoff_max_s: float = 30.0, rng: random.Random | None = None) -> None:
        super().__init__(f"webhook:{url}")
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise OutputError(f"webhook url {url!r}: must be http:// or https:// with a host")
        self.url = url
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port
        self._path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.headers = {
            "Content-Type": "application/json",
            "User-Agent": f"SentinelEdge/{__version__}",
            **(headers or {}),
        }
        self.retried = 0
        self.last_error = ""
        self._abort = threading.Event()
        self._rng = rng or random.Random()

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): equal jitter."""
        d = min(self.backoff_max_s, self.backoff_s * 2.0 ** (retry - 1))
        return d / 2 + self._rng.uniform(0, d / 2)

    def _post(self, body: bytes) -> int:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
        try:
            conn.request("POST", self._path, body=body, headers=self.headers)
            resp = conn.getresponse()
            resp.read(65536)
            return resp.status
        finally:
            conn.close()

    def write(self, finding: dict[str, Any], line: bytes) -> None:
        body = line.rstrip(b"\n")
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                if self._abort.wait(self.delay(attempt)):
                    break
            if self._abort.is_set():
                break
            attempts += 1
            try:
                status = self._post(body)
            except (OSError, http.client.HTTPException) as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                continue
            if 200 <= status < 300:
                self.written += 1
                return
            self.errors += 1
            self.last_error = f"HTTP {status}"
            if status not in RETRY_STATUS:
                break
        self.failed += 1
        why = "stopping" if self._abort.is_set() else self.last_error
        raise OutputError(f"{self.name}: alert not delivered after {attempts} attempt(s): {why}")

    def abort(self) -> None:
        self._abort.set()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "retries": self.retried, "last_error": self.last_error}


# ---------------------------------------------------------------- the thread for slow sinks

_STOP = object()


class QueuedSink(BaseSink):
    """Runs a slow sink in its own thread behind a bounded queue; ``write`` never blocks.

    A full queue drops the alert (``queue_full``) and logs a health message
    (at once, then at most every 10 s with the totals). Alerts the inner sink
    gave up on are ``failed``; alerts still queued when :meth:`close` ran out
    of time are ``abandoned``. ``dropped`` is the sum of the three.
    """

    def __init__(self, inner: BaseSink, queue_max: int) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.queue_max = queue_max
        self.queue_full = 0
        self.abandoned = 0
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closing = False
        self._health = RateLimitedLog()
        self._fail_log = RateLimitedLog()
        self._thread = threading.Thread(target=self._run, name=f"alerts-{inner.name}", daemon=True)
        self._thread.start()

    def write(self, finding: dict[str, Any], line: bytes) -> None:
        if self._closing:
            raise OutputError(f"{self.name}: closed")
        if self._q.qsize() >= self.queue_max:
            self.queue_full += 1
            self._health(logging.WARNING, "alert sink %s is falling behind: queue of %d full, %d alert(s) dropped",
                         self.name, self.queue_max, self.queue_full)
            return
        self._q.put((finding, line))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            finding, line = item
            try:
                self.inner.write(finding, line)
            except OutputError as exc:
                self._fail_log(logging.ERROR, "%s (%d alert(s) not delivered so far)", exc, self.inner.failed)
            except Exception as exc:  # a bug in a sink must not kill its thread silently
                self.inner.failed += 1
                log.exception("alert sink %s crashed on an alert: %s", self.name, exc)

    def pending(self) -> int:
        return self._q.qsize()

    def alive(self) -> bool:
        """The delivery thread runs (or the sink was closed on purpose)."""
        return self._closing or self._thread.is_alive()

    def restart(self) -> None:
        """Start a new delivery thread on the same queue (the watchdog, after a crash)."""
        if self._closing or self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name=f"alerts-{self.inner.name}", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout`` seconds, then give up on the rest."""
        if not self._closing:
            self._closing = True
            self._q.put(_STOP)
        self._thread.join(max(0.0, timeout))
        if self._thread.is_alive():
            self.inner.abort()
            self._thread.join(0.5)
            left = 0
            while True:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    left += 1
            self.abandoned += left
            if left or self._thread.is_alive():
                log.warning("alert sink %s: stopped with %d alert(s) undelivered", self.name, left)
        self.inner.close()

    def stats(self) -> dict[str, Any]:
        inner = self.inner.stats()
        dropped = self.queue_full + self.inner.failed + self.abandoned
        return {**inner, "queued": self.pending(), "queue_full": self.queue_full,
                "abandoned": self.abandoned, "dropped": dropped}
