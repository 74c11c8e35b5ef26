"""The exception tree of SentinelEdge.

    SentinelEdgeError
    ├── ConfigError          a config file or value is wrong (names key and value)
    ├── KernelFeatureError   the kernel lacks something a sensor needs (says how to fix)
    ├── PrivilegeError       not root / missing capability
    ├── LoaderError          libbpf failed to open, load or attach (names program, errno)
    ├── WireError            an event does not match the wire contract
    ├── OutputError          writing events or alerts failed (names the sink and path)
    ├── RuleError            a rule file, rule or Sigma rule is invalid (names file:line:column)
    ├── PolicyError          a policy file or policy is invalid (names file:line:column and field)
    ├── EnforceError         enforcement could not be set up, changed or carried out
    ├── NetInspectError      the network inspector could not load, attach or read (names the interface)
    └── ApiError             the API server, its tokens or audit log failed

Lower-layer errors (OSError, ctypes failures) are translated at the boundary
with ``raise ... from exc`` so the cause stays attached.
"""

from __future__ import annotations


class SentinelEdgeError(Exception):
    """Base of every error raised by SentinelEdge."""


class ConfigError(SentinelEdgeError):
    """A configuration file or value is invalid."""


class KernelFeatureError(SentinelEdgeError):
    """The running kernel lacks a feature."""


class PrivilegeError(SentinelEdgeError):
    """The agent lacks the privileges it needs."""


class LoaderError(SentinelEdgeError):
    """libbpf could not open, load or attach a program."""


class WireError(SentinelEdgeError):
    """An event does not match the wire contract."""


class OutputError(SentinelEdgeError):
    """An output sink failed."""


class RuleError(SentinelEdgeError):
    """A rule file or rule is invalid; the message starts with ``file:line:column:``.

    ``errors`` holds every problem found when a whole file or set was checked
    (one RuleError per problem), so a user sees all of them at once.
    """

    def __init__(self, message: str, *, file: str = "<string>", line: int = 0, col: int = 0,
                 errors: list[RuleError] | None = None) -> None:
        self.file = file
        self.line = line
        self.col = col
        self.errors = errors or []
        self.reason = message
        super().__init__(f"{file}:{line}:{col}: {message}" if line else f"{file}: {message}")


class PolicyError(SentinelEdgeError):
    """A policy file or policy is invalid; the message starts with ``file:line:column:``.

    ``errors`` holds every problem found in a file or set (one PolicyError each).
    """

    def __init__(self, message: str, *, file: str = "<string>", line: int = 0, col: int = 0,
                 field: str = "", errors: list[PolicyError] | None = None) -> None:
        self.file = file
        self.line = line
        self.col = col
        self.field = field
        self.errors = errors or []
        self.reason = message
        where = f"{file}:{line}:{col}: " if line else f"{file}: "
        super().__init__(f"{where}{field + ': ' if field else ''}{message}" if not errors else message)


class EnforceError(SentinelEdgeError):
    """Enforcement could not be set up, changed or carried out (names the mechanism and the cause)."""


class ApiError(SentinelEdgeError):
    """The REST API could not start, or its token store / audit log failed."""


class NetInspectError(SentinelEdgeError):
    """The network inspector could not be loaded, attached to an interface, or read."""
