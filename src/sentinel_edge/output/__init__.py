"""Output: OCSF mapping and sinks."""
