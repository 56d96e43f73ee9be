"""Prometheus metrics at /metrics.

Job metrics are read from the job store at scrape time, so they count the work of every worker
on every machine and survive restarts: queue depth, jobs by status, stalled jobs, seconds per
generation stage (encode_prompt, sample, decode, export, quality), end-to-end latency (created ->
completed, the time to first result) and worker compute seconds. HTTP request counts and
latencies are this server process's own.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from kinema.serve.jobs import JobStore

log = logging.getLogger("kinema.serve")

STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def _histogram(name, doc, labels, rows, bounds) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for label_values, (cumulative, total, count) in rows:
        buckets = [(f"{b:g}", c) for b, c in zip(bounds, cumulative, strict=True)]
        family.add_metric(label_values, buckets + [("+Inf", count)], sum_value=total)
    return family


class StoreCollector(Collector):
    def __init__(self, store: JobStore):
        self.store = store

    def collect(self):
        up = GaugeMetricFamily("kinema_store_up", "1 if the job store answered this scrape")
        try:
            counts = self.store.counts()
            stalled = self.store.stalled()
            stages = self.store.stage_histograms(STAGE_BUCKETS)
            totals = self.store.completion_totals(LATENCY_BUCKETS)
        except SQLAlchemyError as e:
            log.warning("metrics: the job store did not answer: %s", e)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "kinema_queue_depth", "Jobs waiting for a worker", value=counts["queued"]
        )
        jobs = GaugeMetricFamily(
            "kinema_jobs", "Jobs by status (deleted ones left out)", labels=["status"]
        )
        for status, n in counts.items():
            jobs.add_metric([status], n)
        yield jobs
        yield GaugeMetricFamily(
            "kinema_jobs_stalled",
            "Jobs in progress whose lease ran out (worker gone)",
            value=stalled,
        )
        yield _histogram(
            "kinema_generation_stage_seconds", "Seconds per generation stage, per completed job",
            ["stage"], [([s], v) for s, v in sorted(stages.items())], STAGE_BUCKETS,
        )  # fmt: skip
        yield _histogram(
            "kinema_job_latency_seconds", "Created to completed: the time to first result",
            [], [([], (totals["latency_buckets"], totals["latency_sum"], totals["count"]))],
            LATENCY_BUCKETS,
        )  # fmt: skip
        yield CounterMetricFamily(
            "kinema_compute_seconds", "Worker seconds spent on completed jobs, all attempts",
            value=totals["compute_sum"],
        )  # fmt: skip


class Metrics:
    """A registry for one app: the store's metrics and this process's HTTP metrics."""

    def __init__(self, store: JobStore):
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(store))
        self.requests = Counter(
            "kinema_http_requests", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "kinema_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )

    def observe(self, method: str, route: str, status: int, started: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)
