"""Task.from_fields, the one reader of a store's task record, against the plain reading it
replaced (every field through the dataclass's own constructor), on any record."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimroom.core import constants as C
from claimroom.core.models import State, Task

TEXT_FIELDS = ("title", "queue", "parent", "affinity", "agent", "stage", "checkpoint", "reason",
               "cancelled_by", "bid_winner", "owner", "review_ref", "plan")  # fmt: skip
INT_FIELDS = ("priority", "max_attempts", "attempts", "failures", "expiries", "token", "deadline_ms",
              "claimed_ms", "ttl_ms", "ready_ms", "created_ms", "updated_ms", "seq", "bid_window_ms",
              "bid_close_ms", "steal_ms", "steal_after_ms", "review_ms", "plan_left",
              "plan_total")  # fmt: skip


def _int(value: Any, default: int = 0) -> int:
    return int(value) if value not in (None, "") else default


def reference(f: dict[str, Any]) -> Task:
    """What from_fields returned before it was made fast: each field spelled out."""

    def lst(v: Any) -> tuple[str, ...]:
        return tuple(x for x in (v or "").split(",") if x)

    def _float(v: Any) -> float:
        return float(v) if v not in (None, "") else 0.0

    # Unstored on Redis (lib.lua): a lease at the stored default, a done task's progress.
    unstored_ttl = C.stored_ttl_ms if _int(f.get("claimed_ms")) else 0

    return Task(
        id=f["id"], title=f.get("title", ""), state=State(f["state"]), queue=f.get("queue", "default"),
        priority=_int(f.get("priority")), requires=lst(f.get("requires")), after=lst(f.get("after")),
        parent=f.get("parent", ""), affinity=f.get("affinity", ""),
        payload=json.loads(f["payload"]) if f.get("payload") else None,
        max_attempts=_int(f.get("max_attempts"), 3), attempts=_int(f.get("attempts")),
        failures=_int(f.get("failures")), expiries=_int(f.get("expiries")), agent=f.get("agent", ""),
        token=_int(f.get("token")), deadline_ms=_int(f.get("deadline_ms")),
        claimed_ms=_int(f.get("claimed_ms")),
        ttl_ms=_int(f["ttl_ms"]) if f.get("ttl_ms") not in (None, "") else unstored_ttl,
        progress=1.0 if f["state"] == "done" else _float(f.get("progress")),
        stage=f.get("stage", ""), checkpoint=f.get("checkpoint", ""),
        result=json.loads(f["result"]) if f.get("result") else None, reason=f.get("reason", ""),
        ready_ms=_int(f.get("ready_ms")), created_ms=_int(f.get("created_ms")),
        updated_ms=_int(f.get("updated_ms")), cancelled_by=f.get("cancelled_by", ""),
        seq=_int(f.get("seq")) or int(f["id"][1:]),  # a Redis hash holds no seq: its id says it
        bid_window_ms=_int(f.get("bid_window_ms")), bid_close_ms=_int(f.get("bid_close_ms")),
        bid_winner=f.get("bid_winner", ""), owner=f.get("owner", ""), steal_ms=_int(f.get("steal_ms")),
        steal_after_ms=_int(f.get("steal_after_ms"), -1), review_ref=f.get("review_ref", ""),
        review_ms=_int(f.get("review_ms")),
        paths=tuple(json.loads(f["paths"])) if f.get("paths") else (), plan=f.get("plan", ""),
        plan_left=_int(f.get("plan_left")), plan_total=_int(f.get("plan_total")),
        plan_wait=f.get("plan_wait", "") not in ("", "0"),
    )  # fmt: skip


def optional(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(None), st.just(""), values)  # None: the field is absent


NUMBERS = st.integers(-(2**53), 2**53).map(str) | st.integers(0, 10**13)  # text, or an integer reply
RECORDS = st.fixed_dictionaries(
    {"id": st.from_regex(r"t[0-9]{1,6}", fullmatch=True), "state": st.sampled_from([s.value for s in State])},
    optional={
        **{name: optional(st.text(max_size=8)) for name in TEXT_FIELDS},
        **{
            name: optional(st.integers(-(2**53), 2**53).map(str) | st.integers(0, 10**13))
            for name in INT_FIELDS
        },
        "requires": optional(st.sampled_from(["py", "py,go", ",py,"])),
        "after": optional(st.sampled_from(["t1", "t1,t2"])),
        "payload": optional(st.sampled_from(['{"a": 1}', "[1, 2]", '"s"', "0"])),
        "result": optional(st.sampled_from(['{"ok": true}', "null", "3"])),
        "paths": optional(st.sampled_from(['["a.py"]', '["a.py", "b/c.md"]', "[]"])),
        "progress": optional(st.sampled_from(["0.5", "1", "0.25"])),
        "plan_wait": optional(st.sampled_from(["0", "1"])),
        "spawn_token": optional(st.text(max_size=4)),  # a store field that is not the Task's
        "waiting": optional(st.sampled_from(["0", "2"])),
    },
).map(lambda d: {k: v for k, v in d.items() if v is not None})


@given(RECORDS)
def test_from_fields_reads_any_record_as_the_plain_reading_did(record: dict[str, Any]) -> None:
    got, want = Task.from_fields(record), reference(record)
    assert got == want and repr(got) == repr(want)
    assert dataclasses.asdict(got) == dataclasses.asdict(want)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.title = "changed"  # type: ignore[misc]


def test_every_task_field_has_a_reader() -> None:
    # A field added to Task without one would silently keep its default on every read.
    record = {f.name: "" for f in dataclasses.fields(Task)} | {"id": "t1", "state": "queued", "title": "x"}
    assert Task.from_fields(record).title == "x"
    from claimroom.core import models

    assert set(models._TASK_READERS) == {f.name for f in dataclasses.fields(Task)}


@pytest.mark.parametrize("missing", ["id", "state"])
def test_a_record_without_id_or_state_is_refused(missing: str) -> None:
    record = {"id": "t1", "state": "queued"}
    del record[missing]
    with pytest.raises(KeyError):
        Task.from_fields(record)
