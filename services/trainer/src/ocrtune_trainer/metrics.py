"""Prometheus metrics of the trainer API: job counts by state (read from the store at
scrape time, so they are right whichever process changed them), submissions, worker
health, HTTP requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ocrtune_shared.jobs import JobState


class _JobStateCollector(Collector):
    def __init__(self, counts: Callable[[], dict[JobState, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("ocrtune_trainer_jobs", "Jobs in the store, by state", labels=["state"])
        for state, count in self.counts().items():
            family.add_metric([state.value], count)
        yield family


class TrainerMetrics:
    def __init__(self, job_counts: Callable[[], dict[JobState, int]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_JobStateCollector(job_counts))
        self.jobs_submitted = Counter(
            "ocrtune_trainer_jobs_submitted_total", "Fine-tune jobs accepted", registry=self.registry
        )
        self.requests = Counter(
            "ocrtune_trainer_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.worker_up = Gauge("ocrtune_trainer_worker_up", "1 while the worker process runs", registry=self.registry)
        self.worker_restarts = Counter(
            "ocrtune_trainer_worker_restarts_total",
            "Times the worker process died and was restarted",
            registry=self.registry,
        )
