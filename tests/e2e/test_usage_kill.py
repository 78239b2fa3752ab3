"""Usage rows when ``switchyard serve`` ends abruptly (SIGKILL) or gracefully (SIGTERM).

Usage rows are batched (``proxy.tenancy.usage``): a SIGKILL may lose the rows of the
last flush interval, never more, and never invents one; a graceful stop loses none.
The server is a real subprocess with SQLite state; the state store is read back after
it has ended. See ``tests/support/usage_kill.py`` (shared with ``bench/usage_kill.py``).
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from tests.support.usage_kill import measure

INTERVAL_S = 0.2
"""Short, so the run spans many flush intervals in a few seconds."""
MARGIN_S = 0.1
"""Beyond the interval: the last write's own duration and the row being queued just
after its answer was sent."""
REQUESTS = 300


def test_sigkill_loses_at_most_the_last_interval(tmp_path: Path, fake_url: str) -> None:
    outcome = measure(
        tmp_path,
        fake_url,
        requests=REQUESTS,
        flush_interval_s=INTERVAL_S,
        sig=signal.SIGKILL,
        at_least_s=10 * INTERVAL_S,
    )
    acknowledged = outcome.load.acknowledged
    assert outcome.load.refused == 0
    assert len(acknowledged) >= REQUESTS
    stored = outcome.stored_ids
    assert not [rid for rid, n in Counter(stored).items() if n > 1], "a row stored twice"
    assert set(stored) <= set(acknowledged), "a row for a request never acknowledged"
    assert len(stored) <= len(acknowledged)
    # The run spans ten intervals, so rows flushed before the kill must be there: what
    # is missing was acknowledged within the last interval (and the margin) before it.
    recent = outcome.acknowledged_after(outcome.stopped_at - INTERVAL_S - MARGIN_S)
    assert set(outcome.lost) <= recent
    assert len(stored) >= len(acknowledged) - len(recent) > 0


def test_sigterm_loses_no_row(tmp_path: Path, fake_url: str) -> None:
    outcome = measure(
        tmp_path,
        fake_url,
        requests=REQUESTS,
        # Longer than the run: the rows reach the store through the shutdown flush.
        flush_interval_s=600.0,
        sig=signal.SIGTERM,
    )
    acknowledged = outcome.load.acknowledged
    assert outcome.load.refused == 0
    assert len(acknowledged) == REQUESTS
    assert sorted(outcome.stored_ids) == sorted(acknowledged)
    by_id = {row.request_id: row for row in outcome.rows}
    row = by_id[next(iter(acknowledged))]
    assert (row.status, row.route, row.model) == (200, "chat", "usage-kill")
