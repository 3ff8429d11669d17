"""Results rendered for people: tables, CER, a job's progress bar, OCR texts side by side.

Shared by the ``ocrtune`` CLI and the demo (``ocrtune_devkit.demo``), so both print the
same things the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm

from ocrtune_client.batch import BatchFailure, BatchItem, BatchReport
from ocrtune_client.client import OCRTuneClient
from ocrtune_shared.adapters import AdapterInfo
from ocrtune_shared.cer import CERResult, character_error_rate, normalize
from ocrtune_shared.jobs import Job, JobEvent, JobEventType, JobProgress


def format_cer(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def table(rows: Iterable[list[str]], header: list[str]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def jobs_table(jobs: list[Job]) -> str:
    rows = []
    for job in jobs:
        step = f"{job.progress.step}/{job.progress.total_steps}" if job.progress.total_steps else "-"
        after = job.result.cer_after.corpus_cer if job.result.cer_after else None
        rows.append(
            [
                job.id,
                job.request.adapter_name,
                job.state.value,
                step,
                format_cer(after),
                job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            ]
        )
    return table(rows, ["ID", "ADAPTER", "STATE", "STEP", "CER AFTER", "CREATED"]) if rows else "no jobs"


def adapters_table(adapters: list[AdapterInfo]) -> str:
    rows = [
        [
            a.name,
            str(a.version) + (" (latest)" if a.latest else ""),
            a.state.value,
            str(a.rank),
            format_cer(a.cer_before.corpus_cer if a.cer_before else None),
            format_cer(a.cer_after.corpus_cer if a.cer_after else None),
            str(a.requests),
        ]
        for a in adapters
    ]
    if not rows:
        return "no adapters"
    return table(rows, ["NAME", "VERSION", "STATE", "RANK", "CER BEFORE", "CER AFTER", "REQUESTS"])


def describe_result(job: Job) -> str:
    lines = [f"job {job.id}: {job.state.value}"]
    if job.error:
        where = f" ({job.error.where})" if job.error.where else ""
        lines.append(f"error: {job.error.message}{where}")
    result = job.result
    if result.adapter:
        lines.append(f"adapter: {result.adapter}")
    if result.cer_before or result.cer_after:
        before = result.cer_before.corpus_cer if result.cer_before else None
        after = result.cer_after.corpus_cer if result.cer_after else None
        lines.append(
            f"CER (eval, {result.eval_samples} samples): before {format_cer(before)} -> after {format_cer(after)}"
        )
    if result.runtime_s is not None:
        lines.append(f"runtime: {result.runtime_s:.1f} s")
    return "\n".join(lines)


# --- a job's progress ------------------------------------------------------------------------
class JobProgressPrinter:
    """Renders a job's events: a progress bar for training steps (loss, learning rate, ETA),
    and one line for each state change, phase change, evaluation and log message."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.bar: tqdm | None = None
        self.phase = ""

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)

    def __call__(self, event: JobEvent) -> None:
        if event.type == JobEventType.state and event.state is not None:
            self.say(f"state: {event.state.value}" + (f" ({event.message})" if event.message else ""))
        elif event.type in (JobEventType.eval, JobEventType.log) and event.message:
            self.say(event.message)
        progress = event.progress
        if progress is None:
            return
        if progress.phase and progress.phase != self.phase:
            self.phase = progress.phase
            self.say(f"phase: {progress.phase}")
        if progress.phase == "training" and progress.total_steps and progress.step:
            self._update_bar(progress)

    def _update_bar(self, progress: JobProgress) -> None:
        if self.bar is None:
            # Starts at the step we join at (1, or later when following a running job), so the
            # rate shown is that of the steps seen, not of the steps replayed at once.
            self.bar = tqdm(
                total=progress.total_steps,
                initial=progress.step,
                desc="training",
                unit="step",
                file=self.out,
                dynamic_ncols=True,
            )
        self.bar.total = progress.total_steps
        self.bar.n = min(progress.step, progress.total_steps)
        postfix = {}
        if progress.loss is not None:
            postfix["loss"] = f"{progress.loss:.4f}"
        if progress.learning_rate is not None:
            postfix["lr"] = f"{progress.learning_rate:.2e}"
        if progress.eta_seconds is not None:
            postfix["eta"] = f"{progress.eta_seconds:.0f}s"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()
        if self.bar.n >= self.bar.total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def follow_with_progress(client: OCRTuneClient, job_id: str, *, stream: TextIO | None = None) -> Job:
    """Follow a job's events with a progress bar (step, loss, ETA); return the job at its end."""
    printer = JobProgressPrinter(stream or sys.stderr)
    try:
        for event in client.follow(job_id):
            printer(event)
    except KeyboardInterrupt:
        printer.close()
        print(f"\nstopped following; the job goes on: ocrtune job {job_id} --follow", file=sys.stderr)
        raise
    finally:
        printer.close()
    return client.job(job_id)


