"""Prometheus metrics that stay right across web and worker processes, and across hosts.

Nothing is counted in process memory (each daphne or worker process would hold a fragment):
- gauges (queue depth by status, running tasks, worker heartbeats) are read from the database
  at scrape time;
- counters (tasks submitted, tasks finished by tool and status) and the task-duration histogram
  live in Redis hashes. Increments are summed in the process and written with one pipelined
  round trip at most every ``FLUSH_SECONDS`` by a short-lived thread (a round trip per submit
  was half of a single submit's time, bench profile); a scrape flushes its own process first,
  and the worker flushes at exit;
- cache hits and misses by tool come from the tool cache's own statistics.
A custom collector turns all of it into metric families for prometheus_client's exposition.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .models import DJANGO_TASK_TOOL, TERMINAL_STATUSES, WorkerHeartbeat

logger = logging.getLogger(__name__)

# Seconds; a task runs from milliseconds (a cached read) to minutes (a command, an LLM call).
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
# After a Redis failure, metrics writes are skipped this long, so a Redis outage never adds a
# connection timeout to every worker cycle (the tasks matter; the counters are best effort).
BACKOFF_SECONDS = 10.0
FLUSH_SECONDS = 0.25

_client: redis.Redis | None = None
_client_url: str | None = None
_down_until = 0.0


def _redis() -> redis.Redis:
    global _client, _client_url
    if _client is None or _client_url != settings.REDIS_URL:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2, decode_responses=True
        )
        _client_url = settings.REDIS_URL
    return _client


def _key(name: str) -> str:
    return f"{settings.REDIS_PREFIX}:metrics:{name}"


def _field(name: str, detail: object) -> str:
    """A hash field of two parts (a tool and a status or a bucket), split again at scrape time."""
    return f"{name}|{detail}"


class _Pending:
    """Increments not yet in Redis: hash key -> field -> amount. Any thread adds; the first add
    after a flush schedules the next one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.amounts: dict[str, dict[str, float]] = {}
        self.timer: threading.Timer | None = None
        self.closed = False
        self.started: list[threading.Timer] = []

    def add(self, name: str, amounts: dict[str, float]) -> None:
        with self.lock:
            fields = self.amounts.setdefault(name, {})
            for field, amount in amounts.items():
                fields[field] = fields.get(field, 0) + amount
            if self.timer is not None:
                return
            if not self.closed:
                self.timer = threading.Timer(FLUSH_SECONDS, self.flush)
                self.timer.daemon = True
                self.timer.start()
                self.started = [t for t in self.started if t.is_alive()] + [self.timer]
                return
        self.flush()  # the process is exiting: no thread to leave behind

    def close(self) -> None:
        """At exit: wait for a flush under way, then write the rest. A daemon thread frozen by
        the interpreter's exit while holding the Redis pool's lock would hang the exit."""
        with self.lock:
            self.closed = True
            started = self.started
        for timer in started:  # due, or flushing right now
            timer.cancel()
            timer.join(timeout=5)
        self.flush()

    def flush(self) -> None:
        global _down_until
        with self.lock:
            amounts, self.amounts = self.amounts, {}
            timer, self.timer = self.timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        if not amounts or time.monotonic() < _down_until:
            return
        try:
            pipe = _redis().pipeline(transaction=False)
            for name, fields in amounts.items():
                for field, amount in fields.items():
                    if isinstance(amount, float):
                        pipe.hincrbyfloat(_key(name), field, amount)
                    else:
                        pipe.hincrby(_key(name), field, amount)
            pipe.execute()
        except redis.RedisError:
            _down_until = time.monotonic() + BACKOFF_SECONDS
            logger.warning("metrics: Redis unavailable, counters not updated", exc_info=True)


_pending = _Pending()
flush = _pending.flush
atexit.register(_pending.close)


def _function(task: Any) -> str | None:
    """A Django task's function (its module path), the label of its own counters."""
    if task.tool != DJANGO_TASK_TOOL or not isinstance(task.args, dict):
        return None
    return str(task.args.get("task", ""))


def record_submitted(tasks: Iterable[Any]) -> None:
    """Count new tasks by tool, and Django tasks by function. Call after commit (the submit
    services and the django.tasks backend do)."""
    by_tool: dict[str, float] = {}
    by_function: dict[str, float] = {}
    for task in tasks:
        by_tool[task.tool] = by_tool.get(task.tool, 0) + 1
        if (function := _function(task)) is not None:
            by_function[function] = by_function.get(function, 0) + 1
    if by_tool:
        _pending.add("submitted", by_tool)
    if by_function:
        _pending.add("django_submitted", by_function)


