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
    # running -> queued: its worker died after a checkpoint; the next claim resumes from it.
    JobState.running: frozenset({JobState.succeeded, JobState.failed, JobState.cancelled, JobState.queued}),
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
    eval_loss: float | None = Field(default=None, description="On the progress event of an evaluation")
    learning_rate: float | None = None
    eta_seconds: float | None = None
    phase: str = Field(default="", description="validating, evaluating_base, training, evaluating_adapter, publishing")


class LossPoint(BaseModel):
    step: int
    loss: float
    learning_rate: float | None = None


class Checkpoint(BaseModel):
    """A checkpoint the training wrote (adapter, optimizer, scheduler, RNG and trainer state at ``step``)."""

    step: int
    path: str = Field(description="Its folder on the worker's host, under the job's work folder")
    saved_at: datetime
    loss: float | None = Field(default=None, description="Train loss logged at that step")
    eval_loss: float | None = Field(default=None, description="Eval loss at that step, when evaluated then")
    kept: bool = Field(
        default=True,
        description="Still on disk: false once the trainer rotated it out (save_total_limit) or the job's "
        "work folder was removed at its end",
    )


class CheckpointList(BaseModel):
    """``GET /finetune/{id}/checkpoints``: every checkpoint the job wrote, oldest first."""

    job_id: str
    checkpoints: list[Checkpoint]
    resumes: int = Field(description="Times the job was resumed from a checkpoint after its worker died")


class JobResult(BaseModel):
    cer_before: CERResult | None = None
    cer_after: CERResult | None = None
    loss_curve: list[LossPoint] = Field(
        default_factory=list, description="Train loss per logged step, filled while training"
    )
    eval_loss_curve: list[LossPoint] = Field(
        default_factory=list, description="Validation loss on the eval rows, every eval_steps"
    )
    checkpoints: list[Checkpoint] = Field(default_factory=list)
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
    resumes: int = Field(default=0, description="Times resumed from a checkpoint after its worker died")
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
    checkpoint = "checkpoint"


class JobEvent(BaseModel):
    seq: int
    job_id: str
    type: JobEventType
    time: datetime
    state: JobState | None = None
    progress: JobProgress | None = None
    cer: CERResult | None = Field(default=None, description="On eval events: the CER just measured")
    message: str = ""


class JobEventList(BaseModel):
    """``GET /finetune/{id}/events/list``: a page of the job's events, oldest first."""

    events: list[JobEvent]
    next_after: int | None = Field(
        default=None,
        description="Pass as ?after= for the next page; null when no later event is stored yet "
        "(a running job adds more: ask again with the last event's seq)",
    )
