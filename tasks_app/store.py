"""The hot path's SQL: insert a batch, claim a batch, finish a batch.

Everything else uses the ORM. These three statements run thousands of times a second, so they are
raw, batched SQL (one statement per batch, not per task), written once for SQLite and PostgreSQL.
Values are adapted and rows decoded by the model's own fields, so the ORM reads what this writes.
"""

from __future__ import annotations

import json
import logging
import operator
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import (
    DEFAULT_DB_ALIAS,
    DataError,
    IntegrityError,
    connection,
    connections,
    transaction,
)
from django.db.models.base import ModelState

from .models import Queue, Task, TaskStatus
from .safejson import storable_text
from .serializers import isoformat

logger = logging.getLogger(__name__)

_FIELDS = Task._meta.concrete_fields
_TABLE = Task._meta.db_table
_COLUMNS = ", ".join(connection.ops.quote_name(f.column) for f in _FIELDS if f.column)
_CLAIM_INDEX = "task_claim_idx"
_INSERT_SQL = f"INSERT INTO {_TABLE} ({_COLUMNS}) VALUES ({', '.join(['%s'] * len(_FIELDS))})"


# Columns whose Python value is already what the database driver takes (the field's own
# get_db_prep_save would return it unchanged): the batch insert skips the per-value call.
_PLAIN_TYPES = frozenset(
    {
        "CharField",
        "IntegerField",
        "PositiveIntegerField",
        "SmallIntegerField",
        "PositiveSmallIntegerField",
        "BigIntegerField",
        "FloatField",
        "BooleanField",
        "ForeignKey",
    }
)
_ATTNAMES = [f.attname for f in _FIELDS]


# Per column of a new task: its default, as a factory (callable defaults) or a constant.
_NEW_DEFAULTS = [
    (f.attname, f.get_default if f.has_default() and callable(f.default) else None, f.get_default())
    for f in _FIELDS
]


def _instance(values: dict[str, Any], db: str | None = None) -> Task:
    """A Task with these column values, built as ``Model.from_db`` would be minus
    ``Model.__init__``'s per-field descriptor work (a fifth of a batch submit's time and of a
    claim's decoding, bench profiles). Task has no ``pre_init``/``post_init`` receivers; the
    results are tested equal to the ORM's (tests/test_hot_path.py)."""
    task = Task.__new__(Task)
    task.__dict__.update(values)
    task._state = ModelState()
    if db is not None:  # loaded from the database, not a new row
        task._state.adding, task._state.db = False, db
    return task


def new_task(**values: Any) -> Task:
    """A new, unsaved Task from column values (``owner_id``, not ``owner``), the rest defaults."""
    return _instance(
        {
            name: values[name]
            if name in values
            else (factory() if factory is not None else constant)
            for name, factory, constant in _NEW_DEFAULTS
        }
    )


def _db() -> Any:
    """This thread's connection wrapper, looked up once per batch rather than per value (each
    attribute of the ``connection`` proxy is a thread-local lookup: 30% of a batch's time)."""
    return connections[DEFAULT_DB_ALIAS]


_decode_plans: weakref.WeakKeyDictionary[Any, list[tuple[int, Any, list[Any]]]] = (
    weakref.WeakKeyDictionary()
)


def _decode_plan(db: Any) -> list[tuple[int, Any, list[Any]]]:
    """Per column with converters: its index, expression and converters, as the ORM has them
    (once per connection: building it cost more than a one-row read)."""
    plan = _decode_plans.get(db)
    if plan is None:
        plan = _decode_plans[db] = [
            (index, column, [_faster(converter, db) for converter in converters])
            for index, model_field in enumerate(_FIELDS)
            if (
                converters := db.ops.get_db_converters(column := model_field.get_col(_TABLE))
                + model_field.get_db_converters(db)
            )
        ]
    return plan