def record_finished(tasks: Iterable[Any]) -> None:
    """Count tasks that reached a terminal state, and their durations. The worker calls it once
    per completed batch, after the batch is written."""
    finished: dict[str, float] = {}
    by_function: dict[str, float] = {}
    buckets: dict[str, float] = {}
    sums: dict[str, float] = {}
    for task in tasks:
        if task.status not in TERMINAL_STATUSES:
            continue  # a retry is not an end
        field = _field(task.tool, task.status)
        finished[field] = finished.get(field, 0) + 1
        if (function := _function(task)) is not None:
            field = _field(function, task.status)
            by_function[field] = by_function.get(field, 0) + 1
        if task.duration_ms is not None:
            seconds = task.duration_ms / 1000
            # Stored per bucket (not cumulative); the collector sums them up at scrape time.
            bucket = _field(task.tool, bisect.bisect_left(DURATION_BUCKETS, seconds))
            buckets[bucket] = buckets.get(bucket, 0) + 1
            sums[task.tool] = sums.get(task.tool, 0.0) + seconds
    if finished:
        _pending.add("finished", finished)
        _pending.add("duration_buckets", buckets)
        _pending.add("duration_sum", sums)
    if by_function:
        _pending.add("django_finished", by_function)


def record_worker_renewal(reason: str) -> None:
    """Count a worker that replaced itself, by why (``max_tasks`` or ``max_memory``)."""
    _pending.add("worker_renewals", {reason: 1})


