"""The structured results of the MCP tools: what a model reads back, with a JSON schema
the SDK publishes as each tool's output schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..models import Task


class TaskView(BaseModel):
    """A task as the board has it now."""

    id: str
    title: str
    state: str = Field(
        description="blocked, queued, claimed, review, retrying, orphaned, done, dead or cancelled"
    )
    queue: str
    priority: int
    requires: list[str]
    after: list[str] = Field(description="tasks that must be done before this one can be claimed")
    parent: str
    affinity: str
    payload: Any = Field(description="the task's input, as its author gave it (JSON)")
    max_attempts: int
    attempts: int
    agent: str = Field(description="who holds it (claimed) or held it last")
    token: int = Field(description="the current claim's fencing token (0: never claimed)")
    deadline_ms: int = Field(description="when the current lease ends, store clock (ms since the epoch)")
    progress: float
    stage: str
    checkpoint: str = Field(description="what the last holder saved to resume from")
    result: Any
    reason: str = Field(description="why it failed or was cancelled")
    created_ms: int
    updated_ms: int
    owner: str = Field("", description="the agent owning its affinity key when it became ready")
    steal_ms: int = Field(0, description="until when only its owner may claim it, store clock (0: anyone)")
    review_ref: str = Field(default="", description="what was last delivered for review (branch, commit, PR)")
    review_ms: int = Field(default=0, description="when it last entered review, store clock (ms)")

    @classmethod
    def of(cls, task: Task) -> TaskView:
        return cls.model_validate(task.to_json())


class TaskLine(BaseModel):
    """A task in a listing."""

    id: str
    title: str
    state: str
    queue: str
    priority: int
    agent: str
    token: int
    progress: float
    stage: str

    @classmethod
    def of(cls, task: Task) -> TaskLine:
        return cls.model_validate(task.to_json())


class Registered(BaseModel):
    agent: str
    capabilities: list[str]
    max_claims: int


class Claimed(BaseModel):
    claimed: bool = Field(description="false: nothing could be claimed (see why)")
    task: TaskView | None = None
    token: int | None = Field(default=None, description="pass it to heartbeat, complete, fail and release")
    deadline_ms: int | None = Field(default=None, description="heartbeat before this (store clock, ms)")
    locked: list[str] = Field(default_factory=list, description="the paths locked with the claim")
    why: str = Field(default="", description="why nothing was claimed")


class Heartbeat(BaseModel):
    task: str
    deadline_ms: int = Field(description="the lease's new end (store clock, ms)")


class Completed(BaseModel):
    task: str
    state: str
    unblocked: list[str] = Field(description="tasks that were waiting on this one and can now run")
    next: Claimed | None = Field(default=None, description="with next=true: your next claim (or why none)")


class Failed(BaseModel):
    task: str
    state: str = Field(description="retrying (it will be tried again) or dead")
    retry_at_ms: int = Field(description="when a retry may run (store clock, ms; 0: none)")


class Moved(BaseModel):
    task: str
    state: str


class Added(BaseModel):
    id: str
    state: str


class Listing(BaseModel):
    tasks: list[TaskLine]
    offset: int
    more: bool = Field(description="true: there may be more; call again with offset + the number shown")


class Locked(BaseModel):
    paths: list[str] = Field(description="the locked paths, from the project root")
    task: str
    shared: bool
    expires_ms: int = Field(description="when the locks end unless renewed (store clock, ms)")


class Unlocked(BaseModel):
    released: list[str]


class Extended(BaseModel):
    task: str
    deadline_ms: int
