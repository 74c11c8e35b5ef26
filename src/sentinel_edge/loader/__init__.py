"""Kernel side: libbpf binding, BTF, feature probes, load/attach, ring buffers."""
