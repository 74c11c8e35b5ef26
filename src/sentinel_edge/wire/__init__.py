"""Wire contract: decoding of the structs in bpf/shared/events.h."""

from sentinel_edge.wire.decode import Decoder

__all__ = ["Decoder"]
