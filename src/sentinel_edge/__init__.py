"""SentinelEdge: a Linux runtime-security agent (eBPF sensors, Python decisions)."""

__version__ = "0.1.0"
