"""A claim's reply carries each task's fields joined in one text (lib.lua reply_task).

Stored text refuses control characters, so the separator (U+001F) never occurs in a field
claimroom wrote; one written into the hash by hand must still come back whole, on every
path that claims (claim, claim_many, complete_and_claim, complete_many).
"""

from __future__ import annotations

import pytest
import redis as redis_py

from claimroom.core import constants as C
from claimroom.core.errors import BadInput
from claimroom.core.store import Store, TaskSpec

ODD = "left\x1fright"


def _write_by_hand(redis_url: str, namespace: str, task: str, **fields: str) -> None:
    r = redis_py.Redis.from_url(redis_url)
    try:
        r.hset(C.task_key(namespace, task), mapping=fields)
    finally:
        r.close()


async def test_stored_text_refuses_the_separator(redis_store: Store) -> None:
    with pytest.raises(BadInput, match="U\\+001F"):
        await redis_store.add(ODD)


async def test_a_field_holding_the_separator_comes_back_whole_from_a_claim(
    redis_store: Store, redis_url: str, namespace: str
) -> None:
    tid = await redis_store.add("plain", payload={"keep": "\u001f as JSON spells it"})
    _write_by_hand(redis_url, namespace, tid, title=ODD)
    claim = await redis_store.claim("ada", ttl_s=30)
    assert claim is not None and claim.task.id == tid
    assert claim.task.title == ODD and claim.task.payload == {"keep": "\x1f as JSON spells it"}
    assert claim.task.agent == "ada" and claim.token == (await redis_store.get(tid)).token
    await redis_store.complete(tid, claim.token, agent="ada")  # the token it was given holds


async def test_every_claiming_path_splits_or_rereads(
    redis_store: Store, redis_url: str, namespace: str
) -> None:
    ids = await redis_store.add_many([TaskSpec(title=f"t{i}") for i in range(6)])
    odd = {ids[1], ids[3], ids[5]}
    for tid in odd:
        _write_by_hand(redis_url, namespace, tid, title=ODD)
    await redis_store.register("ada", max_claims=8)

    first = await redis_store.claim_many("ada", 2, ttl_s=30)
    assert [c.task.id for c in first] == ids[:2]
    _, nxt = await redis_store.complete_and_claim(ids[0], first[0].token, agent="ada", ttl_s=30)
    assert [c.task.id for c in nxt] == [ids[2]]
    outcomes, more = await redis_store.complete_many(
        [(ids[1], first[1].token), (ids[2], nxt[0].token)], agent="ada", claim_next=3, ttl_s=30
    )
    assert all(o.error is None for o in outcomes)
    claimed = [*first, *nxt, *more]
    assert [c.task.id for c in claimed] == ids
    for c in claimed:
        assert c.task.title == (ODD if c.task.id in odd else f"t{ids.index(c.task.id)}")
        assert c.task.agent == "ada" and c.task.token == c.token
        assert c.deadline_ms == (await redis_store.get(c.task.id)).deadline_ms