# --- a batch of files ---------------------------------------------------------------------------
class FileProgress:
    """A progress bar over a batch OCR: files done of all, with the failures so far."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.bar = tqdm(total=total, desc="ocr", unit="file", file=out, dynamic_ncols=True)
        self.failed = 0

    def __call__(self, item: BatchItem, failure: BatchFailure | None) -> None:
        if failure is not None:
            self.failed += 1
            self.bar.set_postfix({"failed": self.failed}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def batch_summary(report: BatchReport, total: int, out_dir: object) -> str:
    """What a batch did: how many texts were written where, then each file that failed and why."""
    lines = [f"wrote {len(report.written)} of {total} texts to {out_dir}"]
    if report.failures:
        lines.append(f"{len(report.failures)} file(s) failed:")
        lines += [f"  {failure.source}: {failure.message}" for failure in report.failures]
    return "\n".join(lines)


# --- base model and adapter, side by side ------------------------------------------------------
@dataclass
class Comparison:
    """One line's reference text, read by the base model and by the adapter."""

    text: str
    base: str
    adapted: str


def clip(text: str, width: int) -> str:
    """``text`` on one line in ``width`` terminal columns (CJK characters take two), cut with '…'."""
    flat = " ".join(text.split()) or "∅"
    out, used = "", 0
    for char in flat:
        w = 2 if ord(char) > 0x2E80 else 1
        if used + w > width - 1 and len(flat) > len(out) + 1:
            return out + "…" + " " * (width - used - 1)
        out, used = out + char, used + w
    return out + " " * (width - used)


def side_by_side(rows: list[Comparison], before: CERResult, after: CERResult, title: str) -> str:
    """The table of reference, base model and adapter texts with each line's CER, then the corpus
    CER ``before`` and ``after`` the adapter; a line the adapter reads exactly is ticked."""
    lines = [
        f"\n{title}",
        f"  {clip('reference', 18)} {clip('base model', 26)} {'CER':>6}   {clip('with adapter', 18)} {'CER':>6}",
    ]
    for r in rows:
        cer_b = character_error_rate([r.base], [r.text]).corpus_cer
        cer_a = character_error_rate([r.adapted], [r.text]).corpus_cer
        mark = "✓" if normalize(r.adapted) == normalize(r.text) else " "
        lines.append(
            f"  {clip(r.text, 18)} {clip(r.base, 26)} {cer_b * 100:5.0f}%   {clip(r.adapted, 18)} {cer_a * 100:5.0f}% {mark}"
        )
    lines.append(
        f"  CER (corpus) {before.corpus_cer * 100:.1f}% -> {after.corpus_cer * 100:.1f}%   "
        f"(mean per line {before.mean_cer * 100:.1f}% -> {after.mean_cer * 100:.1f}%, {len(rows)} images)"
    )
    return "\n".join(lines)
