"""Usage rows lost to SIGKILL: how many, against how many requests were answered.

Starts ``switchyard serve`` (this checkout, SQLite state, the fake OpenAI upstream of
the tests in this process), sends ``--requests`` chat completions one after another,
each with its own ``x-request-id``, SIGKILLs the server right after the last answer,
and reads the usage rows back from the state store. Prints, per run: requests
acknowledged (200 read in full), rows stored, rows lost, the lost share, the request
rate, and the lost rows as seconds of traffic (lost / rate, to set against the flush
interval). A ``--signal TERM`` run shows the graceful case (nothing lost).

    .venv/bin/python bench/usage_kill.py                      # 3 runs of 3000, 1 s interval
    .venv/bin/python bench/usage_kill.py --interval 0.2 --runs 5
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fake_openai import running_fake
from tests.support.usage_kill import Outcome, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument(
        "--interval", type=float, default=1.0, help="state.usage_flush_interval_s (default 1)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    args = parser.parse_args(argv)
    sig = signal.Signals[f"SIG{args.signal}"]

    outcomes: list[Outcome] = []
    with running_fake() as (_fake, upstream_url):
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="switchyard-usage-kill") as workdir:
                outcome = measure(
                    Path(workdir),
                    upstream_url,
                    requests=args.requests,
                    flush_interval_s=args.interval,
                    sig=sig,
                )
            outcomes.append(outcome)
            print(f"  run {run + 1}: {len(outcome.lost)} lost", file=sys.stderr)

    print(
        f"\nusage rows vs SIG{args.signal}: {args.requests} sequential requests per run, "
        f"usage_flush_interval_s {args.interval:g}, SQLite state\n"
    )
    header = (
        f"{'run':>3} {'acknowledged':>12} {'stored':>7} {'lost':>5} {'lost %':>7} "
        f"{'req/s':>7} {'lost as s of traffic':>21} {'extra rows':>10}"
    )
    print(header)
    print("-" * len(header))
    for i, o in enumerate(outcomes, 1):
        acked = len(o.load.acknowledged)
        lost = len(o.lost)
        extra = len(set(o.stored_ids) - set(o.load.acknowledged)) + (
            len(o.stored_ids) - len(set(o.stored_ids))
        )
        rate = o.load.rate
        print(
            f"{i:>3} {acked:>12} {len(o.rows):>7} {lost:>5} {lost / acked:>7.2%} "
            f"{rate:>7,.0f} {lost / rate if rate else 0.0:>21.3f} {extra:>10}"
        )
    print(
        "\n(extra rows: stored rows for requests never acknowledged, or stored twice; 0 expected)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
