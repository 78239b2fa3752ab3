"""Two replicas behind nginx, sharing PostgreSQL, Redis, a Chroma server and a media
folder (tests/support/replicas.py), driven with the official ``openai`` package: what a
team running N replicas relies on, one step per test.

The cluster starts once for the module; the steps are independent of each other (each
makes its own team, key, session or collection) except that ``kill -9`` comes last and
restarts the replica it killed. Each step's duration, and the figures some steps
measure, are printed at the end of the module (and kept as ``user_properties``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import fresh_database, fresh_redis_db
from tests.support.fake_openai import Recorded
from tests.support.replica_clients import (
    LoadClient,
    calls_for,
    reply_to,
    sent_for,
    session_turn,
    stored_history,
    turn_pairs,
    wait_for,
)
from tests.support.replicas import (
    CACHED_CHAT_MODEL,
    CHAT_MODEL,
    IMAGE_MODEL,
    JOB_STALE_AFTER_S,
    PRICE,
    RAG_JOB_THRESHOLD,
    SLOW_CHAT_UPSTREAM,
    VIDEO_MODEL,
    Cluster,
    rag_index_dir,
    start_replicas,
)
from tests.support.servers import Addressable
from tests.support.tenancy import Admin, ask, me, ok, refused_within, sdk

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks Sora APIs

STEP_SECONDS: dict[str, float] = {}
FIGURES: dict[str, Any] = {}
OVERLAY: dict[str, Any] = {}
"""Laid over both replicas' config (``start_replicas(overlay=...)``): where a step added
later puts the sections it needs (a model's ``cache``, ``media.store``, ...)."""


@pytest.fixture(scope="module")
def cluster(
    postgres_url: str,
    redis_url: str,
    _redis_dbs: Iterator[int],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("replicas")
    with (
        fresh_database(postgres_url) as database,
        fresh_redis_db(redis_url, _redis_dbs) as redis,
        start_replicas(workdir, database=database, redis_url=redis, overlay=OVERLAY) as running,
    ):
        FIGURES["cluster start (s)"] = round(running.started_in_s, 2)
        yield running
    _report(request)


def _report(request: pytest.FixtureRequest) -> None:
    """The step times and figures, on the terminal even under output capture."""
    lines = ["replicas: seconds per step"]
    lines += [f"  {name}: {seconds:.2f}" for name, seconds in STEP_SECONDS.items()]
    lines += ["replicas: figures"] + [f"  {name}: {value}" for name, value in FIGURES.items()]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


@pytest.fixture(autouse=True)
def _timed(request: pytest.FixtureRequest, record_property: Any) -> Iterator[None]:
    began = time.monotonic()
    yield
    took = time.monotonic() - began
    STEP_SECONDS[request.node.name] = took
    record_property("seconds", round(took, 3))


@pytest.fixture(scope="module")
def user_key(cluster: Cluster) -> str:
    """A virtual key (made on A) for the steps that are not about keys."""
    with Admin(cluster.a) as admin:
        team = admin.team("replicas")
        return str(admin.key(team["id"], name="steps")["key"])


def _hex() -> str:
    return uuid.uuid4().hex[:8]


# ------------------------------------------------------------------------------ sessions


def test_a_session_alternating_replicas_keeps_its_whole_history(
    cluster: Cluster, user_key: str
) -> None:
    session = f"alternating-{_hex()}"
    # A, B, A, B directly, then once through nginx; turns 2 and 5 streamed.
    route: list[tuple[Addressable, bool]] = [(cluster.a, False), (cluster.b, True)]
    route += [(cluster.a, False), (cluster.b, False), (cluster.lb, True)]
    texts = [f"{session} turn {n}" for n in range(1, len(route) + 1)]
    served = []
    for (target, stream), text in zip(route, texts, strict=True):
        with sdk(target, user_key) as client:
            reply, headers = session_turn(client, session, text, stream=stream)
        assert reply == reply_to(text)
        served.append(headers)

    calls = []
    for n, text in enumerate(texts):
        (call,) = calls_for(cluster, text)  # what the model saw at this turn
        calls.append(cluster.called_by(call))
        expected: list[tuple[str, str]] = []
        for earlier in texts[:n]:
            expected += [("user", earlier), ("assistant", reply_to(earlier))]
        sent = call.body["messages"]
        assert [(m["role"], m["content"]) for m in sent] == [*expected, ("user", text)]
    assert calls == ["a", "b", "a", "b", cluster.served_by(served[-1])]

    whole = [(t, reply_to(t)) for t in texts]
    for replica in cluster.replicas:
        assert turn_pairs(stored_history(replica, user_key, session)) == whole


# ----------------------------------------------------------------------------------- rag


DOCS: list[dict[str, Any]] = [
    {"id": "tides", "text": "Tides are caused by the gravity of the moon pulling on the oceans."},
    {"id": "bread", "text": "Sourdough bread rises as wild yeast ferments the flour."},
    {"id": "volcano", "text": "A volcano erupts when magma breaks through the crust."},
]


def _rag(target: Addressable, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{target.url}/v1/switchyard/rag",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_a_rag_collection_made_on_a_is_searched_on_b(cluster: Cluster, user_key: str) -> None:
    name = f"shared-{_hex()}"
    with _rag(cluster.a, user_key) as on_a, _rag(cluster.b, user_key) as on_b:
        assert on_a.post("/collections", json={"name": name}).status_code == 201
        added = on_a.post(f"/collections/{name}/documents", json={"documents": DOCS})
        assert added.status_code == 200, added.text
        assert added.json()["chunks"] == len(DOCS)

        assert ok(on_b.get(f"/collections/{name}"))["chunks"] == len(DOCS)
        # The fake embeds a text to one vector: the query equal to a document is nearest it.
        hits = ok(on_b.post(f"/collections/{name}/search", json={"query": DOCS[0]["text"]}))
        assert [h["source_id"] for h in hits["data"]][:1] == ["tides"]
        assert {h["source_id"] for h in hits["data"]} == {d["id"] for d in DOCS}
        assert hits["data"][0]["text"] == DOCS[0]["text"]

        question = f"{DOCS[0]['text']} ({name})"
        with sdk(cluster.b, user_key) as client:
            reply = client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": question}],
                extra_headers={"X-Switchyard-RAG": name},
            )
        assert reply.choices[0].message.content == reply_to(question)
        (call,) = calls_for(cluster, question)
        sent = call.body["messages"]
        assert cluster.called_by(call) == "b" and sent[0]["role"] == "system"
        assert all(d["text"] in sent[0]["content"] for d in DOCS)  # retrieved on B

        deleted = on_b.post(f"/collections/{name}/documents/delete", json={"ids": ["bread"]})
        assert deleted.status_code == 200, deleted.text
        after = ok(on_a.post(f"/collections/{name}/search", json={"query": DOCS[1]["text"]}))
        assert {h["source_id"] for h in after["data"]} == {"tides", "volcano"}


# ---------------------------------------------------------------------------------- keys


def test_a_key_made_on_a_works_on_b_and_its_revocation_on_a_reaches_b_within_a_second(
    cluster: Cluster,
) -> None:
    with Admin(cluster.a) as admin:
        team = admin.team(f"keys-{_hex()}")
        key = admin.key(team["id"])
    with sdk(cluster.b, key["key"]) as on_b:
        assert ask(on_b, model=CHAT_MODEL).choices[0].message.content == reply_to("hi")
        assert me(cluster.b, key["key"])["key"]["id"] == key["id"]
        with Admin(cluster.a) as admin:
            admin.revoke(key["id"])
        took = refused_within(on_b.models.list, openai.AuthenticationError, 1.5)
    FIGURES["revocation on A refused on B after (s)"] = round(took, 3)
    assert took <= 1.0
    for target in (cluster.a, cluster.lb):
        with sdk(target, key["key"]) as client, pytest.raises(openai.AuthenticationError):
            ask(client, model=CHAT_MODEL)


# ------------------------------------------------------------------------------- limits


RPM = 10


def _burst(cluster: Cluster, key: str) -> tuple[list[tuple[str, int]], list[str], bool]:
    """``2 * RPM`` requests alternating A and B: (replica, remaining) of each 200, the
    replica of each 429, and whether all of them fell in one rate-limit minute."""
    granted: list[tuple[str, int]] = []
    refused: list[str] = []
    window = int(time.time() // 60)
    clients = {r.name: sdk(r, key) for r in cluster.replicas}
    try:
        for n in range(2 * RPM):
            name = "ab"[n % 2]
            try:
                raw = clients[name].chat.completions.with_raw_response.create(
                    model=CHAT_MODEL, messages=[{"role": "user", "content": f"rpm {n}"}]
                )
            except openai.RateLimitError as exc:
                assert exc.status_code == 429
                refused.append(name)
            else:
                granted.append((name, int(raw.headers["x-ratelimit-remaining-requests"])))
    finally:
        for client in clients.values():
            client.close()
    return granted, refused, int(time.time() // 60) == window


def test_an_rpm_limit_across_both_replicas_lets_exactly_that_many_through(
    cluster: Cluster,
) -> None:
    with Admin(cluster.a) as admin:
        team = admin.team(f"rpm-{_hex()}")
        for _attempt in range(3):  # a burst that straddles a minute boundary is redone
            key = admin.key(team["id"], rpm_limit=RPM)["key"]
            granted, refused, one_window = _burst(cluster, key)
            if one_window:
                break
    assert one_window
    assert len(granted) == RPM and len(refused) == RPM
    # One counter for both: the remaining count falls by one per request, whichever
    # replica served it (per-replica counters would give 9, 9, 8, 8, ...).
    assert [left for _, left in granted] == list(range(RPM - 1, -1, -1))
    assert [name for name, _ in granted] == ["a", "b"] * (RPM // 2)
    assert set(refused) == {"a", "b"}


# -------------------------------------------------------------------------------- usage


def test_usage_totals_equal_the_sum_of_what_both_replicas_served(cluster: Cluster) -> None:
    plan = {"first": {"a": 3, "b": 2}, "second": {"a": 1, "b": 4}}
    expected: dict[tuple[str, str], float] = {}
    """(key id, total) -> value, from the answers the clients got."""
    request_ids: set[str] = set()
    with Admin(cluster.a) as admin:
        team = admin.team(f"usage-{_hex()}")
        keys = {label: admin.key(team["id"], name=label) for label in plan}
    for label, per_replica in plan.items():
        key_id = keys[label]["id"]
        for name, count in per_replica.items():
            with sdk(cluster.replica(name), keys[label]["key"]) as client:
                for n in range(count):
                    request_id = f"usage-{_hex()}"
                    headers = {"x-request-id": request_id}
                    answer = ask(
                        client, f"usage {label} {name} {n}", CHAT_MODEL, extra_headers=headers
                    )
                    assert answer.usage is not None
                    request_ids.add(request_id)
                    for total, value in (
                        ("requests", 1),
                        ("prompt_tokens", answer.usage.prompt_tokens),
                        ("completion_tokens", answer.usage.completion_tokens),
                        (
                            "cost_usd",
                            answer.usage.prompt_tokens * PRICE["input_per_1m"] / 1e6
                            + answer.usage.completion_tokens * PRICE["output_per_1m"] / 1e6,
                        ),
                    ):
                        expected[key_id, total] = expected.get((key_id, total), 0) + value

    def by_key(target: Addressable) -> dict[tuple[str, str], float]:
        with Admin(target) as admin:
            rows = admin.usage(team_id=team["id"], group_by="key")
        totals = ("requests", "prompt_tokens", "completion_tokens", "cost_usd")
        return {(row["group"], total): row[total] for row in rows for total in totals}

    # Each replica writes its rows in batches (state.usage_flush_interval_s: 0.2 s) and a
    # usage read flushes only the replica it reaches: A shows B's rows once B has written
    # them, and never more than was served.
    began = time.monotonic()
    while (seen := by_key(cluster.a)) != pytest.approx(expected):
        assert all(value <= expected[where] + 1e-9 for where, value in seen.items()), seen
        assert time.monotonic() - began < 5, (seen, expected)
        time.sleep(0.05)
    FIGURES["usage served by B visible on A after (s)"] = round(time.monotonic() - began, 3)
    assert by_key(cluster.b) == pytest.approx(expected)
    with Admin(cluster.b) as admin:
        page = ok(admin.http.get("/usage/requests", params={"team_id": team["id"], "limit": 100}))
    assert sorted(r["request_id"] for r in page["data"]) == sorted(request_ids)


# ------------------------------------------------------------------------- media, videos


def _on(replica: Addressable, url: str) -> str:
    """``url`` (a media link handed out by one replica) addressed to ``replica``."""
    path = httpx.URL(url).raw_path.decode()
    return f"{replica.url}{path}"


def _video_until(client: openai.OpenAI, video_id: str, statuses: set[str]) -> Any:
    deadline = time.monotonic() + 30
    while True:
        video = client.videos.retrieve(video_id)
        if video.status in statuses or time.monotonic() > deadline:
            return video
        time.sleep(0.05)


def test_media_made_on_a_is_served_by_b(cluster: Cluster, user_key: str) -> None:
    with sdk(cluster.a, user_key) as on_a:
        url = on_a.images.generate(model=IMAGE_MODEL, prompt="a fox", size="16x16").data[0].url
    assert url is not None
    from_a = httpx.get(_on(cluster.a, url), timeout=15)
    from_b = httpx.get(_on(cluster.b, url), timeout=15)
    assert from_a.status_code == 200 and from_b.status_code == 200
    assert from_b.headers["content-type"] == "image/png"
    assert from_b.content == from_a.content and from_b.content.startswith(b"\x89PNG")
    with Admin(cluster.a) as admin:  # another team's key is told the file does not exist
        other = admin.key(admin.team(f"other-{_hex()}")["id"])["key"]
    refused = httpx.get(_on(cluster.b, url), headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 404


def test_a_video_job_started_on_a_is_polled_to_completion_and_downloaded_on_b(
    cluster: Cluster, user_key: str
) -> None:
    with sdk(cluster.a, user_key) as on_a, sdk(cluster.b, user_key) as on_b:
        video = on_a.videos.create(model=VIDEO_MODEL, prompt="tide", size="32x32", seconds="1")
        done = _video_until(on_b, video.id, {"completed", "failed"})
        assert done.status == "completed", done
        assert done.progress == 100
        content = on_b.videos.download_content(video.id).read()
        assert content == on_a.videos.download_content(video.id).read()
    assert content[4:8] == b"ftyp"  # an MP4


# ----------------------------------------------------------------------------------- cache


def test_a_response_cached_through_a_is_a_hit_through_b(cluster: Cluster, user_key: str) -> None:
    text = f"cache {_hex()}"
    answers = []
    for target in (cluster.a, cluster.b):
        with sdk(target, user_key) as client:
            raw = client.chat.completions.with_raw_response.create(
                model=CACHED_CHAT_MODEL, messages=[{"role": "user", "content": text}]
            )
        answers.append((raw.headers.get("x-switchyard-cache"), raw.parse()))
    (miss, first), (hit, second) = answers
    assert (miss, hit) == ("miss", "hit")
    assert second.choices[0].message.content == first.choices[0].message.content == reply_to(text)
    assert second.choices[0].finish_reason == first.choices[0].finish_reason == "stop"
    assert len(calls_for(cluster, text)) == 1  # B answered without calling the model


# ------------------------------------------------------------------------------ rag jobs


def _embedded_texts(cluster: Cluster, token: str) -> dict[str, set[str]]:
    """The replicas that asked the model to embed a text containing ``token``, per text."""
    found: dict[str, set[str]] = {}
    for record in cluster.upstream.received("/v1/embeddings"):
        inputs = (record.body or {}).get("input")
        for text in inputs if isinstance(inputs, list) else [inputs]:
            if isinstance(text, str) and token in text:
                found.setdefault(text, set()).add(cluster.called_by(record))
    return found


def test_a_directory_index_job_started_on_a_is_polled_to_completion_on_b(
    cluster: Cluster, user_key: str
) -> None:
    token = _hex()
    name = f"indexed-{token}"
    docs = rag_index_dir(cluster.data_dir) / name  # the volume both replicas mount
    docs.mkdir()
    files = RAG_JOB_THRESHOLD + 3
    texts = [
        f"Page {i} of the {token} handbook: the tide tables for harbour {i}." for i in range(files)
    ]
    for i, text in enumerate(texts):
        (docs / f"page-{i}.md").write_text(text)
    with _rag(cluster.a, user_key) as on_a, _rag(cluster.b, user_key) as on_b:
        assert on_a.post("/collections", json={"name": name}).status_code == 201
        started = on_a.post(f"/collections/{name}/index", json={"path": str(docs)})
        assert started.status_code == 202, started.text
        job = started.json()
        assert (job["object"], job["status"]) == ("rag.index_job", "queued")
        path = f"/collections/{name}/jobs/{job['id']}"

        seen: list[str] = []

        def finished() -> bool:
            polled = on_b.get(path)
            assert polled.status_code == 200, polled.text  # B knows A's job from the first poll
            seen.append(polled.json()["status"])
            return seen[-1] not in ("queued", "running")

        wait_for(finished, "the index job, polled on B")
        done = ok(on_b.get(path))
        assert done["status"] == "succeeded", done
        assert done["id"] == job["id"] and done["collection"] == name
        assert done["progress"] == {"files_done": files, "files_total": files, "chunks": files}
        assert (done["result"]["added"], done["result"]["chunks"]) == (files, files)
        assert ok(on_a.get(path)) == done
        assert set(seen) <= {"queued", "running", "succeeded"}

        # A did the work (every page embedded by A, once); B serves what A stored.
        assert _embedded_texts(cluster, token) == {text: {"a"} for text in texts}
        assert ok(on_b.get(f"/collections/{name}"))["chunks"] == files
        hits = ok(on_b.post(f"/collections/{name}/search", json={"query": texts[3]}))
        assert hits["data"][0]["text"] == texts[3]

    with Admin(cluster.a) as admin:  # another team's key is told the job does not exist
        other = admin.key(admin.team(f"other-{_hex()}")["id"])["key"]
    with _rag(cluster.b, other) as stranger:
        missing = stranger.get(path)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "id"


# --------------------------------------------------------------------------------- kill -9


def test_kill_9_under_load_loses_no_acknowledged_turn_and_fails_its_video_job(
    cluster: Cluster, user_key: str
) -> None:
    run = _hex()
    clients = [LoadClient(cluster, f"load-{run}-{i}", stream=i % 2 == 1) for i in range(4)]
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(user_key, stop)) for c in clients]
    for thread in threads:
        thread.start()

    def in_flight_on_a() -> Recorded | None:
        """A model call of A's that began under 0.1 s ago: the model answers it only
        SLOW_CHAT_DELAY_S (1 s) after it began, so A dies waiting for it."""
        now = time.monotonic()
        for record in cluster.upstream.received(model=SLOW_CHAT_UPSTREAM):
            recent = now - record.received_at < 0.1
            if cluster.called_by(record) == "a" and not record.completed and recent:
                return record
        return None

    def each_acknowledged(counts: list[int]) -> bool:
        assert [c.wrong for c in clients] == [[]] * len(clients)
        return all(len(c.acknowledged) >= n for c, n in zip(clients, counts, strict=True))

    assert cluster.comfy is not None
    cluster.comfy.mode = "hang"  # A's video job stays in progress until A dies
    on_b = sdk(cluster.b, user_key)
    try:
        with sdk(cluster.a, user_key) as on_a:
            video = on_a.videos.create(model=VIDEO_MODEL, prompt="tide", size="16x16", seconds="1")
        assert _video_until(on_b, video.id, {"in_progress"}).status == "in_progress"
        wait_for(lambda: each_acknowledged([3] * len(clients)), "turns before the kill")
        caught = wait_for(in_flight_on_a, "a model call in flight on A")
        killed_at = time.time()
        cluster.a.kill()
        after = [len(c.acknowledged) + 3 for c in clients]
        wait_for(lambda: each_acknowledged(after), "turns after the kill")
        lost = _video_until(on_b, video.id, {"completed", "failed"})
        FIGURES["kill -9: video job failed after (s)"] = round(time.time() - killed_at, 2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        cluster.comfy.reset()
        httpx.post(f"{cluster.comfy.url}/interrupt", json={})
        on_b.close()
    assert lost.status == "failed" and lost.error is not None
    assert lost.error.code == "runner_lost"
    assert f"{JOB_STALE_AFTER_S:g} s" in lost.error.message
    assert [c.wrong for c in clients] == [[]] * len(clients)
    assert not caught.completed  # A died while waiting for the model
    caught_text = caught.body["messages"][-1]["content"]
    owner = next(c for c in clients if caught_text.startswith(c.session + " "))
    assert caught_text in owner.failed  # the client saw that attempt fail...
    (recovered,) = [a for a in owner.acknowledged if a.text == caught_text]
    assert recovered.served_by == "b"  # ...and its retry answered by the survivor
    FIGURES["kill -9: turns acknowledged"] = sum(len(c.acknowledged) for c in clients)
    FIGURES["kill -9: failed attempts, retried"] = sum(len(c.failed) for c in clients)
    FIGURES["kill -9: in-flight turn acknowledged after (s)"] = round(
        recovered.began - killed_at, 3
    )

    early = {a.served_by for c in clients for a in c.acknowledged if a.began < killed_at}
    late = {a.served_by for c in clients for a in c.acknowledged if a.began > killed_at}
    assert early == {"a", "b"} and late == {"b"}  # round robin until the kill, then B

    histories = {}
    for client in clients:
        histories[client.session] = stored_history(cluster.b, user_key, client.session)
        stored = [user for user, _ in turn_pairs(histories[client.session])]
        acknowledged = [a.text for a in client.acknowledged]
        assert [t for t in acknowledged if t not in stored] == []  # no acknowledged turn lost
        positions = [stored.index(t) for t in acknowledged]
        assert positions == sorted(positions)
        for n, text in enumerate(acknowledged):
            for sent in sent_for(cluster, text):  # every attempt saw every earlier turn
                users = [m["content"] for m in sent if m["role"] == "user"]
                assert [t for t in acknowledged[:n] if t not in users] == [], text
    stored_caught = [u for u, _ in turn_pairs(histories[owner.session]) if u == caught_text]
    assert stored_caught == [caught_text]  # the killed attempt stored nothing

    began = time.monotonic()
    cluster.a.start()  # for the steps added after this one
    FIGURES["kill -9: restart of A (s)"] = round(time.monotonic() - began, 2)
    for client in clients:
        assert stored_history(cluster.a, user_key, client.session) == histories[client.session]
