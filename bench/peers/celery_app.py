"""Celery 5 with the Redis broker, no result backend (the task counts itself done)."""

from celery import Celery

from . import PREFIX, URL, count_done

app = Celery("bench_peer", broker=URL)
app.conf.update(
    broker_transport_options={"global_keyprefix": f"{PREFIX}:"},
    task_default_queue=f"{PREFIX}-queue",
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop(n: int = 0) -> None:
    count_done()
