"""HTTP: submit over daphne (single and batch of 100) against a bare JSON view on the same daphne
(parses the same body, no auth, no database), driven over loopback. The bare view is served two
ways: under /api/ by the same lean handler as the API (the target's reference: the same plumbing,
so the ratio is what submitting costs), and by the site's full middleware stack (for scale)."""

from __future__ import annotations

import asyncio
import statistics

from ..env import BenchEnv, free_port, wait_port
from ..harness import Deadline, Row, Stat, percentile
from ..loadgen import build_request, drive
from .common import NOOP_TOOL, bench_user, clear_tasks

CONNECTIONS = 16
BATCH = 100
# A per-user API rate that does not bind at these request rates: what the check itself costs.
API_RATE = "10000000/m"


def run(env: BenchEnv, quick: bool, budget: float) -> list[Row]:
    _, token = bench_user()
    port, rate_port = free_port(), free_port()
    daphne = env.start_daphne(port)
    daphne_rate = env.start_daphne(rate_port, CLAWSITE_API_RATE=API_RATE)
    deadline = Deadline(budget)
    reps = 3
    single_n = 600 if quick else 3000
    batch_n = 60 if quick else 300
    one = {"tool": NOOP_TOOL, "args": {"n": 1}}
    many = {"tasks": [{"tool": NOOP_TOOL, "args": {"n": i}} for i in range(BATCH)]}
    requests = {
        "bare-single": (port, build_request("POST", "/api/bench/json", one, token, port)),
        "site-single": (port, build_request("POST", "/bench/json", one, token, port)),
        "submit-single": (port, build_request("POST", "/api/v1/tasks", one, token, port)),
        "rated-single": (
            rate_port,
            build_request("POST", "/api/v1/tasks", one, token, rate_port),
        ),
        "bare-batch": (port, build_request("POST", "/api/bench/json", many, token, port)),
        "site-batch": (port, build_request("POST", "/bench/json", many, token, port)),
        "submit-batch": (port, build_request("POST", "/api/v1/tasks/batch", many, token, port)),
    }
    samples: dict[str, list[float]] = {name: [] for name in requests}
    latencies: dict[str, list[float]] = {name: [] for name in requests}
    try:
        wait_port(port)
        wait_port(rate_port)

        async def measure() -> None:
            for at, raw in requests.values():  # warm-up: imports, connections, caches
                await drive(
                    at,
                    lambda i, raw=raw: raw,  # type: ignore[misc]
                    50,
                    4,
                    30,
                )
            for _ in range(reps):
                # Alternate the four so drift on the shared machine hits them alike.
                for name, (at, raw) in requests.items():
                    count = single_n if name.endswith("single") else batch_n
                    left = deadline.left() / 2
                    result = await drive(
                        at,
                        lambda i, raw=raw: raw,  # type: ignore[misc]
                        count,
                        CONNECTIONS,
                        max(1.0, left),
                    )
                    bad = {s: c for s, c in result.statuses.items() if s != 202}
                    if bad:
                        raise RuntimeError(
                            f"{name}: unexpected statuses {bad}: {env.log_tail(f'daphne-{at}', 1500)}"
                        )
                    samples[name].append(result.per_second)
                    latencies[name].extend(result.latencies)

        asyncio.run(measure())
    finally:
        env.stop(daphne)
        env.stop(daphne_rate)
        clear_tasks()

    def stat(name: str, scale: float = 1.0) -> Stat:
        return Stat.of([v * scale for v in samples[name]], "req/s" if scale == 1 else "tasks/s")

    def p99(name: str) -> str:
        values = latencies[name]
        return f"p50 {statistics.median(values) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f} ms"

    rows = [
        Row(
            "http",
            f"POST /api/v1/tasks, {CONNECTIONS} connections, CLAWSITE_API_RATE={API_RATE}",
            stat("rated-single"),
            "the same without an API rate (same run, alternated)",
            stat("submit-single"),
            ">= 0.95x",
            0.95,
            note=f"rated {p99('rated-single')}",
        )
    ]
    for kind, label, reference in (
        ("single", f"POST /api/v1/tasks, {CONNECTIONS} connections", "bare JSON view"),
        (
            "batch",
            f"POST /api/v1/tasks/batch of {BATCH}, {CONNECTIONS} connections",
            f"bare JSON view, same {BATCH}-task body",
        ),
    ):
        submitted = stat(f"submit-{kind}")
        tasks = f"= {submitted.median * BATCH:,.0f} tasks/s; " if kind == "batch" else ""
        rows += [
            Row(
                "http",
                label,
                submitted,
                f"{reference}, same daphne, same /api/ handler",
                stat(f"bare-{kind}"),
                ">= 0.7x",
                0.7,
                note=f"{tasks}submit {p99(f'submit-{kind}')}; bare {p99(f'bare-{kind}')}",
            ),
            Row(
                "http",
                label,
                submitted,
                f"{reference} through the site's full middleware stack",
                stat(f"site-{kind}"),
                "(info)",
            ),
        ]
    return rows