def _faster(converter: Any, db: Any) -> Any:
    """SQLite's datetime converter, done in C: the text it stores (UTC, naive, ISO 8601) parsed
    by ``datetime.fromisoformat`` instead of Django's regular expression (a fifth of a claim's
    decoding), made aware in the connection's zone as Django does."""
    if db.vendor != "sqlite" or converter != db.ops.convert_datetimefield_value:
        return converter
    zone = db.timezone

    def convert(value: Any, expression: Any, connection: Any) -> Any:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if zone is not None and value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value

    return convert


def _decode(rows: Iterable[Sequence[Any]]) -> list[Task]:
    """Rows (all columns, in field order) as Task instances, through the converters the ORM
    itself would apply; columns without converters are taken as they are, and NULL stays NULL
    (every converter of these fields returns None for None)."""
    db = _db()
    plan = _decode_plan(db)
    tasks = []
    for row in rows:
        values = list(row)
        for index, column, converters in plan:
            value = values[index]
            if value is None:
                continue
            for converter in converters:
                value = converter(value, column, db)
            values[index] = value
        tasks.append(_instance(dict(zip(_ATTNAMES, values, strict=True)), DEFAULT_DB_ALIAS))
    return tasks


_PREPARE = {f.name: f.get_db_prep_save for f in _FIELDS}


def _adapt(field_name: str, value: Any, db: Any) -> Any:
    """``value`` as the field's column takes it on ``db`` (NULL stays NULL for every field)."""
    return None if value is None else _PREPARE[field_name](value, db)


# The columns whose values need the field's own adaptation (datetimes, JSON), by position.
_ADAPTED = [
    (index, _PREPARE[model_field.name])
    for index, model_field in enumerate(_FIELDS)
    if model_field.get_internal_type() not in _PLAIN_TYPES
]
_row_values = operator.attrgetter(*_ATTNAMES)


def insert_tasks(tasks: Sequence[Task]) -> None:
    """Insert new tasks in one statement (the caller holds the transaction)."""
    insert_rows(insert_params(tasks))


def insert_params(tasks: Sequence[Task]) -> list[list[Any]]:
    """The INSERT's parameters: each task's column values, adapted for this connection."""
    db = _db()
    params = []
    for task in tasks:
        values = list(_row_values(task))
        for index, prepare in _ADAPTED:
            if values[index] is not None:  # NULL stays NULL for every field type
                values[index] = prepare(values[index], db)
        params.append(values)
    return params


def insert_rows(params: list[list[Any]]) -> None:
    """The INSERT itself, of rows ``insert_params`` built (the bench times it alone)."""
    with _db().cursor() as cursor:
        cursor.executemany(_INSERT_SQL, params)


_FETCH_SQL = f"SELECT {_COLUMNS} FROM {_TABLE} WHERE id = %s"


def fetch_task(task_id: str, owner_id: int | None = None) -> Task | None:
    """One task by id (only if ``owner_id`` owns it, when given): the API's lookup, on every
    GET and long-poll, as one primary-key read without the ORM's query building."""
    sql = _FETCH_SQL
    params: list[Any] = [task_id]
    if owner_id is not None:
        sql, params = f"{sql} AND owner_id = %s", [task_id, owner_id]
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return _decode(rows)[0] if rows else None


_QUEUE_CLAIM_INDEX = "task_queue_claim_idx"
_PAUSED = f"SELECT name FROM {Queue._meta.db_table} WHERE paused"


