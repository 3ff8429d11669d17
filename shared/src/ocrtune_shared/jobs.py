"""Fine-tune jobs: states, progress, results, events."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, Field

from ocrtune_shared.cer import CERResult
from ocrtune_shared.errors import ErrorBody
from ocrtune_shared.finetune import FinetuneRequest


class JobState(str, Enum):
    validating = "validating"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.validating: frozenset({JobState.queued, JobState.failed, JobState.cancelled}),
    JobState.queued: frozenset({JobState.running, JobState.failed, JobState.cancelled}),
    JobState.running: frozenset({JobState.succeeded, JobState.failed, JobState.cancelled}),
    JobState.succeeded: frozenset(),
    JobState.failed: frozenset(),
    JobState.cancelled: frozenset(),
}


def can_transition(old: JobState, new: JobState) -> bool:
    return new in ALLOWED_TRANSITIONS[old]


class JobProgress(BaseModel):
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    learning_rate: float | None = None
    eta_seconds: float | None = None
    phase: str = Field(default="", description="validating, evaluating_base, training, evaluating_adapter, publishing")


class LossPoint(BaseModel):
    step: int
    loss: float
    learning_rate: float | None = None


class JobResult(BaseModel):
    cer_before: CERResult | None = None
    cer_after: CERResult | None = None
    loss_curve: list[LossPoint] = Field(default_factory=list)
    runtime_s: float | None = None
    train_samples: int = 0
    eval_samples: int = 0
    samples_per_second: float | None = None
    peak_memory_mb: float | None = None
    adapter: str | None = Field(default=None, description="'name@version' published to the store")


class Job(BaseModel):
    id: str
    state: JobState
    request: FinetuneRequest
    progress: JobProgress = Field(default_factory=JobProgress)
    result: JobResult = Field(default_factory=JobResult)
    error: ErrorBody | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobList(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next page")


class JobEventType(str, Enum):
    state = "state"
    progress = "progress"
    eval = "eval"
    log = "log"


class JobEvent(BaseModel):
    seq: int
    job_id: str
    type: JobEventType
    time: datetime
    state: JobState | None = None
    progress: JobProgress | None = None
    cer: CERResult | None = Field(default=None, description="On eval events: the CER just measured")
    message: str = ""
