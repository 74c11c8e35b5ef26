"""Detection throughput and alert latency (prints figures; not a test).

    sudo .venv/bin/python benchmarks/detect.py [--seconds 3] [--latency-seconds 10]

1. Throughput, one core, decoded batches to alerts: real events are captured
   in-process from the kernel (BpfSession -> decode -> enrich) while a mixed
   workload runs (execs of common tools, file reads and writes, loopback TCP
   connects). The enriched events are then run through (a) no rules (the
   loop itself), (b) the default rule set, (c) the default set plus 100
   generated Sigma rules (SigmaHQ-shaped: process_creation, file_event,
   network_connection), timing Engine.evaluate including the Alert objects
   it builds. Prints events/s and the ratio to the target (200 000/s).
2. Latency, kernel event time to alert written: a real `sentinel-edge run`
   with the default set + the 100 Sigma rules writes alerts to a file while
   a paced load of ~10 000 events/s (opens of distinct files) runs, and a
   marked exec that a rule matches is started every 50 ms. Each alert's
   latency is the time its line appeared in the file (polled every 0.5 ms)
   minus the kernel's event time (boot-time ns, from the event uid in the
   finding). Prints p50/p99/max.
Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sentinel_edge import config
from sentinel_edge.enrich import Enricher
from sentinel_edge.enrich.host import host_info
from sentinel_edge.loader import probes
from sentinel_edge.loader.session import BpfSession
from sentinel_edge.model import Event
from sentinel_edge.rules.engine import Engine, load_rules
from sentinel_edge.wire import Decoder

TARGET_EPS = 200_000
ROOT = Path(__file__).resolve().parent.parent

# SigmaHQ-shaped rule templates: (category, detection YAML) with {n} and {tool} filled in
TOOLS = ["nmap", "masscan", "socat", "ncat", "tcpdump", "hydra", "john", "hashcat", "chisel", "frpc", "ngrok",
         "xmrig", "minerd", "linpeas", "pspy", "gdb", "strace", "ltrace", "base64", "openssl", "perl", "ruby",
         "php", "lua", "awk", "busybox", "dd", "shred", "wipefs", "setcap", "chattr", "iptables", "nft",
         "crontab", "at", "systemctl", "useradd", "usermod", "passwd", "visudo", "ssh-keygen", "scp", "rsync",
         "curl", "wget", "tftp", "ftp", "telnet", "xxd", "od"]
PROC_TMPL = """title: Bench process rule {n}
id: 00000000-0000-4000-8000-{n:012d}
status: test
description: generated for benchmarks/detect.py
logsource: {{product: linux, category: process_creation}}
detection:
  selection_img:
    Image|endswith: ['/{tool}', '/{tool}.bin']
  selection_cli:
    CommandLine|contains:
      - ' --{tool}-opt{n}'
      - ' -x{n} '
  filter:
    ParentImage|startswith: '/usr/lib/{tool}/'
  condition: selection_img and selection_cli and not filter
level: medium
tags: [attack.execution, attack.t1059.004]
"""
PROC_TMPL2 = """title: Bench process rule {n}
id: 00000000-0000-4000-8000-{n:012d}
status: test
description: generated for benchmarks/detect.py
logsource: {{product: linux, category: process_creation}}
detection:
  selection:
    CommandLine|contains|all: ['{tool}', 'bench-marker-{n}']
  condition: selection
level: high
tags: [attack.discovery, attack.t1082]
"""
FILE_TMPL = """title: Bench file rule {n}
id: 00000000-0000-4000-8000-{n:012d}
status: test
description: generated for benchmarks/detect.py
logsource: {{product: linux, category: file_event}}
detection:
  selection:
    TargetFilename|startswith: '/etc/bench{n}/'
  selection_ext:
    TargetFilename|endswith: ['.{tool}', '.bench{n}']
  condition: selection or selection_ext
level: medium
tags: [attack.persistence, attack.t1543.002]
"""
NET_TMPL = """title: Bench network rule {n}
id: 00000000-0000-4000-8000-{n:012d}
status: test
description: generated for benchmarks/detect.py
logsource: {{product: linux, category: network_connection}}
detection:
  selection:
    Initiated: 'true'
    DestinationPort: [{p1}, {p2}]
  filter:
    DestinationIp|cidr: ['10.{n}.0.0/16']
  condition: selection and not filter
