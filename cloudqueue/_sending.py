"""Sending many messages: chunks of the backend's batch size, several at once, and an
exact account (``EnqueueError``) when not every message reached the queue.

- A repeated idempotency key within one call is sent once; every item carrying it gets
  the id the backend returned for the first.
- Chunks go out ``backend.send_concurrency`` at a time from a pool that lives for the
  call; one chunk, a concurrency of 1, or messages with an ordering key (whose order
  across chunks must hold) go one after another in the calling thread.
- After a chunk fails as a whole (no answer, or the service refused the call), no new
  chunk is started; chunks already under way finish and are counted. A chunk in which
  the service refused single entries does not stop the others, unless ordering keys
  are involved (then any failure stops, so a group never skips ahead of a gap).
- The returned ids keep the input order.
- An app with several queues groups the messages per queue (``send_routed``): each
  group goes through its queue's backend as above, the groups at the same time, and
  one ``EnqueueError`` accounts for every group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._errors import BackendError, BackendUnavailable, EnqueueError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .backends.base import Backend, OutgoingMessage

__all__ = ["send_all", "send_routed"]


def send_all(backend: Backend, messages: Sequence[OutgoingMessage]) -> list[str]:
    """Send ``messages`` through ``backend`` in chunks; return their ids in input order.

    A single message is sent as it is, and its error (if any) is the backend's own.

    Raises:
        EnqueueError: with two or more messages, when not all of them reached the queue
            (see its docstring for what counts as sent, not sent and unknown).
    """
    if len(messages) <= 1:
        return backend.send(messages) if messages else []
    firsts: list[OutgoingMessage] = []  # each idempotency key once, in input order
    alias: list[int] = []  # input position -> index into ``firsts``
    by_key: dict[str, int] = {}
    for out in messages:
        key = out.idempotency_key
        if key is not None and key in by_key:
            alias.append(by_key[key])
            continue
        if key is not None:
            by_key[key] = len(firsts)
        alias.append(len(firsts))
        firsts.append(out)
    try:
        step = max(backend.capabilities.max_batch, 1)
    except Exception as exc:  # nothing went out yet
        raise _nothing_sent(messages, exc) from exc
    chunks = [firsts[start:start + step] for start in range(0, len(firsts), step)]
    ordered = any(out.ordering_key is not None for out in firsts)
    run = _Run(chunks, ordered=ordered)
    threads = 1 if ordered else min(max(backend.send_concurrency, 1), len(chunks))
    if threads == 1:
        run.one_by_one(backend)
    else:
        run.concurrently(backend, threads)
    if run.complete():
        return [run.ids[index] for index in alias]
    raise run.error(messages, alias)


def send_routed(backends: Mapping[str, Backend], messages: Sequence[OutgoingMessage],
                default: str) -> list[str]:
    """Send ``messages`` each to its queue (``out.queue``, None: ``default``); ids in input order.

    Raises:
        EnqueueError: when not every message reached its queue: sent, not sent and unknown
            over all the queues, as ``send_all`` reports them for one.
    """
    groups: dict[str, list[int]] = {}
    for position, out in enumerate(messages):
        groups.setdefault(out.queue or default, []).append(position)
    outcomes: dict[str, list[str] | Exception] = {}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="cloudqueue-route") as pool:
        futures = {name: pool.submit(send_all, backends[name], [messages[p] for p in positions])
                   for name, positions in groups.items()}
        for name, future in futures.items():
            exc = future.exception()
            if exc is None:
                outcomes[name] = future.result()
            elif isinstance(exc, Exception):
                outcomes[name] = exc
            else:  # KeyboardInterrupt or SystemExit in a sending thread
                raise exc
    ids: list[str] = [out.job_id for out in messages]
    sent: set[str] = set()
    not_sent: set[str] = set()
    unknown: set[str] = set()
    errors: dict[str, Exception] = {}
    first: BaseException | None = None
    for name, positions in groups.items():
        outcome = outcomes[name]
        if isinstance(outcome, list):
            for position, job_id in zip(positions, outcome, strict=True):
                ids[position] = job_id
                sent.add(job_id)
            continue
        if first is None:
            cause = outcome.__cause__ if isinstance(outcome, EnqueueError) else None
            first = cause or outcome
        if isinstance(outcome, EnqueueError):
            if len(outcome.job_ids) == len(positions):
                for position, job_id in zip(positions, outcome.job_ids, strict=True):
                    ids[position] = job_id
            sent.update(outcome.sent)
            not_sent.update(outcome.not_sent)
            unknown.update(outcome.unknown)
            errors.update(outcome.errors)
            continue
        # one message, and the backend's own error
        doubtful = EnqueueError.outcome_unknown(outcome)
        for position in positions:
            job_id = ids[position]
            not_sent.add(job_id)
            errors[job_id] = _unknown(outcome) if doubtful else outcome
            if doubtful:
                unknown.add(job_id)
    if not not_sent:
        return ids
    order = list(dict.fromkeys(ids))
    by_id = {out.job_id: out for out in messages}
    missing = [job_id for job_id in order if job_id in not_sent]
    error = EnqueueError(sent=[job_id for job_id in order if job_id in sent and job_id not in not_sent],
                         not_sent=missing, errors={job_id: errors.get(job_id) or BackendError("not sent")
                                 for job_id in missing},
                         unknown=[job_id for job_id in missing if job_id in unknown], job_ids=ids,
                         not_sent_messages=[by_id[job_id] for job_id in missing if job_id in by_id])
    error.__cause__ = first
    raise error


class _Run:
    """The chunks of one call and what became of each."""

    def __init__(self, chunks: list[list[OutgoingMessage]], *, ordered: bool) -> None:
        self.chunks = chunks
        self.ordered = ordered
        self.ids: dict[int, str] = {}  # index into the call's unique messages -> id returned
        self.results: dict[int, list[str] | Exception] = {}  # chunk -> ids or the error
        self.failures: list[Exception] = []  # in the order they happened
        self.stopped = False

    def one_by_one(self, backend: Backend) -> None:
        for number, chunk in enumerate(self.chunks):
            if self.stopped:
                return
            try:
                self.record(number, backend.send(chunk))
            except Exception as exc:
                self.record(number, exc)

    def concurrently(self, backend: Backend, threads: int) -> None:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        pending: dict[Future[list[str]], int] = {}
        upcoming = iter(range(len(self.chunks)))
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cloudqueue-send") as pool:
            while True:
                while not self.stopped and len(pending) < threads:
                    number = next(upcoming, None)
                    if number is None:
                        break
                    pending[pool.submit(backend.send, self.chunks[number])] = number
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    number = pending.pop(future)
                    exc = future.exception()
                    if exc is None:
                        self.record(number, future.result())
                    elif isinstance(exc, Exception):
                        self.record(number, exc)
                    else:  # KeyboardInterrupt or SystemExit in a sending thread
                        raise exc

    def record(self, number: int, outcome: list[str] | Exception) -> None:
        self.results[number] = outcome
        if isinstance(outcome, Exception):
            self.failures.append(outcome)
            if self.ordered or _stops(outcome):
                self.stopped = True
            return
        base = self._base(number)
        for offset, job_id in enumerate(outcome):
            self.ids[base + offset] = job_id

    def _base(self, number: int) -> int:
        return sum(len(chunk) for chunk in self.chunks[:number])

    def complete(self) -> bool:
        return not self.failures and len(self.results) == len(self.chunks)

    def error(self, messages: Sequence[OutgoingMessage], alias: list[int]) -> EnqueueError:
        """The ``EnqueueError`` for this call, ``__cause__`` set to the first failure."""
        first = self.failures[0] if self.failures else None
        confirmed: set[int] = set()
        errors: dict[int, Exception] = {}
        unknown: set[int] = set()
        for number, chunk in enumerate(self.chunks):
            base = self._base(number)
            outcome = self.results.get(number)
            for offset, out in enumerate(chunk):
                index = base + offset
                if isinstance(outcome, list):
                    confirmed.add(index)
                elif outcome is None:
                    errors[index] = BackendError(
                        "not sent: sending stopped after an earlier chunk failed "
                        f"({_short(first)})")
                elif isinstance(outcome, EnqueueError):
                    # the backend's own account of the chunk; its job_ids line up with the
                    # chunk when it gives them all (a repeated key may map to an earlier id)
                    aligned = len(outcome.job_ids) == len(chunk)
                    job_id = outcome.job_ids[offset] if aligned else out.job_id
                    if job_id in outcome.sent:
                        self.ids[index] = job_id
                        confirmed.add(index)
                    elif job_id in outcome.unknown:
                        unknown.add(index)
                        errors[index] = outcome.errors.get(job_id) or _unknown(outcome)
                    elif job_id in outcome.not_sent:
                        errors[index] = outcome.errors.get(job_id) or outcome
                    else:  # the backend did not account for it: assume nothing
                        unknown.add(index)
                        errors[index] = _unknown(outcome)
                elif EnqueueError.outcome_unknown(outcome):
                    unknown.add(index)
                    errors[index] = _unknown(outcome)
                else:
                    errors[index] = outcome
        sent: list[str] = []
        not_sent: list[str] = []
        by_id: dict[str, Exception] = {}
        unknown_ids: list[str] = []
        not_sent_messages: list[OutgoingMessage] = []
        job_ids: list[str] = []
        seen: set[int] = set()
        for position, index in enumerate(alias):
            out = messages[position]
            job_id = self.ids.get(index, out.job_id)
            job_ids.append(job_id)
            if index in seen:
                continue
            seen.add(index)
            if index in confirmed:
                sent.append(job_id)
                continue
            not_sent.append(job_id)
            not_sent_messages.append(out)
            by_id[job_id] = errors[index]
            if index in unknown:
                unknown_ids.append(job_id)
        error = EnqueueError(sent=sent, not_sent=not_sent, errors=by_id, unknown=unknown_ids,
                             job_ids=job_ids, not_sent_messages=not_sent_messages)
        error.__cause__ = first
        return error


def _nothing_sent(messages: Sequence[OutgoingMessage], exc: Exception) -> EnqueueError:
    """The error for a call that failed before sending anything."""
    order = list({out.job_id: out for out in messages}.values())
    return EnqueueError(sent=[], not_sent=[out.job_id for out in order],
                        errors={out.job_id: exc for out in order},
                        job_ids=[out.job_id for out in messages], not_sent_messages=order)


def _stops(exc: Exception) -> bool:
    """A failure that says the endpoint is in trouble (not just a refused entry) stops sending."""
    if isinstance(exc, EnqueueError):
        return bool(exc.unknown) or exc.__cause__ is not None
    return True


def _unknown(exc: Exception) -> Exception:
    """The error for a message whose call may or may not have queued it."""
    kind = BackendUnavailable if isinstance(exc, BackendUnavailable) else BackendError
    wrapped = kind(f"unknown: may have been sent ({_short(exc)})")
    wrapped.__cause__ = exc
    return wrapped


def _short(exc: BaseException | None, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}" if exc is not None else "no error"
    return text if len(text) <= limit else text[: limit - 3] + "..."