def claim_sql(queues: Sequence[str] = ()) -> str:
    """The claim statement for this connection's database (parameters: see the caller), for a
    worker of every queue (``queues`` empty) or of these queues only. Paused queues are left
    out in the statement itself, so a pause holds for every worker from its next claim on.

    Every queue: one walk of ``task_claim_idx``. Some queues: one walk of
    ``task_queue_claim_idx`` per queue, each taking its best ``limit``, merged in claim order
    (a sort of at most ``limit`` rows per queue, never of the queue).

    On PostgreSQL the candidates go through ``ARRAY(...)``, evaluated once: a plain
    ``IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`` may be planned as a sub-plan run again
    for each outer row, which claims more than ``n`` rows, out of order (seen in the tests).
    """
    queued = TaskStatus.QUEUED.value
    sqlite = connection.vendor == "sqlite"
    # The outer status test is a guard only; on SQLite its unary ``+`` keeps it off the status
    # index, so the picked ids are looked up by primary key (with the index, SQLite walked every
    # queued row: 13 ms per claim at 20,000 queued, measured by the bench).
    if sqlite:
        lock, head, tail, guard = "", "IN (", ")", "+status"
    else:
        lock, head, tail, guard = " FOR UPDATE SKIP LOCKED", "= ANY(ARRAY(", "))", "status"
    runnable = (
        f"status = '{queued}' AND (run_after IS NULL OR run_after <= %s) "
        f"AND queue NOT IN ({_PAUSED})"
    )
    order = "ORDER BY priority DESC, created_at LIMIT %s"

    def walk(index: str, condition: str, columns: str) -> str:
        source = f"{_TABLE} INDEXED BY {index}" if sqlite else _TABLE
        return f"SELECT {columns} FROM {source} WHERE {condition}{runnable} {order}{lock}"

    if not queues:
        candidates = walk(_CLAIM_INDEX, "", "id")
    elif len(queues) == 1:
        candidates = walk(_QUEUE_CLAIM_INDEX, "queue = %s AND ", "id")
    else:
        branches = " UNION ALL ".join(
            f"SELECT * FROM ({walk(_QUEUE_CLAIM_INDEX, 'queue = %s AND ', 'id, priority, created_at')}) q{i}"
            for i in range(len(queues))
        )
        candidates = f"SELECT id FROM ({branches}) candidates {order}"
    return (
        f"UPDATE {_TABLE} SET status = %s, worker_id = %s, attempts = attempts + 1, "
        f"started_at = %s, lease_expires_at = %s, progress = NULL, cache_hit = %s, "
        f"version = version + 1 "
        f"WHERE id {head}{candidates}{tail} "
        f"AND {guard} = '{queued}' "
        f"RETURNING {_COLUMNS}"
    )


def claim_runnable_tasks(
    worker_id: str, limit: int, now: datetime, lease: timedelta, queues: Sequence[str] = ()
) -> list[Task]:
    """Atomically move up to ``limit`` runnable tasks to ``running`` for ``worker_id``.

    Runnable: queued, ``run_after`` due, in one of ``queues`` (every queue when empty) and in
    no paused queue; highest priority first, then oldest. One conditional UPDATE: on SQLite the
    IMMEDIATE transaction makes it the only writer, on PostgreSQL ``FOR UPDATE SKIP LOCKED``
    lets concurrent workers take disjoint rows.

    ``status = 'queued'`` is a literal, not a parameter, so both databases can prove that the
    partial index ``task_queue_claim_idx`` applies; SQLite is told which index to use
    (``INDEXED BY``), since without statistics its planner prefers the status index and then
    sorts the whole queue.
    """
    if limit <= 0:
        return []
    db = _db()
    due = _adapt("run_after", now, db)
    params: list[Any] = [
        TaskStatus.RUNNING,
        worker_id,
        _adapt("started_at", now, db),
        _adapt("lease_expires_at", now + lease, db),
        _adapt("cache_hit", False, db),
    ]
    if not queues:
        params += [due, limit]
    elif len(queues) == 1:
        params += [queues[0], due, limit]
    else:
        for queue in queues:
            params += [queue, due, limit]
        params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(claim_sql(queues), params)
        claimed = _decode(cursor.fetchall())
    claimed.sort(key=lambda t: (-t.priority, t.created_at))
    return claimed


def _claim_frame() -> tuple[str, str, str, str, str]:
    """Per database: the row source, lock clause, id-set brackets and status guard of a claim
    (see ``claim_sql`` for why)."""
    if connection.vendor == "sqlite":
        return f"{_TABLE} INDEXED BY {_CLAIM_INDEX}", "", "IN (", ")", "+status"
    return _TABLE, " FOR UPDATE SKIP LOCKED", "= ANY(ARRAY(", "))", "status"


