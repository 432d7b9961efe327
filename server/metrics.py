"""Prometheus metrics of the server, on a registry of its own (GET /metrics)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WEIGHT_BUCKETS = (-5, -3, -2, -1, -0.5, 0, 0.5, 1, 2, 3, 5)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "genarm_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.prompt_tokens = Counter("genarm_prompt_tokens", "Prompt tokens", registry=r)
        self.completion_tokens = Counter("genarm_completion_tokens", "Generated tokens", registry=r)
        self.ttft = Histogram(
            "genarm_time_to_first_token_seconds",
            "Time to first token",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.tpot = Histogram(
            "genarm_time_per_output_token_seconds",
            "Time per output token after the first",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.running = Gauge(
            "genarm_requests_running", "Sequences the engine is running", registry=r
        )
        self.waiting = Gauge(
            "genarm_requests_waiting", "Sequences waiting for an engine slot", registry=r
        )
        self.reward_weight = Histogram(
            "genarm_reward_weight",
            "Reward weight used per ARM",
            ["arm"],
            registry=r,
            buckets=WEIGHT_BUCKETS,
        )
        # Reward-model work is not in the token counters above (nothing is
        # generated): an operator sizes a reward model's engine by these.
        self.reward_items = Counter(
            "genarm_reward_items",
            "Answers scored per reward model (/v1/rewards items and best-of-N candidates)",
            ["reward_model"],
            registry=r,
        )
        self.reward_tokens = Counter(
            "genarm_reward_tokens",
            "Tokens read per reward model (conversation and answer)",
            ["reward_model"],
            registry=r,
        )


class RequestTimer:
    """Token counts and latencies of one HTTP request, observed once when it ends.

    Keyed per sequence (prompt, choice) so that time per output token is each
    sequence's own pace, not the sum over the n choices of a request.
    """

    def __init__(self, metrics: ServerMetrics, prompt_tokens: int) -> None:
        self.metrics = metrics
        self.prompt_tokens = prompt_tokens
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.completion_tokens = 0
        self._sequences: dict[tuple[int, int], list] = {}  # key -> [first_at, last_at, count]

    def tokens(self, key: tuple[int, int], count: int) -> None:
        if count <= 0:
            return
        now = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = now
        self.completion_tokens += count
        seq = self._sequences.setdefault(key, [now, now, 0])
        seq[1] = now
        seq[2] += count

    def finish(self) -> None:
        m = self.metrics
        m.prompt_tokens.inc(self.prompt_tokens)
        m.completion_tokens.inc(self.completion_tokens)
        if self.first_token_at is not None:
            m.ttft.observe(self.first_token_at - self.started)
        for first_at, last_at, count in self._sequences.values():
            if count > 1:
                m.tpot.observe((last_at - first_at) / (count - 1))
