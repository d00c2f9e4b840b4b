"""``manage.py runworker tasks``: Channels' worker, plus what it lacks for a durable queue.

Channels creates a consumer only when the first message arrives, and a message on a channel
reaches one process only; so each process sends itself a start-up message, listens on through
Redis outages, and stops gracefully on SIGTERM/SIGINT (a second signal exits at once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from channels.management.commands.runworker import Command as ChannelsRunworker
from channels.worker import Worker
from django.conf import settings
from django.core.management import CommandError

from tasks_app.db import shutdown_db_threads
from tasks_app.queue_names import parse_queue_list
from tasks_app.renewal import replace_process
from tasks_app.worker import get_engine

logger = logging.getLogger("clawsite.worker")

START_MESSAGE = {"type": "worker.start"}
# The consumer joins the workers' group on its start message. Membership is lost when Redis
# restarts empty and expires after channels-redis's group_expiry (a day), so it is renewed
# after any receive failure and every REJOIN_SECONDS (group_add is idempotent).
REJOIN_SECONDS = 600.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class DurableWorker(Worker):
    async def handle(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.rejoin = False
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.on_signal)
        # After a renewal the stop signals arrive blocked (replace_process): deliver them now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        listeners = [asyncio.create_task(self.listener(channel)) for channel in self.channels]
        keeper = asyncio.create_task(self.keep_consumers())
        engine = get_engine()
        # A signal, or the engine past CLAWSITE_WORKER_MAX_TASKS / _MAX_MEMORY_MB.
        waits = [
            asyncio.create_task(self.stopping.wait()),
            asyncio.create_task(engine.renewal.requested.wait()),
        ]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        await engine.stop()
        for task in (*listeners, keeper):
            task.cancel()
        shutdown_db_threads()
        logger.info("worker %s stopped", engine.worker_id)
        # Renew unless a signal came meanwhile (then this is a plain stop). From here a stop
        # signal stays pending for the fresh process, which unblocks it once it can stop cleanly.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        await asyncio.sleep(0)  # a signal's callback already queued still counts
        if not self.stopping.is_set():
            replace_process()

    def on_signal(self) -> None:
        if self.stopping.is_set():
            logger.warning("second signal: exiting now")
            os._exit(1)
        logger.info(
            "stopping: finishing running tasks (grace %ss)", settings.CLAWSITE_WORKER_GRACE_SECONDS
        )
        self.stopping.set()

    async def keep_consumers(self) -> None:
        """Start each channel's consumer now, and again whenever it died (say, Redis went away
        under its group_add); have it rejoin the workers' group after a receive failure (Redis
        may have restarted empty) and every REJOIN_SECONDS."""
        joined = 0.0
        loop = asyncio.get_running_loop()
        while True:
            rejoin = self.rejoin or loop.time() - joined >= REJOIN_SECONDS
            self.rejoin = False
            for channel in self.channels:
                if rejoin or channel not in self.application_instances:
                    scope = {"type": "channel", "channel": channel}
                    await self.get_or_create_application_instance(channel, scope).put(START_MESSAGE)
            if rejoin:
                joined = loop.time()
            await asyncio.sleep(1)

    async def listener(self, channel: str) -> None:
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("channel layer receive failed; retrying", exc_info=True)
                self.rejoin = True
                await asyncio.sleep(1)
                continue
            if not message.get("type"):
                continue
            scope = {"type": "channel", "channel": channel}
            await self.get_or_create_application_instance(channel, scope).put(message)

    async def application_exception(
        self, exception: BaseException, application_details: Any
    ) -> None:
        logger.warning("worker consumer stopped: %r; restarting it", exception)


class Command(ChannelsRunworker):
    help = "Run the ClawSite worker on the given channels (normally: tasks)."
    worker_class = DurableWorker

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--queues",
            default=None,
            help="Comma-separated queues to claim from (default: CLAWSITE_WORKER_QUEUES, "
            "or every queue).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        raw = options["queues"]
        names = settings.CLAWSITE_WORKER_QUEUES if raw is None else raw.split(",")
        try:
            queues = parse_queue_list(name.strip() for name in names if name.strip())
        except ValueError as error:
            raise CommandError(str(error)) from None
        # Read by this process's engine when the start message creates it.
        settings.CLAWSITE_WORKER_QUEUES = queues
        super().handle(*args, **options)
