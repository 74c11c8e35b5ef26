"""Where events go: JSON lines (OCSF) or readable text, to stdout or a file."""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import stat
import sys
from typing import Any

import orjson

from sentinel_edge.errors import OutputError


def _dumps(obj: dict[str, Any]) -> bytes:
    """Compact JSON as UTF-8 bytes (orjson: several times faster than json.dumps).

    Every string reaching here went through ocsf.common.text(), so it is valid
    Unicode without surrogates; a value orjson cannot encode is an output
    error, counted, never a crash.
    """
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise OutputError(f"cannot encode event as JSON: {exc}") from exc


def text_line(obj: dict[str, Any]) -> str:
    """One readable line for an OCSF object (for humans, not for replay)."""
    t = dt.datetime.fromtimestamp(obj.get("time", 0) / 1000, tz=dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    um = obj.get("unmapped", {})
    kind = um.get("event", "?")
    actor = obj.get("actor", {}).get("process", {})
    who = f"{actor.get('name', '?')}[{actor.get('pid', '?')}]"
    user = actor.get("user", {}).get("name") or actor.get("user", {}).get("uid", "?")
    parts = [t, f"{kind:<8}", who, f"user={user}"]
    proc = obj.get("process") or {}
    if kind == "exec":
        parts.append(f"exe={proc.get('file', {}).get('path', '?')}")
        parts.append(f"cmd={json.dumps(proc.get('cmd_line', ''), ensure_ascii=True)}")
    elif "file" in obj:
        parts.append(f"op={um.get('op', obj.get('activity_name', '?'))}")
        parts.append(f"path={json.dumps(obj['file'].get('path', ''), ensure_ascii=True)}")
    elif "dst_endpoint" in obj or "src_endpoint" in obj:
        src = obj.get("src_endpoint", {})
        dst = obj.get("dst_endpoint", {})
        parts.append(f"{src.get('ip', '')}:{src.get('port', '')} -> {dst.get('ip', '')}:{dst.get('port', '')}")
    if "status_id" in obj and obj["status_id"] == 2:
        parts.append(f"status={obj.get('status_code', 'failure')}")
    if obj.get("message"):
        parts.append(json.dumps(obj["message"], ensure_ascii=True))
    return " ".join(str(p) for p in parts)


class Sink:
    """Writes OCSF objects, one per line, in batches.

    Lines are collected in memory and written with os.write() at flush (after
    every pipeline round), so no hidden buffer survives a failure: when the
    disk is full or the pipe is gone, the lines of that batch are counted as
    failed (``failed``), an OutputError says so, and the next batch is tried
    afresh. Nothing else is held back.
    """

    def __init__(self, path: str | None, fmt: str = "json") -> None:
        self.path = path
        self.fmt = fmt
        self.written = 0
        self.failed = 0
        self._lines: list[bytes] = []
        if path is None or path == "-":
            self._fd = sys.stdout.fileno()
            self._own = False
        else:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise OutputError(f"cannot open output file {path}: {exc}") from exc
            self._own = True
        self._pipe_poll: select.poll | None = None
        try:
            if stat.S_ISFIFO(os.fstat(self._fd).st_mode):
                self._pipe_poll = select.poll()
                self._pipe_poll.register(self._fd, select.POLLOUT)
        except OSError:
            pass

    def reader_gone(self) -> bool:
        """True when the output is a pipe whose reader has exited (POLLERR).

        Lets an idle agent notice `sentinel-edge run | head` ending without
        waiting for the next event to fail to write.
        """
        if self._pipe_poll is None:
            return False
        return any(ev & select.POLLERR for _, ev in self._pipe_poll.poll(0))

    def write(self, obj: dict[str, Any]) -> None:
        """Queue one object for the next flush (encoding errors raise at once)."""
        line = _dumps(obj) if self.fmt == "json" else text_line(obj).encode()
        self._lines.append(line)

    def flush(self) -> None:
        """Write the queued lines; on failure they are counted as failed and dropped."""
        if not self._lines:
            return
        lines = self._lines
        self._lines = []
        data = memoryview(b"\n".join(lines) + b"\n")
        start = self._size()
        try:
            while data:
                n = os.write(self._fd, data)
                data = data[n:]
        except OSError as exc:
            # cut a partly written batch back off a regular file: the file keeps
            # only whole lines, and the batch is counted as lost
            if start is not None:
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    pass
            self.failed += len(lines)
            raise OutputError(
                f"writing {len(lines)} events to {self.path or 'stdout'} failed: {exc}"
            ) from exc
        self.written += len(lines)

    def _size(self) -> int | None:
        """Current size of a regular output file (None for pipes and terminals)."""
        if not self._own:
            return None
        try:
            return os.fstat(self._fd).st_size
        except OSError:
            return None

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._own:
                os.close(self._fd)