class ClawSiteCollector(Collector):
    """Builds every ClawSite metric family when Prometheus scrapes ``/metrics``."""

    def collect(self) -> Iterator[Metric]:
        yield from self._database_families()
        yield from self._redis_families()
        yield from self._cache_families()
        yield from self._flow_families()

    def _flow_families(self) -> Iterator[Metric]:
        """Limits on running work, circuit breakers and the waits for endpoint limits."""
        from tools_app.breaker import describe_breakers

        from .limits import describe_limits

        running = GaugeMetricFamily(
            "clawsite_limit_running", "Tasks running under a limit.", labels=["limit"]
        )
        tokens = GaugeMetricFamily(
            "clawsite_limit_tokens", "Starts a limit's rate allows now.", labels=["limit"]
        )
        held = GaugeMetricFamily(
            "clawsite_limit_held", "1 while a limit holds tasks back.", labels=["limit"]
        )
        for limit in describe_limits():
            running.add_metric([limit["key"]], limit["running"])
            if limit["tokens"] is not None:
                tokens.add_metric([limit["key"]], limit["tokens"])
            held.add_metric([limit["key"]], 1 if limit["held"] else 0)
        yield from (running, tokens, held)
        state = GaugeMetricFamily(
            "clawsite_breaker_state",
            "A circuit breaker's state: 0 closed, 1 half-open, 2 open.",
            labels=["name"],
        )
        opened = CounterMetricFamily(
            "clawsite_breaker_opened", "Times a circuit breaker opened.", labels=["name"]
        )
        waits = CounterMetricFamily(
            "clawsite_limiter_wait_seconds",
            "Seconds calls waited for an endpoint's concurrency or rate.",
            labels=["name"],
        )
        levels = {"closed": 0, "half_open": 1, "open": 2}
        for entry in describe_breakers():
            state.add_metric([entry["name"]], levels.get(entry["state"], 0))
            opened.add_metric([entry["name"]], entry.get("opened", 0))
            waits.add_metric([entry["name"]], entry.get("wait_seconds", 0.0))
        yield from (state, opened, waits)

    def _database_families(self) -> Iterator[Metric]:
        from .stats import status_counts

        counts = status_counts()
        depth = GaugeMetricFamily("clawsite_tasks", "Tasks by current status.", labels=["status"])
        for status, n in counts.items():
            depth.add_metric([status], n)
        yield depth
        yield GaugeMetricFamily(
            "clawsite_queue_depth", "Tasks waiting to run.", value=counts["queued"]
        )
        yield GaugeMetricFamily(
            "clawsite_tasks_running", "Tasks running now.", value=counts["running"]
        )
        beats = GaugeMetricFamily(
            "clawsite_worker_last_heartbeat_timestamp_seconds",
            "Unix time of each worker's last heartbeat.",
            labels=["worker"],
        )
        running = GaugeMetricFamily(
            "clawsite_worker_running_tasks", "Tasks each worker runs.", labels=["worker"]
        )
        workers = list(WorkerHeartbeat.objects.all())
        for beat in workers:
            beats.add_metric([beat.worker_id], beat.last_heartbeat.timestamp())
            running.add_metric([beat.worker_id], beat.running)
        yield beats
        yield running
        now = timezone.now()
        fresh = sum(1 for beat in workers if beat.is_alive(now))
        yield GaugeMetricFamily("clawsite_workers", "Workers with a recent heartbeat.", value=fresh)
        yield from self._queue_families()

    @staticmethod
    def _queue_families() -> Iterator[Metric]:
        from .queues import queue_rows

        tasks = GaugeMetricFamily(
            "clawsite_queue_tasks",
            "Queued and running tasks, by queue.",
            labels=["queue", "status"],
        )
        paused = GaugeMetricFamily(
            "clawsite_queue_paused", "1 when the queue is paused.", labels=["queue"]
        )
        for row in queue_rows():
            tasks.add_metric([row["name"], "queued"], row["queued"])
            tasks.add_metric([row["name"], "running"], row["running"])
            paused.add_metric([row["name"]], int(row["paused"]))
        yield tasks
        yield paused

    def _redis_families(self) -> Iterator[Metric]:
        flush()  # this process's own increments; other processes' are at most FLUSH_SECONDS old
        try:
            pipe = _redis().pipeline(transaction=False)
            for name in (
                "submitted",
                "finished",
                "duration_buckets",
                "duration_sum",
                "worker_renewals",
                "django_submitted",
                "django_finished",
            ):
                pipe.hgetall(_key(name))
            submitted, finished, buckets, sums, renewals, django_submitted, django_finished = (
                pipe.execute()
            )
        except redis.RedisError:
            logger.warning("metrics: Redis unavailable, counters left out", exc_info=True)
            return
        family = CounterMetricFamily(
            "clawsite_tasks_submitted", "Tasks submitted, by tool.", labels=["tool"]
        )
        for tool, n in sorted(submitted.items()):
            family.add_metric([tool], int(n))
        yield family
        family = CounterMetricFamily(
            "clawsite_tasks_finished",
            "Tasks that reached a terminal state.",
            labels=["tool", "status"],
        )
        for field, n in sorted(finished.items()):
            tool, _, status = field.rpartition("|")
            family.add_metric([tool, status], int(n))
        yield family
        yield self._histogram(buckets, sums)
        family = CounterMetricFamily(
            "clawsite_worker_renewals",
            "Workers that replaced themselves (CLAWSITE_WORKER_MAX_TASKS / _MAX_MEMORY_MB).",
            labels=["reason"],
        )
        for reason, n in sorted(renewals.items()):
            family.add_metric([reason], int(n))
        yield family
        family = CounterMetricFamily(
            "clawsite_django_tasks_submitted",
            "Django tasks enqueued, by function.",
            labels=["function"],
        )
        for function, n in sorted(django_submitted.items()):
            family.add_metric([function], int(n))
        yield family
        family = CounterMetricFamily(
            "clawsite_django_tasks_finished",
            "Django tasks that reached a terminal state, by function.",
            labels=["function", "status"],
        )
        for field, n in sorted(django_finished.items()):
            function, _, status = field.rpartition("|")
            family.add_metric([function, status], int(n))
        yield family

    @staticmethod
    def _histogram(buckets: dict[str, str], sums: dict[str, str]) -> Metric:
        per_tool: dict[str, list[int]] = {}
        for field, n in buckets.items():
            tool, _, index = field.rpartition("|")
            counts = per_tool.setdefault(tool, [0] * (len(DURATION_BUCKETS) + 1))
            counts[min(int(index), len(DURATION_BUCKETS))] += int(n)
        family = HistogramMetricFamily(
            "clawsite_task_duration_seconds",
            "Duration of finished tasks' last attempt.",
            labels=["tool"],
        )
        for tool, counts in sorted(per_tool.items()):
            cumulative: list[tuple[str, float]] = []
            total = 0
            for bound, count in zip([*map(str, DURATION_BUCKETS), "+Inf"], counts, strict=True):
                total += count
                cumulative.append((bound, total))
            family.add_metric([tool], cumulative, sum_value=float(sums.get(tool, 0.0)))
        return family

    def _cache_families(self) -> Iterator[Metric]:
        from .stats import get_cache_stats

        try:
            cache = get_cache_stats()
        except Exception:  # the cache's Redis away: leave its families out, keep the rest
            logger.warning("metrics: cache statistics unavailable", exc_info=True)
            return
        hits = CounterMetricFamily(
            "clawsite_cache_hits", "Tool cache hits, by tool.", labels=["tool"]
        )
        misses = CounterMetricFamily(
            "clawsite_cache_misses", "Tool cache misses, by tool.", labels=["tool"]
        )
        keys = GaugeMetricFamily(
            "clawsite_cache_keys", "Entries in the tool cache, by tool.", labels=["tool"]
        )
        for tool, numbers in sorted(cache.get("by_tool", {}).items()):
            hits.add_metric([tool], numbers.get("hits", 0))
            misses.add_metric([tool], numbers.get("misses", 0))
            keys.add_metric([tool], numbers.get("keys", 0))
        yield hits
        yield misses
        yield keys


def render_metrics() -> tuple[bytes, str]:
    """The exposition of every ClawSite metric (not the process's own default collectors, which
    would describe one process of many): the body and its content type."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClawSiteCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
