"""Jobs are declared here as data; the Dramatiq actors are built later, on a broker from settings.

``@dramatiq.actor`` binds to a broker when the module is imported (and, if none is set, creates
a default one on localhost:6379). Our ``@job`` only records a ``JobSpec``: importing a domain's
``actors.py`` reads no settings and opens no connection. ``jobs.broker.create_broker`` declares
every registered spec as a real actor on the broker the process built.

This module is also the sending half. A job is sent **by name**, so a sender never imports the
module that consumes its message and no import cycle can form through a queue::

    SIGN_WITHDRAWAL = jobs.name("custody.sign_withdrawal")  # declared at import
    ...
    jobs.send_after_commit(session, SIGN_WITHDRAWAL, str(withdrawal.id))

Which modules declare actors is the process wiring's business (``cli.registry``); building the
broker fails on any declared name that no actor answers.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import after_commit

# One Dramatiq queue per consumer kind (DESIGN.md). Deposit credits and reversals have their own
# (`deposits`): withdrawals in trouble (a node timing out, fee bumps, a signer down) fill the
# custody queue, and a customer's credit must never wait behind them. Webhooks have theirs too: an
# integrator's slow endpoint holds a worker thread for up to its timeout, never an email's.
QUEUES = ("allocator", "custody", "deposits", "signer", "compliance", "notifications", "reports", "treasury",
          "webhooks")

# `virtuoz worker NAME` consumes these queues. The first queue of each worker also carries its
# heartbeat job, so a fresh heartbeat proves that worker is draining that queue.
WORKERS: dict[str, list[str]] = {
    "custody": ["custody"],
    "deposits": ["deposits"],
    "compliance": ["compliance", "reports"],
    "notifications": ["notifications"],
    "allocator": ["allocator"],
    "treasury": ["treasury"],
    "webhooks": ["webhooks"],
}

# Retries use Dramatiq's exponential backoff from 15 s: the 10th retry waits about 4 hours, so a
# job keeps trying through a long outage of a chain node or SMTP relay, then dead-letters.
DEFAULT_MAX_RETRIES = 10
DEFAULT_TIME_LIMIT_MS = 60_000

JOB_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")  # "domain.verb"
BROKER_INFO_KEY = "virtuoz.broker"

# Messages carry ids and short strings, never objects or secrets (DESIGN.md): whatever is
# needed is read again from the database by the job, which also makes redelivery harmless.
JobArg = str | int | bool | None
JobFn = Callable[..., Awaitable[None]]

_registry: dict[str, JobSpec] = {}
_declared: dict[str, str] = {}  # job name -> the module that sends it


class JobError(RuntimeError):
    """A job is declared or sent in a way that can never work; the message says why."""


@dataclass(frozen=True)
class JobSpec:
    """A job: ``fn(session, *args)`` run by a worker inside one unit of work."""

    name: str
    queue: str
    fn: JobFn | None  # None: an actor of another process (the signer), sent to but never run here
    max_retries: int = DEFAULT_MAX_RETRIES
    time_limit_ms: int = DEFAULT_TIME_LIMIT_MS
    # Messages older than this are acknowledged without running (not dead-lettered): for
    # periodic work whose next run supersedes a missed one, such as heartbeats.
    expires_after_ms: int | None = None

    def message(self, *args: JobArg) -> dramatiq.Message[None]:
        for arg in args:
            # bool is an int; float is refused on purpose: money never travels as a float.
            if arg is not None and not isinstance(arg, (str, int)):
                raise JobError(
                    f"job {self.name}: argument {arg!r} is a {type(arg).__name__}; send ids as str (str(uuid))"
                )
        return dramatiq.Message(queue_name=self.queue, actor_name=self.name, args=args, kwargs={}, options={})


def job(
    name: str,
    *,
    queue: str,
    max_retries: int = DEFAULT_MAX_RETRIES,
    time_limit_ms: int = DEFAULT_TIME_LIMIT_MS,
    expires_after_ms: int | None = None,
) -> Callable[[JobFn], JobSpec]:
    """Register ``async def fn(session, *args)`` as the job ``name`` ("domain.verb") on ``queue``."""
    if not JOB_NAME.fullmatch(name):
        raise JobError(f"job name {name!r} is not 'domain.verb' (lower case, dot-separated)")
    if queue not in QUEUES:
        raise JobError(f"job {name}: unknown queue {queue!r}; queues are {', '.join(QUEUES)}")

    def register(fn: JobFn) -> JobSpec:
        if not inspect.iscoroutinefunction(fn):
            raise JobError(f"job {name}: {fn.__qualname__} must be an async def taking (session, *args)")
        if name in _registry:
            raise JobError(f"job {name} is declared twice ({_registry[name].fn.__module__} and {fn.__module__})")
        spec = JobSpec(name, queue, fn, max_retries, time_limit_ms, expires_after_ms)
        _registry[name] = spec
        return spec

    return register


def external(job_name: str, *, queue: str) -> str:
    """Declare a job that another process answers (the isolated signer, which imports core only):
    it can be sent by name like any other, and no process here declares an actor for it."""
    if job_name not in _registry:
        _registry[job_name] = JobSpec(job_name, queue, None)
    return name(job_name)


def registered_jobs() -> list[JobSpec]:
    """Every job whose actor module has been imported (``cli.registry.load`` imports them all)."""
    return list(_registry.values())


def name(job_name: str) -> str:
    """Declare, at import, a job this module sends: ``SEND = jobs.name("domain.verb")``.

    The declaration is what lets the broker (and a test) prove every sent name has an actor,
    before the first message is lost in production.
    """
    if not JOB_NAME.fullmatch(job_name):
        raise JobError(f"job name {job_name!r} is not 'domain.verb' (lower case, dot-separated)")
    _declared.setdefault(job_name, sys._getframe(1).f_globals.get("__name__", "?"))
    return job_name


def unanswered() -> dict[str, str]:
    """Declared job names with no registered actor, each with the module that sends it."""
    return {job_name: sender for job_name, sender in _declared.items() if job_name not in _registry}


def message(job_name: str, *args: JobArg) -> dramatiq.Message[None]:
    spec = _registry.get(job_name)
    if spec is None:
        raise JobError(f"no actor answers job {job_name!r}: is its actors module in cli.registry?")
    return spec.message(*args)


def send_after_commit(session: AsyncSession, job_name: str, *args: JobArg) -> None:
    """Enqueue the job ``job_name`` once ``session``'s transaction commits; never if it rolls back."""
    built = message(job_name, *args)  # an unknown job or invalid arguments fail now, inside the transaction
    after_commit(session, enqueue, broker_of(session), built)


