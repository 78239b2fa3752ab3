"""Gateway overhead: a mock upstream driven directly and through Switchyard, in one run.

Starts bench/mock_upstream.py and one ``switchyard serve`` process per HTTP client
engine (``http.transport``) and scenario, each in its own process on a free 127.0.0.1
port. The scenarios (``--scenarios``, default all three):

- ``plain``: no key configured (authentication off; anonymous callers' usage rows);
- ``tenancy``: a master key, and a team and a virtual key created through the admin
  API before the load, with RPM, TPM and max_parallel limits high enough never to
  trigger (so each is checked and counted); usage rows recorded; wrk uses the key;
- ``redis``: the same with ``state.redis_url`` (``--redis-url``, default a throwaway
  ``redis-server`` on a free port, as the tests start one);
- ``cache``: ``plain`` with the response cache on the model, every measured request a
  hit (bench/cache_scenario.py).

It then drives them with ``wrk`` (bench/wrk/chat.lua) at each concurrency, for
non-streaming and streaming (20-chunk) chat completions. Every scenario gets a warm-up run first,
and for each (mode, concurrency) the direct run and the proxied runs follow one
another, so drift on a shared machine touches them alike.

Prints one table: requests/s, p50/p99 latency, the p50/p99 added by the gateway
(proxied minus direct, same mode and concurrency), the gateway's CPU time per request
(user+sys from /proc/<pid>/stat over the measured run, divided by requests served),
the CPU use of gateway, mock and wrk, and the gateway's resident memory (VmRSS) idle
after startup and at most during the concurrency-64 runs. Then the targets from the
issue, PASS/MISS, and each tenancy scenario against plain (req/s ratio at c=64, p50
difference at c=1, CPU per request); nothing is asserted.

    .venv/bin/python bench/overhead.py                 # aiohttp, 3 scenarios, ~3 minutes
    .venv/bin/python bench/overhead.py --transport both --scenarios plain
    .venv/bin/python bench/overhead.py --scenarios plain,tenancy --duration 20
    .venv/bin/python bench/overhead.py --baseline 6e66945

``--baseline REV`` also runs that revision's plain gateway (checked out with ``git worktree``
into a temporary directory, same venv) in the same run, and prints the current tree's
figures as ratios to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_scenario import DESCRIPTION as CACHE_DESCRIPTION
from cache_scenario import print_cache, start_cache_gateway
from processes import (
    BENCH,
    CHUNKS,
    MODEL,
    Gateway,
    RssSampler,
    check_answers,
    cpu_seconds,
    provision_key,
    rss_mb,
    start_gateway,
    start_mock,
)

LUA = BENCH / "wrk" / "chat.lua"
CHAT_PATH = "/v1/chat/completions"

# Targets from the issue (2-core machine, wrk and mock upstream on the same machine).
TARGET_ADDED_P50_MS = 0.5
TARGET_RPS = {"chat": 2500.0, "stream": 2000.0}
TARGET_RSS_IDLE_MB = 100.0
# Tenancy against plain, same engine, same run (issue: tenancy wired in).
TARGET_TENANCY_RPS_RATIO = {"tenancy": 0.90, "redis": 0.75}
TARGET_TENANCY_ADDED_P50_MS = 0.1
SCENARIOS = {
    "plain": "plain (no key configured: auth off, anonymous usage rows)",
    "tenancy": "tenancy (in process): master key, a team and a virtual key with "
    "rpm/tpm/max_parallel limits never reached, usage rows to SQLite",
    "redis": "tenancy (Redis): the same, with state.redis_url (limits, spend, key-change "
    "broadcast in Redis)",
    "cache": CACHE_DESCRIPTION,
}
MASTER_KEY = "sk-bench-master"


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    wrk_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_wrk(
    port: int,
    mode: str,
    connections: int,
    seconds: float,
    threads: int,
    key: str = "sk-bench",
    *,
    path: str = CHAT_PATH,
    dialect: str = "chat",
) -> Run:
    """``wrk`` against ``path`` with ``dialect``'s body (bench/wrk/chat.lua)."""
    threads = max(1, min(threads, connections))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}{path}",
        "--",
        MODEL,
        mode,
        key,
        dialect,
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    # communicate() reaped the child; its CPU is in our RUSAGE_CHILDREN, measured by caller.
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed ({proc.returncode}): {err.decode()[-2000:]}")
    line = next(
        (ln for ln in out.decode().splitlines() if ln.startswith("BENCH_JSON ")),
        None,
    )
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out.decode()[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return Run(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors={k: v for k, v in data["errors"].items() if v},
        wrk_cpu_s=0.0,
    )


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- scenarios


@dataclass
class Row:
    mode: str
    connections: int
    target: str  # "direct" or the transport name
    run: Run
    gateway: Gateway | None = None
    gw_cpu_s: float | None = None
    mock_cpu_s: float = 0.0
    wall_s: float = 0.0
    rss_peak_mb: float | None = None
    base: Row | None = None

    @property
    def label(self) -> str:
        kind = "chat" if self.mode == "chat" else f"stream{CHUNKS}"
        via = "direct" if self.target == "direct" else f"via gw/{self.target}"
        return f"{kind} c={self.connections} {via}"


def measure(
    mode: str,
    connections: int,
    target: str,
    port: int,
    mock_pid: int,
    gateway: Gateway | None,
    args: argparse.Namespace,
    *,
    path: str = CHAT_PATH,
    dialect: str = "chat",
) -> Row:
    """One warm-up and one measured wrk run (``dialect``'s body to ``path``), with the CPU
    time of gateway, mock and wrk over the measured run."""
    key = gateway.key if gateway else "sk-bench"
    wrk = {"path": path, "dialect": dialect}
    run_wrk(port, mode, connections, args.warmup, args.threads, key, **wrk)
    gw_pid = gateway.proc.pid if gateway else None
    watched = [gw_pid] if gw_pid else []
    profiler = None
    if args.profile and gateway is not None and connections > 1:
        name = f"{mode}-c{connections}-{target}"
        profiler = subprocess.Popen(
            [
                args.py_spy,
                "record",
                "--pid",
                str(gw_pid),
                "--duration",
                str(max(1, round(args.duration))),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(Path(args.profile) / f"{name}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    mock0 = cpu_seconds(mock_pid)
    gw0 = cpu_seconds(gw_pid) if gw_pid else 0.0
    wrk0 = children_cpu()
    started = time.perf_counter()
    with RssSampler(watched) as sampler:
        run = run_wrk(port, mode, connections, args.duration, args.threads, key, **wrk)
    wall = time.perf_counter() - started
    run.wrk_cpu_s = children_cpu() - wrk0
    row = Row(mode, connections, target, run, gateway=gateway, wall_s=wall)
    row.mock_cpu_s = cpu_seconds(mock_pid) - mock0
    if gw_pid:
        row.gw_cpu_s = cpu_seconds(gw_pid) - gw0
        row.rss_peak_mb = sampler.peak[gw_pid]
    if profiler is not None:
        profiler.wait()
    return row


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row], gateways: list[Gateway], out: list[str]) -> None:
    header = (
        f"{'scenario':<38} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} "
        f"{'+p99 ms':>8} {'gw CPU/req':>11} {'gw CPU':>7} {'mock CPU':>8} {'wrk CPU':>8} "
        f"{'errors':>7}"
    )
    out.append(header)
    out.append("-" * len(header))
    for row in rows:
        r = row.run
        added50 = r.p50_ms - row.base.run.p50_ms if row.base else None
        added99 = r.p99_ms - row.base.run.p99_ms if row.base else None
        per_req = row.gw_cpu_s / r.requests * 1e6 if row.gw_cpu_s is not None else None
        gw_pct = row.gw_cpu_s / row.wall_s * 100 if row.gw_cpu_s is not None else None
        out.append(
            f"{row.label:<38} {r.rps:>9,.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
            f"{fmt(added50, '+8.3f'):>8} {fmt(added99, '+8.3f'):>8} "
            f"{fmt(per_req, '8.0f') + ' us' if per_req is not None else '-':>11} "
            f"{fmt(gw_pct, '6.0f') + '%' if gw_pct is not None else '-':>7} "
            f"{row.mock_cpu_s / row.wall_s * 100:>7.0f}% "
            f"{r.wrk_cpu_s / row.wall_s * 100:>7.0f}% "
            f"{r.error_count:>7}"
        )
    out.append("")
    out.append("gateway resident memory (VmRSS, MiB):")
    for gw in gateways:
        out.append(
            f"  {gw.transport:<16} idle after startup {gw.rss_idle_mb:6.1f}   "
            f"max under load (c>1) {fmt(gw.rss_peak_mb, '6.1f'):>6}   "
            f"idle after the run {gw.rss_after_mb:6.1f}"
        )
    errors = [row for row in rows if row.run.error_count]
    for row in errors:
        out.append(f"  !! {row.label}: wrk errors {row.run.errors}")


def print_targets(rows: list[Row], gateways: list[Gateway], out: list[str]) -> None:
    out.append("")
    out.append("targets (issue #2; reported, never asserted):")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    for gw in gateways:
        mine = [row for row in rows if row.target == gw.transport]
        for row in mine:
            if row.connections == 1 and row.base is not None:
                added = row.run.p50_ms - row.base.run.p50_ms
                out.append(
                    f"  [{verdict(added <= TARGET_ADDED_P50_MS)}] {gw.transport:<8} "
                    f"{row.mode:<6} c=1  added p50 {added:.3f} ms  (<= {TARGET_ADDED_P50_MS} ms)"
                )
        for row in mine:
            if row.connections >= 64:
                goal = TARGET_RPS[row.mode]
                out.append(
                    f"  [{verdict(row.run.rps >= goal)}] {gw.transport:<8} {row.mode:<6} "
                    f"c={row.connections} {row.run.rps:,.0f} req/s  (>= {goal:,.0f})"
                )
        out.append(
            f"  [{verdict(gw.rss_idle_mb <= TARGET_RSS_IDLE_MB)}] {gw.transport:<8} "
            f"idle RSS {gw.rss_idle_mb:.1f} MiB  (<= {TARGET_RSS_IDLE_MB:.0f} MB)"
        )
    engines = [
        gw for gw in gateways if gw.scenario == "plain" and not gw.transport.endswith("@base")
    ]
    if len(engines) > 1:
        out.append("")
        out.append("engines compared (req/s, higher is better):")
        first, second = engines[0].transport, engines[1].transport
        for row in rows:
            if row.target != first:
                continue
            other = next(
                (
                    r
                    for r in rows
                    if r.target == second
                    and r.mode == row.mode
                    and r.connections == row.connections
                ),
                None,
            )
            if other and other.run.rps:
                out.append(
                    f"  {row.mode:<6} c={row.connections:<3} {first} {row.run.rps:>8,.0f}  "
                    f"{second} {other.run.rps:>8,.0f}  ratio {row.run.rps / other.run.rps:.2f}x"
                )


def print_tenancy(rows: list[Row], out: list[str]) -> None:
    """Each tenancy scenario against ``plain`` of the same engine, mode and concurrency."""
    tenancy = [
        r for r in rows if r.gateway is not None and r.gateway.scenario in TARGET_TENANCY_RPS_RATIO
    ]
    if not tenancy:
        return
    out.append("")
    out.append("tenancy against plain (same engine, same run; reported, never asserted):")
    for row in tenancy:
        gw = row.gateway
        assert gw is not None
        plain = next(
            (
                r
                for r in rows
                if r.gateway is not None
                and r.gateway.scenario == "plain"
                and r.gateway.engine == gw.engine
                and not r.gateway.transport.endswith("@base")
                and r.mode == row.mode
                and r.connections == row.connections
            ),
            None,
        )
        if plain is None or not plain.run.rps or not plain.run.requests or not row.run.requests:
            continue
        ratio = row.run.rps / plain.run.rps
        added = row.run.p50_ms - plain.run.p50_ms
        cpu = (row.gw_cpu_s or 0.0) / row.run.requests * 1e6
        plain_cpu = (plain.gw_cpu_s or 0.0) / plain.run.requests * 1e6
        if row.connections == 1:
            goal = TARGET_TENANCY_ADDED_P50_MS
            verdict = (
                f"[{'PASS' if added <= goal else 'MISS'}] " if gw.scenario == "tenancy" else ""
            )
            target = f"  (<= +{goal} ms)" if verdict else ""
            what = (
                f"p50 {row.run.p50_ms:.3f} vs {plain.run.p50_ms:.3f} ms ({added:+.3f} ms){target}"
            )
        else:
            goal = TARGET_TENANCY_RPS_RATIO[gw.scenario]
            verdict = f"[{'PASS' if ratio >= goal else 'MISS'}] "
            what = (
                f"req/s {row.run.rps:>7,.0f} vs {plain.run.rps:>7,.0f} ({ratio:.1%})"
                f"  (>= {goal:.0%})"
            )
        out.append(
            f"  {verdict:<7}{gw.transport:<16} {row.mode:<6} c={row.connections:<3} {what}"
            f"   CPU/req {cpu:5.0f} vs {plain_cpu:5.0f} us"
        )


def checkout(stack: ExitStack, rev: str, workdir: Path) -> Path:
    """``rev`` of this repository, checked out (detached) under ``workdir``."""
    repo = BENCH.parent
    target = workdir / "baseline"
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", "-q", str(target), rev],
        check=True,
    )
    stack.callback(
        subprocess.run,
        ["git", "-C", str(repo), "worktree", "remove", "--force", str(target)],
        check=False,
    )
    return target


def print_baseline(rows: list[Row], rev: str, out: list[str]) -> None:
    out.append("")
    out.append(f"this tree against {rev} (same run; req/s ratio >1 and CPU ratio <1 are better):")
    for row in rows:
        if row.target == "direct" or row.target.endswith("@base"):
            continue
        base = next(
            (
                r
                for r in rows
                if r.target == f"{row.target}@base"
                and r.mode == row.mode
                and r.connections == row.connections
            ),
            None,
        )
        if base is None or not base.run.rps or not row.run.requests or not base.run.requests:
            continue
        cpu = (row.gw_cpu_s or 0.0) / row.run.requests * 1e6
        base_cpu = (base.gw_cpu_s or 0.0) / base.run.requests * 1e6
        out.append(
            f"  {row.target:<8} {row.mode:<6} c={row.connections:<3} "
            f"req/s {row.run.rps:>8,.0f} vs {base.run.rps:>8,.0f} "
            f"({row.run.rps / base.run.rps:.2f}x)"
            f"   CPU/req {cpu:5.0f} vs {base_cpu:5.0f} us"
            f" ({cpu / base_cpu if base_cpu else float('nan'):.2f}x)"
        )


def start_scenario(
    stack: ExitStack,
    workdir: Path,
    transport: str,
    scenario: str,
    mock_port: int,
    log_level: str,
    redis_url: str | None,
) -> Gateway:
    """The gateway of one scenario; for tenancy, its team and virtual key made first
    (through the admin API), which the load then uses."""
    if scenario == "plain":
        gw = start_gateway(stack, workdir, transport, mock_port, log_level)
    elif scenario == "cache":
        gw = start_cache_gateway(stack, workdir, transport, mock_port, log_level)
    else:
        state: dict[str, object] = {"usage_flush_interval_s": 1.0}
        if scenario == "redis":
            state["redis_url"] = redis_url
        gw = start_gateway(
            stack,
            workdir,
            transport,
            mock_port,
            log_level,
            label=f"{transport}+{scenario}",
            master_key=MASTER_KEY,
            state=state,
        )
        gw.key = provision_key(gw.port, MASTER_KEY)
    gw.scenario = scenario
    gw.engine = transport
    return gw


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """The options of the wrk runs, shared with bench/dialects.py."""
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument(
        "--concurrency", default="1,64", help="comma-separated connection counts (default 1,64)"
    )
    parser.add_argument(
        "--mode", choices=["chat", "stream", "both"], default="both", help="request kind"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="gateway log level (default info: one access-log line per request, to a file)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record the gateway with py-spy during each c>1 proxied run (raw stacks in DIR)",
    )


def check_tools(args: argparse.Namespace) -> None:
    """wrk on the path, and py-spy (as ``args.py_spy``) when ``--profile`` asks for it."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: `make system-deps` or `apt-get install -y wrk`")
    if args.profile:
        args.py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(args.py_spy).exists():
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        Path(args.profile).mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--transport",
        choices=["aiohttp", "httpx", "both"],
        default="aiohttp",
        help="HTTP client engine(s) (default aiohttp, the shipped default)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, of: " + ", ".join(SCENARIOS) + " (default all)",
    )
    parser.add_argument(
        "--redis-url",
        help="Redis for the redis scenario (default: a throwaway redis-server on a free port)",
    )
    add_load_options(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run this git revision's gateway, compared"
    )
    args = parser.parse_args(argv)

    check_tools(args)
    transports = ["aiohttp", "httpx"] if args.transport == "both" else [args.transport]
    modes = ["chat", "stream"] if args.mode == "both" else [args.mode]
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or "plain" not in scenarios:
        raise SystemExit(f"--scenarios: plain and any of {', '.join(SCENARIOS)}, not {unknown}")

    rows: list[Row] = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="switchyard-bench")))
        mock, mock_port = start_mock(stack)
        check_answers(mock_port, "mock upstream")
        redis_url = args.redis_url
        if "redis" in scenarios and redis_url is None:
            sys.path.insert(0, str(BENCH.parent))
            from tests.support.services import start_redis

            service = start_redis()
            stack.callback(service.stop)
            redis_url = service.url
        gateways = []
        for t in transports:
            for scenario in scenarios:
                gateways.append(
                    start_scenario(
                        stack, workdir, t, scenario, mock_port, args.log_level, redis_url
                    )
                )
        if args.baseline:
            source = checkout(stack, args.baseline, workdir)
            gateways += [
                start_gateway(
                    stack, workdir, t, mock_port, args.log_level, source=source, label=f"{t}@base"
                )
                for t in transports
            ]
        for gw in gateways:
            check_answers(gw.port, f"gateway ({gw.transport})", gw.key, gw.stream_chunks)
        runs = len(modes) * len(levels) * (1 + len(gateways))
        eta = runs * (max(1, round(args.warmup)) + max(1, round(args.duration)) + 0.3)
        print(
            f"mock upstream :{mock_port}; gateways "
            + ", ".join(f"{g.transport} :{g.port} (pid {g.proc.pid})" for g in gateways)
            + f"; {runs} runs, about {eta:.0f} s",
            file=sys.stderr,
        )
        for mode in modes:
            for conns in levels:
                direct = measure(mode, conns, "direct", mock_port, mock.pid, None, args)
                rows.append(direct)
                print(f"  {direct.label}: {direct.run.rps:,.0f} req/s", file=sys.stderr)
                for gw in gateways:
                    row = measure(mode, conns, gw.transport, gw.port, mock.pid, gw, args)
                    row.base = direct
                    if conns > 1 and row.rss_peak_mb is not None:
                        gw.rss_peak_mb = max(gw.rss_peak_mb or 0.0, row.rss_peak_mb)
                    rows.append(row)
                    print(f"  {row.label}: {row.run.rps:,.0f} req/s", file=sys.stderr)
        time.sleep(1.0)
        for gw in gateways:
            gw.rss_after_mb = rss_mb(gw.proc.pid)

    out = [
        "",
        f"Switchyard overhead: wrk -t{args.threads}, {args.duration:g} s per run after "
        f"{args.warmup:g} s warm-up, {os.cpu_count()} CPUs, stream = {CHUNKS} content chunks",
        "",
        *(f"  {gw.transport:<16} {SCENARIOS[gw.scenario]}" for gw in gateways),
        "",
    ]
    print_table(rows, gateways, out)
    print_targets(rows, gateways, out)
    print_tenancy(rows, out)
    print_cache(rows, out)
    if args.baseline:
        print_baseline(rows, args.baseline, out)
    print("\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(rows, gateways, args), indent=2) + "\n")
    return 0


def to_json(rows: list[Row], gateways: list[Gateway], args: argparse.Namespace) -> object:
    return {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "wrk_threads": args.threads,
        "cpus": os.cpu_count(),
        "rows": [
            {
                "mode": r.mode,
                "connections": r.connections,
                "target": r.target,
                "requests": r.run.requests,
                "rps": r.run.rps,
                "p50_ms": r.run.p50_ms,
                "p99_ms": r.run.p99_ms,
                "added_p50_ms": r.run.p50_ms - r.base.run.p50_ms if r.base else None,
                "added_p99_ms": r.run.p99_ms - r.base.run.p99_ms if r.base else None,
                "gw_cpu_us_per_request": (
                    r.gw_cpu_s / r.run.requests * 1e6
                    if r.gw_cpu_s is not None and r.run.requests
                    else None
                ),
                "gw_cpu_pct": r.gw_cpu_s / r.wall_s * 100 if r.gw_cpu_s is not None else None,
                "mock_cpu_pct": r.mock_cpu_s / r.wall_s * 100,
                "wrk_cpu_pct": r.run.wrk_cpu_s / r.wall_s * 100,
                "gw_rss_peak_mb": r.rss_peak_mb,
                "errors": r.run.errors,
            }
            for r in rows
        ],
        "gateways": [
            {
                "transport": g.transport,
                "rss_idle_mb": g.rss_idle_mb,
                "rss_peak_mb": g.rss_peak_mb,
                "rss_after_mb": g.rss_after_mb,
            }
            for g in gateways
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
