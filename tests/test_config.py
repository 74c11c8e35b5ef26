"""Config loading: embedded defaults, validation errors naming key, value and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel_edge import config
from sentinel_edge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return p


def test_defaults_without_a_file() -> None:
    cfg = config.load(None)
    assert cfg.sensors.process and cfg.sensors.file and cfg.sensors.net and cfg.sensors.priv and cfg.sensors.mem
    assert cfg.file.dedup_window_ms == 1000
    assert cfg.output.format == "json" and cfg.output.path is None


def test_values_are_read(tmp_path: Path) -> None:
    p = write(tmp_path, "sensors:\n  net: false\nfile:\n  exclude_prefixes: [/proc, /sys]\nrings:\n  file_kib: 16384\n")
    cfg = config.load(p)
    assert cfg.sensors.net is False and cfg.sensors.file is True
    assert cfg.file.exclude_prefixes == ["/proc", "/sys"]
    assert cfg.rings.file_kib == 16384


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, "")) == config.load(None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sensors:\n  flie: true\n", r"agent.yaml:2: unknown key 'sensors.flie'"),
        ("bogus: 1\n", r"agent.yaml:1: unknown key 'bogus'"),
        ("file:\n  dedup_window_ms: soon\n", r"agent.yaml:2: file.dedup_window_ms: expected an integer, got 'soon'"),
        ("sensors:\n  net: 3\n", r"sensors.net: expected true or false, got 3"),
        ("rings:\n  file_kib: 1000\n", r"rings.file_kib: 1000 must be a power of two"),
        ("file:\n  include_prefixes: [etc]\n", r"file.include_prefixes\[0\]: 'etc' must be an absolute path"),
        ("output:\n  format: xml\n", r"output.format: 'xml' must be 'json' or 'text'"),
        ("sensors: [process]\n", r"sensors: expected a mapping"),
        ("sensors:\n  net: [\n", r"invalid YAML"),
        ("network:\n  interfaces: [a/b/c]\n", r"network.interfaces\[0\]: 'a/b/c' must be <interface> or <netns"),
        ("network:\n  interfaces: [averyveryverylongname0]\n", r"interface name 'averyveryverylongname0' is not"),
        ("network:\n  interfaces: [/run/netns/x]\n", r"a netns path must be followed by ':<interface>'"),
        ("network:\n  interfaces: [eth0, eth0]\n", r"network.interfaces: .* names an interface twice"),
        ("network:\n  port_scan_ports: -1\n", r"network.port_scan_ports: -1 must be between 0 \(off\)"),
        ("network:\n  dns_max_bytes: 4096\n", r"network.dns_max_bytes: 4096 must be between 64 and 1024"),
        ("network:\n  ring_kib: 100\n", r"network.ring_kib: 100 must be a power of two"),
        ("network:\n  flow_interval_s: 0\n", r"network.flow_interval_s: 0.0 must be > 0"),
        ("network:\n  interfaces: eth0\n", r"agent.yaml:2: network.interfaces: expected a list, got 'eth0'"),
    ],
)
def test_bad_config_names_key_value_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(write(tmp_path, text))


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"sensors:\n  net: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bin\.yaml: cannot read config"):
        config.load(bad)


@pytest.mark.parametrize(("text", "want"), [("on", "on"), ("off", "off"), ("yes", "on"), ('"on"', "on"),
                                            ("auto", "auto")])
def test_syscall_fallback_bare_on_off(tmp_path: Path, text: str, want: str) -> None:
    """YAML 1.1 reads a bare `on`/`off`/`yes` as a boolean; the setting takes it as the word."""
    p = tmp_path / "c.yaml"
    p.write_text(f"mem:\n  syscall_fallback: {text}\n")
    assert config.load(p).mem.syscall_fallback == want


@pytest.mark.parametrize(("spec", "want"), [
    ("eth0", (None, "eth0")),
    ("blue/veth0", ("blue", "veth0")),
    ("/run/netns/blue:veth0", ("/run/netns/blue", "veth0")),
    ("/proc/1234/ns/net:eth0", ("/proc/1234/ns/net", "eth0")),
])
def test_interface_specs(spec: str, want: tuple[str | None, str]) -> None:
    assert config.split_interface(spec) == want