_QUEUED_SQL = (
    f"status = '{TaskStatus.QUEUED.value}' AND (run_after IS NULL OR run_after <= %s) "
    f"AND queue NOT IN ({_PAUSED})"
)
_CLAIM_SET = (
    f"UPDATE {_TABLE} SET status = %s, worker_id = %s, attempts = attempts + 1, "
    f"started_at = %s, lease_expires_at = %s, progress = NULL, cache_hit = %s, "
    f"version = version + 1 "
)


def _claim_params(worker_id: str, now: datetime, lease: timedelta) -> list[Any]:
    db = _db()
    return [
        TaskStatus.RUNNING,
        worker_id,
        _adapt("started_at", now, db),
        _adapt("lease_expires_at", now + lease, db),
        _adapt("cache_hit", False, db),
    ]


# Limits name a column of the task: "tool:<name>" the tool, "queue:<name>" the queue.
LIMIT_COLUMNS = {"tool": "tool", "queue": "queue"}


def _in(column: str, values: Sequence[str], negate: bool = False) -> tuple[str, list[Any]]:
    if not values:
        return ("1 = 1", []) if negate else ("1 = 0", [])
    marks = ", ".join(["%s"] * len(values))
    return f"{column} {'NOT IN' if negate else 'IN'} ({marks})", list(values)


