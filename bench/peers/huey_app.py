"""Huey with Redis storage, results off (the task counts itself done)."""

from huey import RedisHuey

from . import PREFIX, URL, count_done

huey = RedisHuey(f"{PREFIX}-huey", url=URL, results=False)


@huey.task()
def noop(n: int = 0) -> None:
    count_done()
