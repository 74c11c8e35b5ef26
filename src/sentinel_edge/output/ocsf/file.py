"""OCSF mapping (filled by its sensor family)."""