def bind_broker(factory: async_sessionmaker[AsyncSession], broker: dramatiq.Broker) -> None:
    """Let sessions from ``factory`` send jobs after commit: call once where the factory is built."""
    factory.configure(info={**factory.kw.get("info", {}), BROKER_INFO_KEY: broker})


def broker_of(session: AsyncSession) -> dramatiq.Broker:
    broker = session.info.get(BROKER_INFO_KEY)
    if broker is None:
        raise JobError("this session has no broker: build its factory with jobs.registry.bind_broker(factory, broker)")
    return broker


async def enqueue(broker: dramatiq.Broker, message: dramatiq.Message[Any]) -> dramatiq.Message[Any]:
    """Send ``message`` without blocking the event loop: Dramatiq's RedisBroker is synchronous."""
    return await asyncio.get_running_loop().run_in_executor(None, broker.enqueue, message)


def enqueue_many(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[Any]]) -> None:
    """``broker.enqueue`` for each of ``messages``, in one Redis round trip (blocking: call it from a thread).

    A scanner catching up sends hundreds of credit requests per transaction; one at a time, each is a
    round trip and a Lua call. Each message goes through Dramatiq's own enqueue script, as
    ``RedisBroker.enqueue`` sends it (a Redis message id of its own, the enqueue middleware hooks), only
    pipelined. Other brokers get ``enqueue`` per message.
    """
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return
    dispatch, sent = broker.scripts["dispatch"], []
    with broker.client.pipeline(transaction=False) as pipe:
        for message in messages:
            message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
            broker.emit_before("enqueue", message, None)
            dispatch(keys=[broker.namespace], client=pipe, args=[
                "enqueue", current_millis(), message.queue_name, broker.broker_id, broker.heartbeat_timeout,
                broker.dead_message_ttl, broker._should_do_maintenance("enqueue"), broker._max_unpack_size(),
                message.options["redis_message_id"], message.encode()])
            sent.append(message)
        pipe.execute()
    for message in sent:
        broker.emit_after("enqueue", message, None)