level: low
tags: [attack.command-and-control, attack.t1571]
"""


def write_sigma_rules(d: Path, count: int = 100) -> None:
    for n in range(count):
        tool = TOOLS[n % len(TOOLS)]
        if n < 35:
            text = PROC_TMPL.format(n=n, tool=tool)
        elif n < 60:
            text = PROC_TMPL2.format(n=n, tool=tool)
        elif n < 85:
            text = FILE_TMPL.format(n=n, tool=tool)
        else:
            text = NET_TMPL.format(n=n, tool=tool, p1=20000 + n, p2=30000 + n)
        (d / f"bench_{n:03d}.yml").write_text(text)


def workload(tmp: Path) -> None:
    """A bounded mix: execs of common tools, file reads/writes, loopback connects."""
    script = ("for i in $(seq 40); do ls /etc >/dev/null; cat /etc/hostname >/dev/null; "
              "grep -q root /etc/group; id >/dev/null; uname -a >/dev/null; done")
    subprocess.run(["sh", "-c", script], check=True, timeout=120)
    for i in range(20000):
        with open(tmp / f"w{i % 3000}", "w") as f:
            f.write("x")
    for p in list(Path("/usr/share/doc").rglob("*"))[:3000]:
        try:
            with open(p, "rb"):
                pass
        except OSError:
            pass
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    port = srv.getsockname()[1]
    for _ in range(500):
        c = socket.create_connection(("127.0.0.1", port))
        a, _ = srv.accept()
        a.close()
        c.close()
    srv.close()


def capture() -> list[Event]:
    cfg = config.load(None)
    cfg.rings.file_kib = 65536
    cfg.rings.process_kib = 16384
    cfg.rings.net_kib = 16384
    host = host_info()
    sess = BpfSession(cfg, probes.probe())
    sess.start()
    enricher = Enricher(host=host)
    enricher.seed()
    dec = Decoder(sess.btf)
    events: list[Event] = []
    try:
        with tempfile.TemporaryDirectory() as d:
            stop = threading.Event()
            t = threading.Thread(target=lambda: (workload(Path(d)), stop.set()))
            t.start()
            deadline = time.monotonic() + 180
            while not stop.is_set() and time.monotonic() < deadline:
                raws: list[bytes] = []
                for r in sess.readers.values():
                    r.drain(raws)
                batch = [dec.decode(x) for x in raws]
                batch.sort(key=lambda e: e.ts_ns)
                for ev in batch:
                    enricher.enrich(ev)
                events.extend(batch)
                time.sleep(0.01)
            t.join(60)
            time.sleep(0.05)
            raws = []
            for r in sess.readers.values():
                r.drain(raws)
            for ev in sorted((dec.decode(x) for x in raws), key=lambda e: e.ts_ns):
                enricher.enrich(ev)
                events.append(ev)
            dropped = sum(s["dropped"] for s in sess.stats().values())
    finally:
        sess.close()
    kinds: dict[str, int] = {}
    for ev in events:
        kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
    print(f"captured {len(events)} enriched events (kernel dropped {dropped}): "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda x: -x[1])))
    return events


def throughput(events: list[Event], engine: Engine, seconds: float) -> tuple[float, int]:
    """Events/s of engine.evaluate over the events, repeated for about `seconds` (at least one pass),
    and the alerts of one pass."""
    evaluate = engine.evaluate
    passes = 0
    alerts = 0
    t0 = time.perf_counter()
    while True:
        for ev in events:
            alerts += len(evaluate(ev))
        passes += 1
        if time.perf_counter() - t0 >= seconds:
            break
    return passes * len(events) / (time.perf_counter() - t0), alerts // passes


def latency(sigma_dir: Path, seconds: float, events_out: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        alerts = tmp / "alerts.jsonl"
        ready = tmp / "ready"
        rules = tmp / "lat.yaml"
        rules.write_text(
            "- rule: bench.latency_marker\n"
            "  title: latency marker exec\n"
            "  condition: event.kind = exec and proc.args contains \"se-latency-marker\"\n"
            "  severity: low\n"
            "  attack: [{technique: T1059, tactic: execution}]\n")
        cmd = [sys.executable, "-m", "sentinel_edge.cli", "run", "--output", str(tmp / "events.jsonl"),
               "--alerts-file", str(alerts), "--ready-file", str(ready), "--status-file", str(tmp / "st.json"),
               "--sigma", str(sigma_dir), "--rules", str(rules)] + ([] if events_out else ["--no-events"])
        log = (tmp / "agent.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"agent did not start: {(tmp / 'agent.log').read_text()[-2000:]}")
                time.sleep(0.05)
            stop = threading.Event()
            arrivals: list[tuple[float, dict[str, object]]] = []

            def tail() -> None:
                fh = alerts.open("rb")
                part = b""
                while not stop.is_set():
                    chunk = fh.read()
                    if chunk:
                        now_ms = time.clock_gettime_ns(time.CLOCK_BOOTTIME) / 1e6
                        lines = (part + chunk).split(b"\n")
                        part = lines.pop()
                        arrivals.extend((now_ms, json.loads(x)) for x in lines if x)
                    else:
                        time.sleep(0.0005)

            def load() -> None:
                # ~10 000 events/s: opens of distinct files (in-kernel dedup does not fold them)
                loaddir = tmp / "load"
                loaddir.mkdir()
                t0 = time.monotonic()
                i = 0
                while not stop.is_set() and time.monotonic() - t0 < seconds + 5:
                    target = t0 + i / 10_000
                    delay = target - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    fd = os.open(loaddir / f"f{i % 50000}", os.O_WRONLY | os.O_CREAT, 0o600)
                    os.close(fd)
                    i += 1

            tt = threading.Thread(target=tail)
            tl = threading.Thread(target=load)
            tt.start()
            tl.start()
            t_end = time.monotonic() + seconds
            markers = 0
            while time.monotonic() < t_end:
                subprocess.run(["/bin/true", "se-latency-marker"], check=True)
                markers += 1
                time.sleep(0.05)
            time.sleep(0.5)
            stop.set()
            tt.join()
            tl.join()
            status = json.loads((tmp / "st.json").read_text())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        # the event uid is boot_id:ktime_ns:cpu:tid: the kernel's boot-time ns of the event
        lat = sorted(
            arr - int(str(a["finding_info"]["related_events"][0]["uid"]).split(":")[1]) / 1e6  # type: ignore[index]
            for arr, a in arrivals if a["finding_info"]["analytic"]["uid"] == "bench.latency_marker"  # type: ignore[index]
        )
        dropped = status.get("kernel_dropped", 0) + status.get("user_dropped", 0)
        decoded = status.get("decoded", 0)
        mode = "every event also written as OCSF JSON" if events_out else "alerts only (--no-events)"
        print(f"latency at ~10k events/s offered, {mode}: {decoded} events decoded in {seconds:.0f} s "
              f"(~{decoded / seconds:,.0f}/s reached), {dropped} lost; {len(lat)} of {markers} marker alerts")
        if lat:
            p50 = statistics.median(lat)
            p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
            print(f"  kernel event -> alert written: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms "
                  f"(target p99 < 100 ms)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0, help="time per throughput measurement")
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    sigma_dir = Path(tempfile.mkdtemp(prefix="se-bench-sigma-"))
    try:
        write_sigma_rules(sigma_dir)
        events = capture()
        default = load_rules()
        both = load_rules(sigma=[sigma_dir])
        assert not default.errors and not both.errors, (default.errors, both.errors)
        sig = sum(1 for r in both.rules if r.meta.source == "sigma")
        print(f"rules: default {len(default.rules)}, default + Sigma {len(both.rules)} ({sig} Sigma)")
        base, _ = throughput(events, Engine([]), args.seconds)
        d_eps, d_alerts = throughput(events, Engine(default.rules), args.seconds)
        b_eps, b_alerts = throughput(events, Engine(both.rules), args.seconds)
        print(f"throughput, one core (Engine.evaluate incl. Alert objects; loop with no rules {base:,.0f}/s):")
        print(f"  default set           {d_eps:>12,.0f} events/s  (x{d_eps / TARGET_EPS:.2f} of the 200k target), "
              f"{d_alerts} alerts per pass")
        print(f"  default + 100 Sigma   {b_eps:>12,.0f} events/s  (x{b_eps / TARGET_EPS:.2f} of the 200k target), "
              f"{b_alerts} alerts per pass")
        latency(sigma_dir, args.latency_seconds, events_out=False)
        latency(sigma_dir, args.latency_seconds, events_out=True)
    finally:
        shutil.rmtree(sigma_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
