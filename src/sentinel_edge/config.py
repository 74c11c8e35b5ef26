"""Agent configuration: one YAML file, validated at start, embedded defaults.

Every error names the key (dotted path), the bad value and, for files, the
file and line; unknown keys are errors too (a typo must not silently disable
something).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from sentinel_edge.alerts.config import AlertsConfig, alerts_config_from_dict, validate_alerts
from sentinel_edge.errors import ConfigError


@dataclass(slots=True)
class SensorsConfig:
    """Which sensor families are loaded (each can be turned off)."""

    process: bool = True
    file: bool = True
    net: bool = True
    priv: bool = True
    mem: bool = True


@dataclass(slots=True)
class FileConfig:
    include_prefixes: list[str] = field(default_factory=list)  # empty: every path
    exclude_prefixes: list[str] = field(default_factory=list)
    dedup_window_ms: int = 1000  # repeated identical opens by one process; 0 = off


@dataclass(slots=True)
class ProcessConfig:
    argv_max: int = 4096  # bytes of argv captured per exec (<= 4096)
    capture_env: bool = True  # LD_PRELOAD / LD_LIBRARY_PATH


@dataclass(slots=True)
class MemConfig:
    anon_exec: bool = True  # PROT_EXEC on anonymous memory (besides W+X)
    bpf_all_commands: bool = False  # every bpf() command, not only program loads
    # raw_tp/sys_enter+sys_exit watch for syscalls whose tracepoints are missing
    # (module syscalls). It runs on every syscall of the host (measured: about
    # +0.4 us per syscall here), so "auto" uses it only where the syscalls can
    # succeed: kernels with module support (/proc/modules) but no tracepoints.
    syscall_fallback: str = "auto"  # auto | on | off


@dataclass(slots=True)
class RingsConfig:
    """Ring buffer sizes in KiB (powers of two, at least 4)."""

    process_kib: int = 4096
    file_kib: int = 8192
    net_kib: int = 4096
    priv_kib: int = 2048
    mem_kib: int = 2048


@dataclass(slots=True)
class EnrichConfig:
    ancestry_depth: int = 8
    exit_grace_s: float = 30.0
    max_processes: int = 65536


@dataclass(slots=True)
class OutputConfig:
    format: str = "json"  # json (OCSF, one object a line) or text
    path: str | None = None  # None: stdout
    events: bool = True  # write every event; false: only health objects (alerts go to the alert outputs)


@dataclass(slots=True)
class RulesConfig:
    default: bool = True  # load the rule set shipped in the package
    paths: list[str] = field(default_factory=list)  # more native rule files or directories
    sigma: list[str] = field(default_factory=list)  # Sigma rule files or directories
    record_all: bool = False  # attach every sensor, also those no loaded rule needs
    watch: bool = True  # reload when a rule file changes (SIGHUP always reloads)
    state_max_keys: int = 10_000  # open sequences / threshold counters per stateful rule (oldest evicted)


DEFAULT_POLICY_DIR = "/etc/sentinel-edge/policies"


def default_state_dir() -> str:
    """``SENTINEL_EDGE_STATE_DIR`` when set (tests, several agents on one host), else /var/lib/sentinel-edge."""
    import os

    return os.environ.get("SENTINEL_EDGE_STATE_DIR") or "/var/lib/sentinel-edge"


@dataclass(slots=True)
class EnforceConfig:
    # policy files or directories (docs/policies.md); a missing directory holds none until it is created
    policies: list[str] = field(default_factory=lambda: ["/etc/sentinel-edge/policies"])
    pin_root: str = "/sys/fs/bpf/sentinel-edge/enforce"  # where kernel enforcement is pinned
    watch: bool = True  # re-apply when a policy file changes (SIGHUP always does)
    fanotify: bool = True  # sha256 / #! script / protected-file policies (fail open while no agent runs)
    # executables never killed by an exec or tamper policy (missing ones are skipped)
    safe_executables: list[str] = field(default_factory=lambda: [
        "/sbin/init", "/usr/lib/systemd/systemd", "/usr/lib/systemd/systemd-journald", "/usr/sbin/sshd",
    ])


@dataclass(slots=True)
class ResponseSettings:
    """Response actions of rules (docs/actions.md)."""

    quarantine_dir: str = "/var/lib/sentinel-edge/quarantine"
    allow_executables: list[str] = field(default_factory=list)  # never killed, their files never quarantined
    never_block: list[str] = field(default_factory=list)  # management CIDRs (loopback, own addresses and
    # default gateways are never blocked anyway)
    max_blocked: int = 1024
    default_ttl_s: float = 3600.0


@dataclass(slots=True)
class HistoryConfig:
    """The embedded event and alert history (docs/history.md)."""

    enabled: bool = True
    path: str | None = None  # None: <state_dir>/history.db
    events: bool = True  # store every event (false: alerts only)
    retention_days: float = 30.0  # 0 = keep forever (still bounded by max_mb)
    max_mb: int = 2048  # space used in the file; oldest events removed first


@dataclass(slots=True)
class ApiConfig:
    """REST API, web console, /metrics and health on one port (docs/api.md)."""

    enabled: bool = True
    listen: str = "127.0.0.1:8080"  # host:port ([v6]:port); port 0 = any free port
    tls_cert: str | None = None  # required when listen is not a loopback address
    tls_key: str | None = None
    allowed_hosts: list[str] = field(default_factory=list)  # Host header names beside the listen address
    metrics_auth: bool = True  # /metrics needs a token with the read permission
    stream_max_rate: int = 200  # live stream events per second per subscriber (beyond: sampled)


@dataclass(slots=True)
class NetworkConfig:
    """The packet inspector (docs/network.md): XDP detections, TC flows and DNS on chosen interfaces."""

    # "eth0", or "<netns>/<ifname>" for an interface in the network namespace /run/netns/<netns>
    # (or "/path/to/netns/file:<ifname>"); empty: the inspector is off. Re-read on SIGHUP / file change.
    interfaces: list[str] = field(default_factory=list)
    xdp: bool = True  # ingress detections (through the enforcement XDP entry program)
    tc: bool = True  # flows and DNS (TC clsact ingress and egress)
    flows: bool = True
    flow_interval_s: float = 10.0  # the flow table is read and changed flows exported this often
    flow_idle_s: float = 60.0  # a flow without packets for this long is exported as closed and forgotten
    flow_entries: int = 65536  # LRU flow table entries
    dns: bool = True
    dns_max_bytes: int = 1024  # bytes of each DNS message copied from the packet
    window_ms: int = 1000  # detection window
    syn_flood_per_source: int = 200  # SYNs from one source per window (0: off)
    syn_flood_total: int = 2000  # SYNs from all sources per window (spoofed floods; 0: off)
    port_scan_ports: int = 30  # distinct destination ports of one source per window (0: off)
    icmp_flood: int = 200  # ICMP echo requests from one source per window (0: off)
    drop: bool = False  # block the source of a per-source detection (response blocks: never-block list, cap)
    drop_ttl_s: float = 300.0
    ring_kib: int = 4096


@dataclass(slots=True)
class AgentConfig:
    sensors: SensorsConfig = field(default_factory=SensorsConfig)
    file: FileConfig = field(default_factory=FileConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    mem: MemConfig = field(default_factory=MemConfig)
    rings: RingsConfig = field(default_factory=RingsConfig)
    enrich: EnrichConfig = field(default_factory=EnrichConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)  # validated by alerts.config
    enforce: EnforceConfig = field(default_factory=EnforceConfig)
    response: ResponseSettings = field(default_factory=ResponseSettings)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    # history.db, auth.db (API tokens, audit log), rules-state.json, admin-token
    state_dir: str = field(default_factory=lambda: default_state_dir())
    drain_interval_ms: int = 10  # how often the rings are drained when idle
    stats_interval_s: float = 1.0  # how often loss counters are read
    queue_max: int = 200_000  # decoded events held in user space before drops are counted


def _line_of(node: yaml.Node | None) -> str:
    return f":{node.start_mark.line + 1}" if node is not None else ""


def _check(value: Any, typ: Any, key: str, where: str) -> Any:
    origin = get_origin(typ)
    if origin is list:
        (inner,) = get_args(typ)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}")
        return [_check(v, inner, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is not None and type(None) in get_args(typ):  # Optional[X]
        if value is None:
            return None
        inner = next(a for a in get_args(typ) if a is not type(None))
        return _check(value, inner, key, where)
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: {key}: unsupported type")


def _build(cls: type, data: Any, prefix: str, where: str, nodes: dict[str, yaml.Node]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}{_line_of(nodes.get(prefix))}: {prefix or 'config'}: expected a mapping")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        loc = f"{where}{_line_of(nodes.get(dotted))}"
        if key not in names:
            raise ConfigError(f"{loc}: unknown key {dotted!r} (known: {', '.join(sorted(names))})")
        typ = hints[key]
        if is_dataclass(typ):
            kwargs[key] = _build(typ, value, dotted, where, nodes)  # type: ignore[arg-type]
        else:
            kwargs[key] = _check(value, typ, dotted, loc)
    return cls(**kwargs)


def _node_index(node: yaml.Node, prefix: str = "") -> dict[str, yaml.Node]:
    out: dict[str, yaml.Node] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            dotted = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[dotted] = k
            out.update(_node_index(v, dotted))
    return out


def validate(cfg: AgentConfig, where: str = "config") -> AgentConfig:
    """Range checks that types alone do not express."""

    def bad(key: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {value!r} {why}")

    for name in ("process_kib", "file_kib", "net_kib", "priv_kib", "mem_kib"):
        v = getattr(cfg.rings, name)
        if v < 4 or v & (v - 1) or v > 1 << 20:
            raise bad(f"rings.{name}", v, "must be a power of two between 4 and 1048576")
    if not 0 < cfg.process.argv_max <= 4096:
        raise bad("process.argv_max", cfg.process.argv_max, "must be between 1 and 4096")
    if cfg.file.dedup_window_ms < 0:
        raise bad("file.dedup_window_ms", cfg.file.dedup_window_ms, "must be >= 0")
    for key in ("include_prefixes", "exclude_prefixes"):
        lst = getattr(cfg.file, key)
        if len(lst) > 8:
            raise bad(f"file.{key}", lst, "has more than 8 prefixes")
        for i, p in enumerate(lst):
            if not p.startswith("/") or len(p.encode()) >= 64:
                raise bad(f"file.{key}[{i}]", p, "must be an absolute path shorter than 64 bytes")
    if cfg.mem.syscall_fallback not in ("auto", "on", "off"):
        raise bad("mem.syscall_fallback", cfg.mem.syscall_fallback, "must be 'auto', 'on' or 'off'")
    if cfg.output.format not in ("json", "text"):
        raise bad("output.format", cfg.output.format, "must be 'json' or 'text'")
    if cfg.enrich.ancestry_depth < 0 or cfg.enrich.ancestry_depth > 64:
        raise bad("enrich.ancestry_depth", cfg.enrich.ancestry_depth, "must be between 0 and 64")
    if cfg.enrich.max_processes < 64:
        raise bad("enrich.max_processes", cfg.enrich.max_processes, "must be >= 64")
    if cfg.drain_interval_ms < 1 or cfg.drain_interval_ms > 1000:
        raise bad("drain_interval_ms", cfg.drain_interval_ms, "must be between 1 and 1000")
    if cfg.queue_max < 1000:
        raise bad("queue_max", cfg.queue_max, "must be >= 1000")
    if cfg.rules.state_max_keys < 1:
        raise bad("rules.state_max_keys", cfg.rules.state_max_keys, "must be >= 1")
    if not cfg.enforce.pin_root.startswith("/sys/fs/bpf/"):
        raise bad("enforce.pin_root", cfg.enforce.pin_root, "must be a directory under /sys/fs/bpf/")
    for i, p in enumerate(cfg.enforce.safe_executables):
        if not p.startswith("/"):
            raise bad(f"enforce.safe_executables[{i}]", p, "must be an absolute path")
    if not cfg.response.quarantine_dir.startswith("/"):
        raise bad("response.quarantine_dir", cfg.response.quarantine_dir, "must be an absolute path")
    if cfg.response.max_blocked < 1:
        raise bad("response.max_blocked", cfg.response.max_blocked, "must be >= 1")
    if cfg.response.default_ttl_s < 1:
        raise bad("response.default_ttl_s", cfg.response.default_ttl_s, "must be >= 1")
    if not cfg.state_dir.startswith("/"):
        raise bad("state_dir", cfg.state_dir, "must be an absolute path")
    if cfg.history.retention_days < 0:
        raise bad("history.retention_days", cfg.history.retention_days, "must be >= 0 (0 = no age limit)")
    if cfg.history.max_mb < 16:
        raise bad("history.max_mb", cfg.history.max_mb, "must be >= 16")
    try:
        host, _port = split_listen(cfg.api.listen)
    except ValueError as exc:
        raise bad("api.listen", cfg.api.listen, str(exc)) from None
    if (cfg.api.tls_cert is None) != (cfg.api.tls_key is None):
        raise bad("api.tls_cert", cfg.api.tls_cert, "and api.tls_key must be given together")
    if cfg.api.enabled and not is_loopback(host) and cfg.api.tls_cert is None:
        raise bad("api.listen", cfg.api.listen,
                  "is not a loopback address: listening there needs TLS (set api.tls_cert and api.tls_key)")
    if cfg.api.stream_max_rate < 1:
        raise bad("api.stream_max_rate", cfg.api.stream_max_rate, "must be >= 1")
    _validate_network(cfg.network, bad)
    validate_alerts(cfg.alerts, where)
    return cfg


def _validate_network(net: NetworkConfig, bad: Any) -> None:
    for i, spec in enumerate(net.interfaces):
        try:
            split_interface(spec)
        except ValueError as exc:
            raise bad(f"network.interfaces[{i}]", spec, str(exc)) from None
    if len(set(net.interfaces)) != len(net.interfaces):
        raise bad("network.interfaces", net.interfaces, "names an interface twice")
    for key in ("flow_interval_s", "flow_idle_s", "drop_ttl_s"):
        if not getattr(net, key) > 0:
            raise bad(f"network.{key}", getattr(net, key), "must be > 0")
    if net.flow_entries < 1024:
        raise bad("network.flow_entries", net.flow_entries, "must be >= 1024")
    if not 64 <= net.dns_max_bytes <= 1024:
        raise bad("network.dns_max_bytes", net.dns_max_bytes, "must be between 64 and 1024")
    if not 10 <= net.window_ms <= 60_000:
        raise bad("network.window_ms", net.window_ms, "must be between 10 and 60000")
    for key in ("syn_flood_per_source", "syn_flood_total", "port_scan_ports", "icmp_flood"):
        v = getattr(net, key)
        if not 0 <= v <= 1 << 30:
            raise bad(f"network.{key}", v, "must be between 0 (off) and 1073741824")
    v = net.ring_kib
    if v < 64 or v & (v - 1) or v > 1 << 20:
        raise bad("network.ring_kib", v, "must be a power of two between 64 and 1048576")


IFNAMSIZ = 16


def split_interface(spec: str) -> tuple[str | None, str]:
    """``eth0`` -> (None, "eth0"); ``blue/veth0`` -> ("blue", "veth0"); ``/run/x:veth0`` -> ("/run/x", "veth0")."""
    netns: str | None = None
    name = spec
    if spec.startswith("/"):
        netns, sep, name = spec.rpartition(":")
        if not sep or not netns:
            raise ValueError("a netns path must be followed by ':<interface>'")
    elif "/" in spec:
        netns, _, name = spec.partition("/")
        if not netns or "/" in name or netns in (".", ".."):
            raise ValueError("must be <interface> or <netns name>/<interface>")
    if not name or len(name.encode()) >= IFNAMSIZ or any(c in name for c in "/: \t\n") or name in (".", ".."):
        raise ValueError(f"interface name {name!r} is not valid (1-15 bytes, no '/', ':' or spaces)")
    return netns, name


def policy_dir(cfg: AgentConfig) -> Path:
    """Where policy files are added (API, ``policy apply``): the first directory in enforce.policies."""
    for p in cfg.enforce.policies:
        if not p.endswith((".yaml", ".yml")):
            return Path(p)
    return Path(DEFAULT_POLICY_DIR)


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port (or [ipv6]:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address must be in brackets: [::1]:8080")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError("port must be a number between 0 and 65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(path: str | Path | None) -> AgentConfig:
    """The config from `path`, or the embedded defaults when path is None."""
    if path is None:
        return validate(AgentConfig(), "defaults")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from exc
    if data is None:
        data = {}
    nodes = _node_index(root) if root is not None else {}
    mem = data.get("mem") if isinstance(data, dict) else None
    if isinstance(mem, dict) and isinstance(mem.get("syscall_fallback"), bool):
        # YAML 1.1 reads a bare on/off as a boolean: take it as the word it was
        mem["syscall_fallback"] = "on" if mem["syscall_fallback"] else "off"
    alerts = data.pop("alerts", None) if isinstance(data, dict) else None
    cfg = _build(AgentConfig, data, "", str(p), nodes)
    cfg.alerts = alerts_config_from_dict(alerts, str(p), nodes=nodes)
    return validate(cfg, str(p))
