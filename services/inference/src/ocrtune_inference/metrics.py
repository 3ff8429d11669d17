"""Prometheus metrics: requests, latency and tokens per adapter, queue depth, adapter loads and evictions."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BASE_LABEL = "__base__"


class ServiceMetrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ocrtune_ocr_requests_total", "OCR requests by adapter and outcome", ["adapter", "status"], registry=r
        )
        self.latency = Histogram(
            "ocrtune_ocr_latency_seconds",
            "End-to-end OCR latency by adapter",
            ["adapter"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.tokens = Counter("ocrtune_tokens_total", "Tokens by adapter and kind", ["adapter", "kind"], registry=r)
        self.pages = Counter("ocrtune_pages_total", "Pages (images) OCR'd by adapter", ["adapter"], registry=r)
        self.in_flight = Gauge("ocrtune_requests_in_flight", "Engine requests running or queued", registry=r)
        self.adapter_loads = Counter(
            "ocrtune_adapter_loads_total", "Explicit adapter loads by result", ["result"], registry=r
        )
        self.adapter_first_use = Counter(
            "ocrtune_adapter_hot_loads_total", "Adapters loaded by the engine on first request", registry=r
        )
        self.adapter_evictions = Counter(
            "ocrtune_adapter_evictions_total", "Adapters the engine dropped from its cache (LRU)", registry=r
        )
        self.adapters_loaded = Gauge("ocrtune_adapters_loaded", "Adapters in the engine's cache", registry=r)
        self.adapter_rejections = Counter(
            "ocrtune_adapter_rejections_total", "Adapters refused before reaching the engine", ["reason"], registry=r
        )

    def render(self) -> bytes:
        """Ours, then vLLM's own ``vllm:*`` series (queue, KV-cache use, TTFT, LoRA slots ...).

        AsyncLLM registers those on prometheus_client's global registry (its PrometheusStatLogger,
        on by default), where vLLM's own server reads them too; the process collectors come along.
        """
        return generate_latest(self.registry) + generate_latest(REGISTRY)
