"""``python -m bench.peers.enqueue celery|dramatiq|huey N``: put N no-op tasks on a peer's queue
(run as its own process, with the peer's Redis URL and prefix in the environment)."""

import sys


def main() -> None:
    peer, count = sys.argv[1], int(sys.argv[2])
    if peer == "celery":
        from .celery_app import noop as celery_noop

        for i in range(count):
            celery_noop.delay(i)
    elif peer == "dramatiq":
        from .dramatiq_app import noop as dramatiq_noop

        for i in range(count):
            dramatiq_noop.send(i)
    elif peer == "huey":
        from .huey_app import noop as huey_noop

        for i in range(count):
            huey_noop(i)
    else:
        raise SystemExit(f"unknown peer {peer!r}")


if __name__ == "__main__":
    main()
