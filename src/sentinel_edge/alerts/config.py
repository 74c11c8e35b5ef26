"""The ``alerts:`` section of the agent config: where alerts go and how they fold.

:func:`alerts_config_from_dict` validates a parsed YAML mapping the way
:mod:`sentinel_edge.config` does: every error is a ConfigError naming the
file (and line, when the YAML nodes are given), the dotted key and the bad
value; unknown keys are errors. See docs/alerts.md for every key.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from sentinel_edge.errors import ConfigError

#: RFC 5424 facility names -> codes
FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
    "solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
    "local5": 21, "local6": 22, "local7": 23,
}

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 header field name


@dataclass(slots=True)
class RotatingConfig:
    """A size-rotated JSON lines file: PATH, PATH.1 ... PATH.<backups>."""

    path: str = ""
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


@dataclass(slots=True)
class SyslogConfig:
    """RFC 5424 syslog to a collector: UDP datagrams or TCP with octet counting (RFC 6587)."""

    host: str = "127.0.0.1"
    port: int = 514
    protocol: str = "udp"  # udp | tcp
    app_name: str = "sentinel-edge"
    facility: str = "local0"  # a name of FACILITIES or its number as text
    queue_max: int = 10_000  # alerts waiting for the syslog thread before drops are counted
    timeout_s: float = 5.0  # TCP connect and send timeout

    @property
    def facility_code(self) -> int:
        return int(self.facility) if self.facility.isdigit() else FACILITIES[self.facility]


@dataclass(slots=True)
class WebhookConfig:
    """HTTP(S) POST of each finding as JSON, retried with exponential backoff and jitter."""

    url: str = ""
    timeout_s: float = 5.0  # per request (connect + response)
    retries: int = 3  # further attempts after the first
    queue_max: int = 1000  # alerts waiting for the webhook thread before drops are counted
    headers: dict[str, str] = field(default_factory=dict)
    backoff_s: float = 0.5  # first retry delay; doubles each retry
    backoff_max_s: float = 30.0  # cap of one delay


@dataclass(slots=True)
class AlertsConfig:
    """Alert outputs. Every sink is optional; several may be on at once."""

    fold_window_s: float = 10.0  # identical alerts within this window fold into one; 0 = off
    file: str | None = None  # JSON lines, appended and flushed per alert (--alerts-file)
    fsync: bool = False  # fsync the file / rotating file after every alert
    stdout: bool = False  # JSON lines on standard output
    rotating: RotatingConfig | None = None
    syslog: SyslogConfig | None = None
    webhook: WebhookConfig | None = None
    close_timeout_s: float = 5.0  # at stop: how long queued alerts may take to be delivered


_SECTIONS: dict[str, type] = {"rotating": RotatingConfig, "syslog": SyslogConfig, "webhook": WebhookConfig}
_SCALARS: dict[type, dict[str, Any]] = {
    AlertsConfig: {"fold_window_s": float, "file": str | None, "fsync": bool, "stdout": bool,
                   "close_timeout_s": float},
    RotatingConfig: {"path": str, "max_bytes": int, "backups": int},
    SyslogConfig: {"host": str, "port": int, "protocol": str, "app_name": str, "facility": str,
                   "queue_max": int, "timeout_s": float},
    WebhookConfig: {"url": str, "timeout_s": float, "retries": int, "queue_max": int, "backoff_s": float,
                    "backoff_max_s": float},
}


class _Ctx:
    def __init__(self, where: str, nodes: Mapping[str, yaml.Node] | None) -> None:
        self.where = where
        self.nodes = nodes or {}

    def loc(self, dotted: str) -> str:
        node = self.nodes.get(dotted)
        return f"{self.where}:{node.start_mark.line + 1}" if node is not None else self.where

    def bad(self, dotted: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{self.loc(dotted)}: {dotted}: {value!r} {why}")


def _section(cls: type, data: Any, prefix: str, ctx: _Ctx) -> Any:
    # at call time: sentinel_edge.config imports this module for its AlertsConfig
    from sentinel_edge.config import _check

    if not isinstance(data, dict):
        raise ConfigError(f"{ctx.loc(prefix)}: {prefix}: expected a mapping, got {data!r}")
    names = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}"
        if key not in names:
            raise ConfigError(f"{ctx.loc(dotted)}: unknown key {dotted!r} (known: {', '.join(sorted(names))})")
        if key in _SECTIONS:
            kwargs[key] = None if value is None else _section(_SECTIONS[key], value, dotted, ctx)
        elif key == "headers":
            kwargs[key] = _headers(value, dotted, ctx)
        elif key == "facility" and isinstance(value, int) and not isinstance(value, bool):
            kwargs[key] = str(value)
        else:
            kwargs[key] = _check(value, _SCALARS[cls][key], dotted, ctx.loc(dotted))
    return cls(**kwargs)


def _headers(value: Any, dotted: str, ctx: _Ctx) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{ctx.loc(dotted)}: {dotted}: expected a mapping of header names to values, got {value!r}")
    out: dict[str, str] = {}
    for name, v in value.items():
        key = f"{dotted}.{name}"
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ctx.bad(key, name, "is not a valid HTTP header name")
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ConfigError(f"{ctx.loc(key)}: {key}: expected a string, got {v!r}")
        s = str(v)
        if "\r" in s or "\n" in s or "\0" in s:
            raise ctx.bad(key, s, "must not contain CR, LF or NUL")
        if name.lower() in ("content-length", "host", "transfer-encoding", "connection"):
            raise ctx.bad(key, s, "is set by the agent and cannot be configured")
        out[name] = s
    return out


def _validate(cfg: AlertsConfig, ctx: _Ctx, p: str) -> AlertsConfig:
    if not 0 <= cfg.fold_window_s <= 3600:
        raise ctx.bad(f"{p}.fold_window_s", cfg.fold_window_s, "must be between 0 (off) and 3600 seconds")
    if not 0 < cfg.close_timeout_s <= 300:
        raise ctx.bad(f"{p}.close_timeout_s", cfg.close_timeout_s, "must be > 0 and <= 300 seconds")
    if cfg.file is not None and not cfg.file.strip():
        raise ctx.bad(f"{p}.file", cfg.file, "must be a path")
    r = cfg.rotating
    if r is not None:
        if not r.path.strip():
            raise ctx.bad(f"{p}.rotating.path", r.path, "must be a path (the key is required)")
        if r.max_bytes < 1024:
            raise ctx.bad(f"{p}.rotating.max_bytes", r.max_bytes, "must be >= 1024")
        if not 1 <= r.backups <= 1000:
            raise ctx.bad(f"{p}.rotating.backups", r.backups, "must be between 1 and 1000")
    s = cfg.syslog
    if s is not None:
        if not s.host.strip():
            raise ctx.bad(f"{p}.syslog.host", s.host, "must be a host name or address")
        if not 1 <= s.port <= 65535:
            raise ctx.bad(f"{p}.syslog.port", s.port, "must be between 1 and 65535")
        if s.protocol not in ("udp", "tcp"):
            raise ctx.bad(f"{p}.syslog.protocol", s.protocol, "must be 'udp' or 'tcp'")
        if not 1 <= len(s.app_name) <= 48 or not all(33 <= ord(c) <= 126 for c in s.app_name):
            raise ctx.bad(f"{p}.syslog.app_name", s.app_name,
                          "must be 1 to 48 printable ASCII characters without spaces (RFC 5424)")
        if not ((s.facility.isdigit() and int(s.facility) <= 23) or s.facility in FACILITIES):
            raise ctx.bad(f"{p}.syslog.facility", s.facility,
                          f"must be 0..23 or one of {', '.join(FACILITIES)}")
        if not 1 <= s.queue_max <= 1_000_000:
            raise ctx.bad(f"{p}.syslog.queue_max", s.queue_max, "must be between 1 and 1000000")
        if not 0 < s.timeout_s <= 300:
            raise ctx.bad(f"{p}.syslog.timeout_s", s.timeout_s, "must be > 0 and <= 300 seconds")
    w = cfg.webhook
    if w is not None:
        u = urllib.parse.urlsplit(w.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ctx.bad(f"{p}.webhook.url", w.url, "must be an http:// or https:// URL with a host")
        try:
            u.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise ctx.bad(f"{p}.webhook.url", w.url, "has an invalid port") from None
        if not 0 < w.timeout_s <= 300:
            raise ctx.bad(f"{p}.webhook.timeout_s", w.timeout_s, "must be > 0 and <= 300 seconds")
        if not 0 <= w.retries <= 100:
            raise ctx.bad(f"{p}.webhook.retries", w.retries, "must be between 0 and 100")
        if not 1 <= w.queue_max <= 1_000_000:
            raise ctx.bad(f"{p}.webhook.queue_max", w.queue_max, "must be between 1 and 1000000")
        if not 0 <= w.backoff_s <= 3600:
            raise ctx.bad(f"{p}.webhook.backoff_s", w.backoff_s, "must be between 0 and 3600 seconds")
        if not w.backoff_s <= w.backoff_max_s <= 3600:
            raise ctx.bad(f"{p}.webhook.backoff_max_s", w.backoff_max_s,
                          "must be between webhook.backoff_s and 3600 seconds")
    return cfg


def alerts_config_from_dict(
    d: dict[str, Any] | None,
    where: str,
    *,
    nodes: Mapping[str, yaml.Node] | None = None,
    prefix: str = "alerts",
) -> AlertsConfig:
    """Validate the ``alerts:`` mapping of a config file (None or {} = defaults).

    ``where`` names the file (``/etc/sentinel-edge.yaml``); ``nodes`` is the
    dotted-key -> YAML node index of :mod:`sentinel_edge.config` so errors
    carry line numbers; ``prefix`` is the section's dotted key.
    """
    ctx = _Ctx(where, nodes)
    cfg = AlertsConfig() if d is None else _section(AlertsConfig, d, prefix, ctx)
    return validate_alerts(cfg, where, prefix=prefix, nodes=nodes)


def validate_alerts(cfg: AlertsConfig, where: str = "config", *, prefix: str = "alerts",
                    nodes: Mapping[str, yaml.Node] | None = None) -> AlertsConfig:
    """Range checks of a built AlertsConfig (also after the CLI changed it, e.g. --alerts-file)."""
    return _validate(cfg, _Ctx(where, nodes), prefix)
