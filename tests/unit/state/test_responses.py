"""ResponseRepository on both engines: owned by team and key together."""

from __future__ import annotations

from proxy.state import StateStore
from proxy.state.records import StoredResponse


def record(response_id: str, team_id: str = "t1", key_id: str = "k1") -> StoredResponse:
    return StoredResponse(
        id=response_id,
        team_id=team_id,
        key_id=key_id,
        created_at=1_700_000_000.5,
        model="m",
        previous_response_id="resp_before",
        response=b'{"id":"%s","object":"response"}' % response_id.encode(),
        input_items=b'[{"type":"message","role":"user","content":"h\xc3\xa9"}]',
        messages=b'[{"role":"user","content":"hi"}]',
    )


async def test_add_get_delete(state_store: StateStore) -> None:
    responses = state_store.responses
    await responses.add(record("resp_1"))
    assert await responses.get("t1", "k1", "resp_1") == record("resp_1")
    assert await responses.get("t1", "k1", "resp_2") is None
    assert await responses.delete("t1", "k1", "resp_1")
    assert not await responses.delete("t1", "k1", "resp_1")
    assert await responses.get("t1", "k1", "resp_1") is None


async def test_another_team_or_key_sees_nothing_and_deletes_nothing(
    state_store: StateStore,
) -> None:
    responses = state_store.responses
    await responses.add(record("resp_1"))
    for team, key in (("t2", "k1"), ("t1", "k2"), ("t2", "k2")):
        assert await responses.get(team, key, "resp_1") is None
        assert not await responses.delete(team, key, "resp_1")
    assert await responses.get("t1", "k1", "resp_1") == record("resp_1")
