"""Overhead, throughput and memory of the agent (prints figures; not a test).

    sudo .venv/bin/python benchmarks/overhead.py [--rounds 10] [--quick]

1. Overhead: exec loop (spawn /bin/true), open/close loop and loopback TCP
   connect loop, each timed by a C program (benchmarks/loops.c), with the
   agent off and on (default config, OCSF JSON to a file) in interleaved
   rounds whose order alternates. Prints the median on/off ratio per workload
   with a bootstrap 95% confidence interval, and the same with open dedup off.
2. Throughput: distinct-file opens (dedup off) at full speed: kernel events
   emitted, dropped, objects written and end-to-end events/s; then paced rates
   stepping up to find the highest rate with zero loss.
3. Peak RSS of the agent (VmHWM).
Traffic goes to 127.0.0.1 only; every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import AgentHandle, start_agent, stop_agent  # noqa: E402


def build_loops(tmp: Path) -> str:
    out = tmp / "loops"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(ROOT / "benchmarks/loops.c"), "-lpthread"], check=True)
    return str(out)


def run_loop(loops: str, *args: str) -> float:
    res = subprocess.run([loops, *args], check=True, capture_output=True, text=True, timeout=300)
    return float(res.stdout.strip())


def bootstrap_ci(ratios: list[float], n: int = 4000, seed: int = 7) -> tuple[float, float]:
    rnd = random.Random(seed)
    meds = sorted(statistics.median(rnd.choices(ratios, k=len(ratios))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]


def workloads(loops: str, quick: bool, port: int, target: str) -> dict[str, float]:
    scale = 0.25 if quick else 1.0
    return {
        "exec": run_loop(loops, "exec", str(int(2000 * scale))),
        "open": run_loop(loops, "open", str(int(300_000 * scale)), target),
        "connect": run_loop(loops, "connect", str(int(5000 * scale)), str(port)),
    }


def rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def overhead(loops: str, tmp: Path, rounds: int, quick: bool, config_text: str | None, label: str) -> list[int]:
    target = tmp / "target.txt"
    target.write_text("x")
    ratios: dict[str, list[float]] = {"exec": [], "open": [], "connect": []}
    base_all: dict[str, list[float]] = {"exec": [], "open": [], "connect": []}
    rss: list[int] = []
    port = 47000
    for r in range(rounds):
        results: dict[str, dict[str, float]] = {}
        order = ["off", "on"] if r % 2 == 0 else ["on", "off"]
        for mode in order:
            port += 1
            if mode == "on":
                adir = tmp / f"agent-{label}-{r}"
                adir.mkdir()
                handle = start_agent(adir, config_text)
                time.sleep(0.5)
                results[mode] = workloads(loops, quick, port, str(target))
                rss.append(rss_peak_kib(handle.proc.pid))
                stop_agent(handle, read_output=False)
                shutil.rmtree(adir)
            else:
                results[mode] = workloads(loops, quick, port, str(target))
        for w in ratios:
            ratios[w].append(results["on"][w] / results["off"][w])
            base_all[w].append(results["off"][w])
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{w} x{ratios[w][-1]:.3f}" for w in ratios), flush=True)
    print(f"overhead ({label}), {rounds} interleaved rounds, median ratio agent-on / agent-off [95% bootstrap CI]:")
    for w, rs in ratios.items():
        lo, hi = bootstrap_ci(rs)
        print(f"  {w:<8} x{statistics.median(rs):.3f} [{lo:.3f}, {hi:.3f}]  "
              f"(baseline {statistics.median(base_all[w]) / 1000:.2f} us/op)")
    return rss


def drain_wait(handle: AgentHandle, timeout: float = 60) -> dict[str, object]:
    """Wait until the agent wrote everything the kernel emitted."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        time.sleep(1.2)
        st = handle.status()
        if st["decoded"] == last:
            return st
        last = int(str(st["decoded"]))
    return handle.status()


def _history(st: dict[str, object]) -> tuple[int, int]:
    h = st.get("history") or {}
    assert isinstance(h, dict)
    return int(h.get("written_events", 0)), int(h.get("dropped_full_queue", 0)) + int(h.get("dropped_disk", 0))


