"""The alerts: section of the config: every key, defaults, and errors naming key and value."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sentinel_edge.alerts.config import (
    AlertsConfig,
    RotatingConfig,
    SyslogConfig,
    WebhookConfig,
    alerts_config_from_dict,
    validate_alerts,
)
from sentinel_edge.config import _node_index
from sentinel_edge.errors import ConfigError

FULL = """
alerts:
  fold_window_s: 5
  file: /var/log/se/alerts.jsonl
  fsync: true
  stdout: true
  close_timeout_s: 2
  rotating: {path: /var/log/se/rot.jsonl, max_bytes: 1048576, backups: 3}
  syslog: {host: 127.0.0.1, port: 6514, protocol: tcp, app_name: se, facility: authpriv, queue_max: 50,
           timeout_s: 1.5}
  webhook:
    url: https://siem.example:8443/in?x=1
    timeout_s: 2
    retries: 5
    queue_max: 100
    headers: {Authorization: Bearer abc, X-Id: 7}
    backoff_s: 0.25
    backoff_max_s: 8
"""


def test_defaults() -> None:
    assert alerts_config_from_dict(None, "c.yaml") == AlertsConfig() == alerts_config_from_dict({}, "c.yaml")
    d = AlertsConfig()
    assert (d.fold_window_s, d.file, d.stdout, d.rotating, d.syslog, d.webhook) == (10.0, None, False, None, None,
                                                                                   None)


def test_every_key() -> None:
    data = yaml.safe_load(FULL)["alerts"]
    cfg = alerts_config_from_dict(data, "c.yaml")
    assert cfg == AlertsConfig(
        fold_window_s=5.0, file="/var/log/se/alerts.jsonl", fsync=True, stdout=True, close_timeout_s=2.0,
        rotating=RotatingConfig(path="/var/log/se/rot.jsonl", max_bytes=1048576, backups=3),
        syslog=SyslogConfig(host="127.0.0.1", port=6514, protocol="tcp", app_name="se", facility="authpriv",
                            queue_max=50, timeout_s=1.5),
        webhook=WebhookConfig(url="https://siem.example:8443/in?x=1", timeout_s=2.0, retries=5, queue_max=100,
                              headers={"Authorization": "Bearer abc", "X-Id": "7"}, backoff_s=0.25,
                              backoff_max_s=8.0),
    )
    assert cfg.syslog is not None and cfg.syslog.facility_code == 10
    assert alerts_config_from_dict({"syslog": {"facility": 17}}, "c").syslog.facility_code == 17  # type: ignore[union-attr]
    assert alerts_config_from_dict({"syslog": None, "webhook": None}, "c") == AlertsConfig()


@pytest.mark.parametrize(("data", "message"), [
    ({"fold": 1}, "c.yaml: unknown key 'alerts.fold' (known: close_timeout_s, file, fold_window_s, fsync, rotating"),
    ({"fold_window_s": "10s"}, "c.yaml: alerts.fold_window_s: expected a number, got '10s'"),
    ({"fold_window_s": -1}, "c.yaml: alerts.fold_window_s: -1.0 must be between 0 (off) and 3600 seconds"),
    ({"stdout": "yes"}, "c.yaml: alerts.stdout: expected true or false, got 'yes'"),
    ({"file": ""}, "c.yaml: alerts.file: '' must be a path"),
    ({"rotating": {"max_bytes": 10}}, "alerts.rotating.path: '' must be a path (the key is required)"),
    ({"rotating": {"path": "/x", "max_bytes": 10}}, "alerts.rotating.max_bytes: 10 must be >= 1024"),
    ({"rotating": {"path": "/x", "backups": 0}}, "alerts.rotating.backups: 0 must be between 1 and 1000"),
    ({"rotating": "/x"}, "c.yaml: alerts.rotating: expected a mapping, got '/x'"),
    ({"syslog": {"port": 70000}}, "alerts.syslog.port: 70000 must be between 1 and 65535"),
    ({"syslog": {"port": "514"}}, "alerts.syslog.port: expected an integer, got '514'"),
    ({"syslog": {"protocol": "tls"}}, "alerts.syslog.protocol: 'tls' must be 'udp' or 'tcp'"),
    ({"syslog": {"facility": "local9"}}, "alerts.syslog.facility: 'local9' must be 0..23 or one of kern"),
    ({"syslog": {"facility": 24}}, "alerts.syslog.facility: '24' must be 0..23"),
    ({"syslog": {"app_name": "sentinel edge"}}, "alerts.syslog.app_name: 'sentinel edge' must be 1 to 48"),
    ({"syslog": {"hots": "x"}}, "unknown key 'alerts.syslog.hots' (known: app_name, facility, host, port"),
    ({"webhook": {"url": "ftp://x/"}}, "alerts.webhook.url: 'ftp://x/' must be an http:// or https:// URL"),
    ({"webhook": {"url": "http://h:99999/"}}, "alerts.webhook.url: 'http://h:99999/' has an invalid port"),
    ({"webhook": {"url": "http://h/", "retries": -1}}, "alerts.webhook.retries: -1 must be between 0 and 100"),
    ({"webhook": {"url": "http://h/", "timeout_s": 0}}, "alerts.webhook.timeout_s: 0.0 must be > 0"),
    ({"webhook": {"url": "http://h/", "queue_max": 0}}, "alerts.webhook.queue_max: 0 must be between 1"),
    ({"webhook": {"url": "http://h/", "backoff_s": 5, "backoff_max_s": 1}},
     "alerts.webhook.backoff_max_s: 1.0 must be between webhook.backoff_s and 3600"),
    ({"webhook": {"url": "http://h/", "headers": {"X-A": "a\r\nInjected: 1"}}},
     "alerts.webhook.headers.X-A: 'a\\r\\nInjected: 1' must not contain CR, LF or NUL"),
    ({"webhook": {"url": "http://h/", "headers": {"Bad Name": "v"}}},
     "alerts.webhook.headers.Bad Name: 'Bad Name' is not a valid HTTP header name"),
    ({"webhook": {"url": "http://h/", "headers": {"Host": "v"}}}, "alerts.webhook.headers.Host: 'v' is set by"),
    ({"webhook": {"url": "http://h/", "headers": ["a"]}}, "alerts.webhook.headers: expected a mapping"),
])
def test_errors_name_key_and_value(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        alerts_config_from_dict(data, "c.yaml")
    assert message in str(err.value)


def test_errors_carry_the_line_with_yaml_nodes() -> None:
    text = "sensors: {}\nalerts:\n  syslog:\n    protocol: tls\n"
    nodes = _node_index(yaml.compose(text, Loader=yaml.SafeLoader))
    with pytest.raises(ConfigError, match=r"^c\.yaml:4: alerts\.syslog\.protocol: 'tls' must be"):
        alerts_config_from_dict(yaml.safe_load(text)["alerts"], "c.yaml", nodes=nodes)
    text = "alerts:\n  webhook:\n    url: http://h/\n    retry: 3\n"
    nodes = _node_index(yaml.compose(text, Loader=yaml.SafeLoader))
    with pytest.raises(ConfigError, match=r"^c\.yaml:4: unknown key 'alerts\.webhook\.retry'"):
        alerts_config_from_dict(yaml.safe_load(text)["alerts"], "c.yaml", nodes=nodes)


def test_validate_after_the_cli_changed_it() -> None:
    cfg = AlertsConfig()
    cfg.file = "/tmp/x.jsonl"  # what `run --alerts-file` does
    assert validate_alerts(cfg, "defaults") is cfg
    cfg.fold_window_s = 7200
    with pytest.raises(ConfigError, match=r"defaults: alerts\.fold_window_s: 7200"):
        validate_alerts(cfg, "defaults")
