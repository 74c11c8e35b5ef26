"""How many of a Sigma rule set SentinelEdge loads, per logsource, and the top reasons for the rest.

    python benchmarks/sigma_load_ratio.py PATH [PATH ...]

PATH is a directory or file of Sigma rules, e.g. a checkout of SigmaHQ's ``rules/linux``. No
package on the registries we use ships SigmaHQ's rules, so the rule set is not bundled here; see
docs/sigma.md for the measured figures and how they were obtained.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import yaml

from sentinel_edge.rules.sigma import load_sigma, reason_group


def _logsource(path: str) -> str:
    """``category`` (or ``service:NAME``) of the first document of a file, for grouping."""
    try:
        docs = list(yaml.safe_load_all(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return "unreadable"
    for doc in docs:
        if isinstance(doc, dict) and isinstance(doc.get("logsource"), dict):
            ls = doc["logsource"]
            if ls.get("category"):
                return str(ls["category"])
            if ls.get("service"):
                return f"service:{ls['service']}"
        if isinstance(doc, dict) and "correlation" in doc:
            return "correlation"
    return "other"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--top", type=int, default=10, help="how many skip reasons to list")
    args = ap.parse_args(argv)
    result = load_sigma(args.paths)
    loaded = Counter(result.categories.get(r.meta.id, "?") for r in result.rules)
    skipped = Counter(_logsource(f) for f, _ in result.skipped)
    total = len(result.rules) + len(result.skipped)
    print(f"loaded {len(result.rules)}/{total} ({100 * len(result.rules) / max(total, 1):.0f}%)")
    for cat in sorted(set(loaded) | set(skipped)):
        n, t = loaded[cat], loaded[cat] + skipped[cat]
        print(f"  {cat:<28} {n:>4}/{t:<4} ({100 * n / max(t, 1):.0f}%)")
    print(f"top skip reasons (of {len(result.skipped)}):")
    for reason, n in Counter(reason_group(r) for _, r in result.skipped).most_common(args.top):
        print(f"  {n:>4}  {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
