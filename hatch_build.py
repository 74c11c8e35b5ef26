"""Hatch build hook: compile the BPF object with `make` so wheels ship it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class BpfBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        obj = root / "src/sentinel_edge/_bpf/sentinel.bpf.o"
        if (root / "Makefile").exists():
            res = subprocess.run(["make", "-s", "-C", str(root)], capture_output=True, text=True)
            if res.returncode != 0 and not obj.exists():
                raise RuntimeError(f"building the BPF object failed (needs clang and bpftool):\n{res.stderr}")
        if not obj.exists():
            raise RuntimeError(f"{obj} is missing; run 'make' first")
