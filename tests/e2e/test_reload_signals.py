"""SIGHUP to a real ``switchyard serve`` re-reads its config file.

A slow stream begun on upstream A before the signal ends on A; requests after it go to
B. An invalid file is logged and changes nothing.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.e2e.conftest import CLIENT_KEY, model_entry, sdk
from tests.support.fake_openai import Fault, running_fake, wait_until
from tests.support.servers import serve_process
from tests.support.streams import BackgroundStream

ASK = [{"role": "user", "content": "hi"}]


def test_sighup_moves_new_requests_while_a_stream_in_flight_ends_where_it_began(
    tmp_path: Path,
) -> None:
    hold = Fault("hold", after=2)
    with running_fake({"upstream-a": hold}) as (fake_a, url_a), running_fake() as (fake_b, url_b):
        config = {
            "server": {"data_dir": str(tmp_path / "data"), "api_keys": [CLIENT_KEY]},
            "defaults": False,
            "models": [model_entry("m", "upstream-a", url_a, timeout_s=60)],
        }
        with serve_process(config, tmp_path) as served, sdk(served) as client:  # type: ignore[arg-type]
            reader = BackgroundStream(client, "m", ASK)
            assert wait_until(lambda: bool(reader.pieces), timeout=15)

            path = tmp_path / "switchyard.yaml"
            written = json.loads(path.read_text())
            written["models"] = [model_entry("m", "upstream-b", url_b, timeout_s=60)]
            path.write_text(json.dumps(written))
            served.proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: '"configuration reloaded"' in served.log.read_text(), 15)

            reply = client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            assert reply.choices[0].message.content == "Hello! You said: hi"
            assert [r.body["model"] for r in fake_b.received("/v1/chat/completions")] == [
                "upstream-b"
            ]

            path.write_text("models: [{name: m, adapter: nope}]")
            served.proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: "reload refused" in served.log.read_text(), 15)
            assert "unknown adapter 'nope'" in served.log.read_text()
            client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            assert len(fake_b.received("/v1/chat/completions")) == 2
            assert served.proc.poll() is None

            hold.release.set()
            assert reader.join() == "Hello! You said: hi"
            assert len(fake_a.received("/v1/chat/completions")) == 1
