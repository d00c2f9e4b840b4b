"""Dramatiq with its Redis broker, no results middleware (the task counts itself done)."""

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from . import PREFIX, URL, count_done

broker = RedisBroker(url=URL, namespace=f"{PREFIX}-dramatiq")
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop(n: int = 0) -> None:
    count_done()
