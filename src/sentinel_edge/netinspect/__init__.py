"""The network inspector: XDP detections, TC flow table and DNS copies (bpf/netinspect/), and their user side.

``kernel`` loads and attaches the BPF object (:class:`~sentinel_edge.netinspect.kernel.NetInspectKernel`);
``dns`` and ``community`` turn what it reports into fields; ``stage`` puts it in the agent's pipeline.
"""