def claim_limited_tasks(
    worker_id: str,
    limit: int,
    now: datetime,
    lease: timedelta,
    allowances: dict[tuple[str, str], int],
    queues: Sequence[str] = (),
) -> list[Task]:
    """``claim_runnable_tasks`` under limits: at most ``allowances[(kind, name)]`` tasks of a
    limited tool (``("tool", name)``) or queue (``("queue", name)``), still one statement.

    The candidates are the union of disjoint parts, each walking the claim index with its own
    LIMIT: the tasks of no limited tool or queue (up to ``limit``), and per limited tool and
    per limited queue its allowance, so a held-back tool never hides the others behind it
    (no starvation). A task under both a tool's and a queue's limit is in its tool's part, and
    a window over the (small) union keeps each limited queue within its allowance. A worker
    of some ``queues`` only adds them to every part's condition.
    """
    if limit <= 0:
        return []
    source, lock, head, tail, guard = _claim_frame()
    tools = {name: a for (kind, name), a in allowances.items() if kind == "tool"}
    limited_queues = {name: a for (kind, name), a in allowances.items() if kind == "queue"}
    blocked_queues = [name for name, a in limited_queues.items() if a <= 0]
    run_after = _adapt("run_after", now, _db())
    extra = ", queue" if limited_queues else ""
    parts: list[str] = []
    params: list[Any] = []

    mine, mine_params = _in("queue", list(queues)) if queues else ("1 = 1", [])

    def part(condition: str, condition_params: list[Any], part_limit: int) -> None:
        parts.append(
            f"SELECT * FROM (SELECT id, priority, created_at{extra} FROM {source} "
            f"WHERE {_QUEUED_SQL} AND {mine} AND {condition} "
            f"ORDER BY priority DESC, created_at LIMIT %s{lock}) AS p{len(parts)}"
        )
        params.extend([run_after, *mine_params, *condition_params, part_limit])

    no_tool, no_tool_params = _in("tool", list(tools), negate=True)
    no_queue, no_queue_params = _in("queue", list(limited_queues), negate=True)
    part(f"{no_tool} AND {no_queue}", no_tool_params + no_queue_params, limit)
    not_blocked, not_blocked_params = _in("queue", blocked_queues, negate=True)
    for name, allowed in tools.items():
        if allowed > 0:
            part(f"tool = %s AND {not_blocked}", [name, *not_blocked_params], min(limit, allowed))
    for name, allowed in limited_queues.items():
        if allowed > 0:
            part(f"queue = %s AND {no_tool}", [name, *no_tool_params], min(limit, allowed))
    union = " UNION ALL ".join(parts)
    if any(a > 0 for a in limited_queues.values()):
        cases = " ".join("WHEN %s THEN %s" for _ in limited_queues)
        picked = (
            f"SELECT id FROM (SELECT id, priority, created_at, queue, ROW_NUMBER() OVER "
            f"(PARTITION BY queue ORDER BY priority DESC, created_at) AS nth FROM ({union}) AS u) "
            f"AS w WHERE {no_queue} OR nth <= CASE queue {cases} ELSE 0 END "
            f"ORDER BY priority DESC, created_at LIMIT %s"
        )
        params += no_queue_params
        params += [value for name, allowed in limited_queues.items() for value in (name, allowed)]
    else:
        picked = f"SELECT id FROM ({union}) AS u ORDER BY priority DESC, created_at LIMIT %s"
    params.append(limit)
    sql = (
        f"{_CLAIM_SET}WHERE id {head}{picked}{tail} "
        f"AND {guard} = '{TaskStatus.QUEUED.value}' RETURNING {_COLUMNS}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, _claim_params(worker_id, now, lease) + params)
        claimed = _decode(cursor.fetchall())
    claimed.sort(key=lambda t: (-t.priority, t.created_at))
    return claimed


@dataclass
class Completion:
    """The end of one attempt, as the worker that ran it writes it.

    ``status`` is terminal, or ``queued`` again for a retry (then ``run_after`` is the backoff).
    """

    task: Task
    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    cache_hit: bool = False
    finished_at: datetime | None = None
    duration_ms: float | None = None
    run_after: datetime | None = None
    # Set when the attempt must not count against the budget (requeued at a worker's shutdown).
    max_attempts: int | None = None
    # The fenced UPDATE's parameters, once prepared (then the task reads as written).
    params: list[Any] | None = field(default=None, repr=False)
    # The task's fields as claimed, before this completion was applied (see ``refuse``).
    claimed_state: tuple[Any, ...] | None = field(default=None, repr=False)

    def prepare(self, worker_id: str) -> None:
        """Apply this completion to its task and build its row's parameters, once: a write
        that must be retried (the database was away) reuses them rather than logging the
        attempt twice."""
        if self.params is not None:
            return
        db = _db()
        attempt = self.task.attempts
        if self.claimed_state is None:
            self.claimed_state = _applied_fields(self.task)
        else:  # applied before, but its parameters could not be built: from the start again
            self._restore()
        task = self.apply()
        self.params = [
            task.status,
            _adapt("result", task.result, db),
            _adapt("error", task.error, db),
            _adapt("cache_hit", task.cache_hit, db),
            _adapt("finished_at", task.finished_at, db),
            task.duration_ms,
            _adapt("run_after", task.run_after, db),
            _adapt("attempt_log", task.attempt_log, db),
            task.max_attempts,
            task.version,
            task.id,
            worker_id,
            attempt,
            TaskStatus.RUNNING,
        ]

    def refuse(self, worker_id: str, message: str) -> None:
        """The store cannot hold this end of the attempt (a database refused a value that got
        past the checks): it ends as failed with ``invalid_result`` and no result instead."""
        if self.claimed_state is not None:
            self._restore()
        self.params = None
        self.status, self.result, self.run_after = TaskStatus.FAILED, None, None
        self.error = {"type": "invalid_result", "message": message}
        self.prepare(worker_id)

    def _restore(self) -> None:
        for name, value in zip(_APPLIED_FIELDS, self.claimed_state or (), strict=True):
            setattr(self.task, name, value)

    def apply(self) -> Task:
        """The task as it reads once this completion is written."""
        task = self.task
        task.attempt_log = [
            *task.attempt_log,
            {
                "attempt": task.attempts,
                "worker_id": task.worker_id,
                "started_at": isoformat(task.started_at),
                "finished_at": isoformat(self.finished_at),
                "error": self.error,
            },
        ]
        task.status = self.status
        task.result = self.result
        # A retry waits with a clean slate; the failed attempt's error stays in the log.
        task.error = None if self.status == TaskStatus.QUEUED else self.error
        task.cache_hit = self.cache_hit
        task.run_after = self.run_after
        task.lease_expires_at = None
        if self.max_attempts is not None:
            task.max_attempts = self.max_attempts
        if self.status == TaskStatus.QUEUED:
            task.finished_at = None
            task.duration_ms = None
        else:
            task.finished_at = self.finished_at
            task.duration_ms = self.duration_ms
        task.version += 1
        return task


# What ``Completion.apply`` changes.
_APPLIED_FIELDS = (
    "attempt_log",
    "status",
    "result",
    "error",
    "cache_hit",
    "run_after",
    "lease_expires_at",
    "max_attempts",
    "finished_at",
    "duration_ms",
    "version",
)
_applied_fields = operator.attrgetter(*_APPLIED_FIELDS)

# What a row's own values can raise when written (the database being away raises
# OperationalError/InterfaceError instead: that is nobody's value).
UNSTORABLE = (DataError, IntegrityError, ValueError, OverflowError, TypeError)


_COMPLETE_SQL = (
    f"UPDATE {_TABLE} SET status = %s, result = %s, error = %s, cache_hit = %s, "
    f"finished_at = %s, duration_ms = %s, run_after = %s, attempt_log = %s, "
    f"lease_expires_at = NULL, max_attempts = %s, version = %s "
    f"WHERE id = %s AND worker_id = %s AND attempts = %s AND status = %s"
)


def complete_tasks(worker_id: str, completions: Sequence[Completion]) -> list[Task]:
    """Write finished attempts in one statement, fenced by worker and attempt.

    A worker whose lease was taken over (the reaper requeued its task and another worker claimed
    it) must not overwrite the newer attempt: the WHERE clause leaves such rows alone, and they
    are left out of the returned list (the tasks as written, for the watchers).
    """
    if not completions:
        return []
    try:
        return _complete(worker_id, completions)
    except UNSTORABLE as error:
        # One end the store cannot hold must not hold up the others (on PostgreSQL a NUL in a
        # result failed the whole batch, for ever): each alone, and the one refused as failed.
        if len(completions) > 1:
            return [t for c in completions for t in complete_tasks(worker_id, [c])]
        logger.warning("task %s: its end cannot be stored: %s", completions[0].task.id, error)
        message = storable_text(f"The result cannot be stored: {type(error).__name__}: {error}")
        completions[0].refuse(worker_id, message[:1000])
        return _complete(worker_id, completions)


def _complete(worker_id: str, completions: Sequence[Completion]) -> list[Task]:
    for completion in completions:
        completion.prepare(worker_id)
    params = [completion.params for completion in completions]
    written = [completion.task for completion in completions]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_COMPLETE_SQL, params)
        if cursor.rowcount == len(params):
            return written
        # Some rows were fenced off (rare: only after a lost lease): keep the tasks whose row
        # reads as we wrote it. The reaper writes the same worker, attempt and version, so the
        # status and error tell its write from ours.
        cursor.execute(
            f"SELECT id, version, worker_id, attempts, status, error FROM {_TABLE} "
            f"WHERE id IN ({', '.join(['%s'] * len(written))})",
            [t.id for t in written],
        )
        rows = {row[0]: row[1:] for row in cursor.fetchall()}
    return [
        t
        for t in written
        if (row := rows.get(t.id)) is not None
        and (row[0], row[1], row[2], row[3]) == (t.version, worker_id, t.attempts, t.status)
        and _load_json(row[4]) == t.error
    ]


def _load_json(value: Any) -> Any:
    """A JSON column as read by a raw cursor: text on SQLite, already decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


_PROGRESS_SQL = (
    f"UPDATE {_TABLE} SET progress = %s, version = %s "
    f"WHERE id = %s AND worker_id = %s AND attempts = %s AND status = %s"
)


def record_progress(worker_id: str, tasks: Sequence[Task]) -> bool:
    """Write the in-memory ``progress`` and ``version`` of running tasks, fenced like completions.
    True when every row was written (none was fenced off)."""
    if not tasks:
        return False
    db = _db()
    params = [
        [
            _adapt("progress", t.progress, db),
            t.version,
            t.id,
            worker_id,
            t.attempts,
            TaskStatus.RUNNING,
        ]
        for t in tasks
    ]
    with connection.cursor() as cursor:
        cursor.executemany(_PROGRESS_SQL, params)
        return cursor.rowcount == len(params)
