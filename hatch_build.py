"""Hatch build hook: run `make` so wheels ship the BPF object and the ring header walk.

`make` builds src/sentinel_edge/_bpf/sentinel.bpf.o (required) and
src/sentinel_edge/_bpf/ringwalk.so (the C header walk of
RingReader.drain_batch, loaded with ctypes; optional at run time: without it
drain_batch walks the headers in Python). A wheel holding ringwalk.so is
tagged for this platform.
"""

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
        walk = root / "src/sentinel_edge/_bpf/ringwalk.so"
        res = None
        if (root / "Makefile").exists():
            res = subprocess.run(["make", "-s", "-C", str(root)], capture_output=True, text=True)
            if res.returncode != 0 and not obj.exists():
                raise RuntimeError(f"building the BPF object failed (needs clang and bpftool):\n{res.stderr}")
        if not obj.exists():
            raise RuntimeError(f"{obj} is missing; run 'make' first")
        if not walk.exists():
            detail = f":\n{res.stderr}" if res is not None and res.returncode != 0 else ""
            self.app.display_warning(f"{walk} was not built (needs a C compiler, cc); drain_batch will walk "
                                     f"ring headers in Python{detail}")
        elif self.target_name == "wheel":
            build_data["pure_python"] = False  # a native shared object inside: platform wheel
            build_data["infer_tag"] = True