def throughput(loops: str, tmp: Path, quick: bool, extra: list[str] | None = None, label: str = "") -> int:
    files = tmp / f"files{label}"
    files.mkdir()
    cfg = "file:\n  dedup_window_ms: 0\n"
    adir = tmp / f"agent-tp{label}"
    adir.mkdir()
    print(f"-- throughput, agent {' '.join(extra or []) or 'defaults (history on)'}")
    handle = start_agent(adir, cfg, extra)
    try:
        time.sleep(0.5)
        n = 100_000 if quick else 400_000
        before = drain_wait(handle, 10)
        t0 = time.monotonic()
        ns_per_op = run_loop(loops, "openmany", str(n), str(files))
        gen_s = time.monotonic() - t0
        st = drain_wait(handle)
        kfile = st["kernel"]["file"]  # type: ignore[index]
        kb = before["kernel"]["file"]  # type: ignore[index]
        emitted = kfile["emitted"] - kb["emitted"]
        dropped = kfile["dropped"] - kb["dropped"]
        written = int(str(st["written"])) - int(str(before["written"]))
        print(f"throughput at saturation: {n} opens in {gen_s:.2f} s ({1e9 / ns_per_op:,.0f} opens/s offered); "
              f"kernel emitted {emitted:,}, dropped {dropped:,}; agent wrote {written:,} objects "
              f"-> {written / gen_s:,.0f} events/s end to end while the load ran")
        if st.get("history"):
            time.sleep(2)  # the history writer catches up after the pipeline
            st2 = handle.status()
            (w0, d0), (w1, d1) = _history(before), _history(st2)
            print(f"  history: {w1 - w0:,} events committed, {d1 - d0:,} dropped (queue full or disk)")
        best = 0
        for rate in (10_000, 15_000, 20_000, 30_000, 50_000, 100_000, 150_000, 200_000, 300_000, 400_000):
            before = drain_wait(handle, 10)
            count = min(int(rate * (1 if quick else 2)), 800_000)
            run_loop(loops, "openrate", str(count), str(rate), str(files))
            st = drain_wait(handle)
            d = st["kernel"]["file"]["dropped"] - before["kernel"]["file"]["dropped"]  # type: ignore[index]
            ud = int(str(st["user_dropped"])) - int(str(before["user_dropped"]))
            hist = ""
            if st.get("history"):
                time.sleep(2)
                (w0, d0), (w1, d1) = _history(before), _history(handle.status())
                hist = f", history committed {w1 - w0:,} dropped {d1 - d0:,}"
            print(f"  paced {rate:>7,}/s for {count:,} opens: kernel dropped {d}, user-space dropped {ud}{hist}")
            if d == 0 and ud == 0:
                best = rate
            else:
                break
        print(f"highest paced rate with zero loss: {best:,} events/s")
        return rss_peak_kib(handle.proc.pid)
    finally:
        stop_agent(handle, read_output=False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="smaller loops (for a smoke run)")
    ap.add_argument("--skip-dedup-off", action="store_true")
    ap.add_argument("--throughput-only", action="store_true", help="skip the overhead rounds")
    ap.add_argument("--history", choices=("on", "off", "compare"), default="compare",
                    help="throughput with the history store on, off, or both in one run (default)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="se-bench-") as d:
        tmp = Path(d)
        loops = build_loops(tmp)
        rss = [0]
        if not args.throughput_only:
            rss = overhead(loops, tmp, args.rounds, args.quick, None, "default config")
            if not args.skip_dedup_off:
                overhead(loops, tmp, max(3, args.rounds // 2), args.quick, "file:\n  dedup_window_ms: 0\n",
                         "dedup off")
        tp_rss = 0
        if args.history in ("off", "compare"):
            tp_rss = throughput(loops, tmp, args.quick, ["--no-history"], "-nohist")
        if args.history in ("on", "compare"):
            tp_rss = max(tp_rss, throughput(loops, tmp, args.quick, [], "-hist"))
        print(f"agent peak RSS: {max([*rss, tp_rss]) / 1024:.1f} MiB (overhead rounds max {max(rss) / 1024:.1f}, "
              f"throughput run {tp_rss / 1024:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
