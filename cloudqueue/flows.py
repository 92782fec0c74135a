"""Flows: a parent job that runs once, after its children finished (``app.flow(...)``).

    flow_id = app.flow(ship.message(order), children=[reserve.message(r), charge.message(c)],
                       on_child_failure="fail" | "ignore" | "continue")

The flow lives in the app's store as a few documents (``Store.load`` / ``Store.save``: a
write of version N succeeds only over version N - 1, so of two consumers that read the
same state only one can write the next)::

    <app>/flow/<id>          the head: status, policy, reason, the number of children
                             (small: read at every child's end, written at each status change)
    <app>/flowplan/<id>      the plan, written once: each child (type, job id, key) and the
                             parent's message
    <app>/flowend/<id>/<i>   child i's end: status, result or error, when (written once; a
                             redriven child's success over its failure)
    <app>/flowends/<id>      the set of finished children (``Store.add_member``: atomic)

and moves through these statuses::

    running ──last child finished──> ready ──parent sent──> parent_enqueued ──> succeeded
       │                                                                    └─> parent_failed
       └──a child dead-lettered, policy "fail"──> failed  (the parent does not run)
                 failed ──its failed children redriven and succeeded (``retry``)──> running

Children carry ``cqflow: "<flow id>:<index>"`` in their envelope, the parent
``cqflowparent: "<flow id>"`` (consumers that do not know them ignore them). The flow's
run step (innermost, beside the store's guard, so every consumer takes it) records each
child's end in the flow before its message is settled: a success with its return value
(JSON), a dead letter with its reason. A consumer whose end completes the set reads the
ends and moves the head to ``ready``; the one whose conditional write lands, and only it,
sends the parent. Should that send fail, the child's delivery fails and its next delivery sends the
parent again; every child and the parent carry an idempotency key (their own, or
``cqflow-<flow id>-<index>`` / ``cqflow-<flow id>-parent``), so the store's guard runs
each of them once even then.

The parent reads its children through ``ctx.flow`` (``results``, ``failures``, ``children``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._errors import BackendError, ConfigurationError, PayloadError, Permanent
from .clock import format_time
from .lifecycle import Outcome, StepFailed

if TYPE_CHECKING:
    from .app import App
    from .backends.base import OutgoingMessage
    from .chunks import Progress
    from .dispatch import Task
    from .store import Store

__all__ = ["CHILD_ATTRIBUTE", "PARENT_ATTRIBUTE", "POLICIES", "STATUSES", "Child", "Flow", "FlowNotFound",
           "FlowStep", "FlowTooLarge", "Retried", "Subflow", "current", "flow_key", "get", "guarded", "list_flows",
           "poisoned", "render", "retry", "start", "with_attributes", "with_progress"]

log = logging.getLogger("cloudqueue")

#: the envelope attribute a child carries: ``"<flow id>:<index>"``
CHILD_ATTRIBUTE = "cqflow"
#: the envelope attribute a flow's parent carries: ``"<flow id>"``
PARENT_ATTRIBUTE = "cqflowparent"
#: where a flow can stand (see the diagram above)
STATUSES = ("running", "ready", "parent_enqueued", "succeeded", "parent_failed", "failed")
#: what a dead-lettered child does to its flow
POLICIES = ("fail", "ignore", "continue")
#: how long a flow's state is kept after it started
DEFAULT_TTL = timedelta(days=7)
_FLOW_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")
#: attempts at a contended write before the step fails (and the delivery is retried)
_WRITE_ATTEMPTS = 200

_current: contextvars.ContextVar[Flow | None] = contextvars.ContextVar("cloudqueue_flow", default=None)


class FlowNotFound(ConfigurationError):
    """No flow with that id in the store (never started, or lapsed after its ttl)."""


class FlowTooLarge(PayloadError):
    """A flow's state would not fit in one of its store's documents."""


def _check_size(store: Store, flow_id: str, text: str, what: str) -> None:
    limit = store.max_document_size
    if limit is not None and len(text.encode()) > limit:
        raise FlowTooLarge(f"flow {flow_id!r}: {what}, its state would be {len(text.encode())} bytes, over "
                           f"the {store.scheme} store's {limit} per document; keep children's results "
                           "small (return a key to the data, not the data) and split wide fan-outs into "
                           "Subflows")


@dataclass(frozen=True, slots=True)
class Child:
    """One child of a flow: ``status`` is ``pending``, ``succeeded`` or ``failed``; ``flow``
    is the id of the subflow whose parent this child is (None for a plain job); ``key`` its
    idempotency key; ``chunks`` how far a chunked child got (filled in by
    ``cloudqueue.flows.with_progress``, else None)."""

    index: int
    job_type: str
    job_id: str
    status: str
    result: Any = None
    error: str | None = None
    finished_at: str | None = None
    flow: str | None = None
    key: str | None = None
    chunks: Progress | None = None

    @property
    def chunk_root(self) -> str | None:
        """The root of this child's chunked run (``chunks.progress``): its idempotency key."""
        return None if self.flow else self.key


@dataclass(frozen=True, slots=True)
class Flow:
    """A flow's state as stored.

    Attributes:
        id: the flow id ``app.flow`` returned.
        policy: ``fail``, ``ignore`` or ``continue`` (``on_child_failure``).
        status: ``running``, ``ready`` (every child finished: the parent is being sent),
            ``parent_enqueued``, ``succeeded`` (the parent ran), ``parent_failed`` (the
            parent went to dead letters) or ``failed`` (a child dead-lettered under "fail").
        parent_type / parent_job_id: the parent job.
        children: every child, in the order given.
        reason: why the flow failed.
        parent_flow: for a subflow, the id of the flow it is a child of.
    """

    id: str
    policy: str
    status: str
    parent_type: str
    parent_job_id: str
    children: tuple[Child, ...]
    created_at: str
    finished_at: str | None = None
    reason: str | None = None
    parent_flow: str | None = None

    @property
    def results(self) -> list[Any]:
        """The children's return values in order. Under "continue" a failed child's place
        holds None (see ``failures``); under "ignore" failed children are left out."""
        if self.policy == "ignore":
            return [c.result for c in self.children if c.status == "succeeded"]
        return [c.result for c in self.children]

    @property
    def failures(self) -> list[Child]:
        """The children that went to dead letters (under "ignore": none are listed)."""
        if self.policy == "ignore":
            return []
        return [c for c in self.children if c.status == "failed"]

    @property
    def pending(self) -> int:
        return sum(c.status == "pending" for c in self.children)

    @property
    def finished(self) -> int:
        """How many children finished (succeeded or failed)."""
        return sum(c.status != "pending" for c in self.children)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "policy": self.policy, "status": self.status, "parent_type": self.parent_type,
                "parent_job_id": self.parent_job_id, "parent_flow": self.parent_flow,
                "created_at": self.created_at, "finished_at": self.finished_at, "reason": self.reason,
                "children": [{"index": c.index, "job_type": c.job_type, "job_id": c.job_id, "status": c.status,
                              "result": c.result, "error": c.error, "finished_at": c.finished_at,
                              "flow": c.flow, "key": c.key,
                              "chunks": None if c.chunks is None else {
                                  "chunks": c.chunks.chunks, "progress": c.chunks.progress,
                                  "finished": c.chunks.finished, "updated_at": c.chunks.updated_at}}
                             for c in self.children]}


def current() -> Flow | None:
    """The flow whose parent is running in this context (``ctx.flow``), or None."""
    return _current.get()


def flow_key(app: str, flow_id: str) -> str:
    """The store key of a flow's state."""
    return f"{app}/flow/{flow_id}"


def _flow(state: dict[str, Any]) -> Flow:
    flow_id = state["id"]
    member_of = state.get("member_of") or {}
    return Flow(id=flow_id, policy=state["policy"], status=state["status"],
                parent_type=state["parent"]["type"], parent_job_id=state["parent"]["job_id"],
                children=tuple(Child(index=i, job_type=c["type"], job_id=c["job_id"], status=c["status"],
                                     result=c.get("result"), error=c.get("error"),
                                     finished_at=c.get("finished_at"), flow=c.get("flow"),
                                     # documents written before the key was recorded: the default
                                     key=c.get("key", None if c.get("flow") else f"cqflow-{flow_id}-{i}"))
                               for i, c in enumerate(state["children"])),
                created_at=state["created_at"], finished_at=state.get("finished_at"), reason=state.get("reason"),
                parent_flow=member_of.get("flow"))


def _store(app: App) -> Store:
    store = app.store
    if store is None:
        raise ConfigurationError(
            f"app {app.name!r} has no store, and flows keep their state in one; pass "
            "cq.App(..., store='memory://') (or 'dynamodb://TABLE?region=...', "
            "'firestore://PROJECT/COLLECTION'), or set $CLOUDQUEUE_STORE_URL")
    return store


def get(app: App, flow_id: str) -> Flow:
    """The flow's state (``app.get_flow``).

    Raises:
        FlowNotFound: no such flow (never started, or past its ttl).
    """
    now = app.clock.now()
    document = _store(app).load(flow_key(app.name, flow_id), now=now)
    if document is None:
        raise FlowNotFound(f"app {app.name!r} has no flow {flow_id!r} in its store (never started, "
                           f"or older than its ttl)")
    state = json.loads(document.value)
    _assemble(app, [state], now)
    return _flow(state)


def list_flows(app: App, *, status: str | None = None, limit: int = 50) -> list[Flow]:
    """The app's flows in its store, newest first (``app.list_flows``; subflows included).

    Args:
        status: only flows in this status (``running``, ``failed``, ...).
        limit: at most this many.

    Raises:
        ConfigurationError: no store, a store that cannot list (``Store.scan``), a bad
            status or limit.
    """
    from ._flow_views import listed

    return listed(app, status=status, limit=limit)


def with_progress(app: App, flow: Flow) -> Flow:
    """The flow with each chunked child's progress (``Child.chunks``) read from the store."""
    from ._flow_views import with_chunks

    return with_chunks(app, flow)


def render(flow: Flow) -> str:
    """The flow as a few lines and a table of its children."""
    done = sum(c.status != "pending" for c in flow.children)
    lines = [f"flow {flow.id}: {flow.status} ({done}/{len(flow.children)} children finished, "
             f"policy {flow.policy!r})",
             f"parent:  {flow.parent_type} {flow.parent_job_id}",
             f"started: {flow.created_at}" + (f", finished {flow.finished_at}" if flow.finished_at else "")]
    if flow.parent_flow:
        lines.append(f"part of: flow {flow.parent_flow}")
    if flow.reason:
        lines.append(f"reason:  {flow.reason}")
    chunked = any(c.chunks is not None for c in flow.children)
    rows = [("#", "job", "job id", "status", *(("chunks",) if chunked else ()), "result / error")]
    for c in flow.children:
        detail = (c.error or "") if c.status == "failed" else ("" if c.status == "pending" else json.dumps(c.result))
        if len(detail) > 80:
            detail = detail[:77] + "..."
        job = f"{c.job_type} (flow {c.flow})" if c.flow else c.job_type
        progress = () if not chunked else ("" if c.chunks is None else
                                           f"{c.chunks.chunks} ({c.chunks.progress}"
                                           f"{', finished' if c.chunks.finished else ''})",)
        rows.append((str(c.index), job, c.job_id, c.status, *progress, detail))
    columns = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    lines.append("")
    lines.extend("  ".join(cell.ljust(w) for cell, w in zip(row[:columns], widths, strict=True)) + "  " + row[-1]
                 for row in rows)
    return "\n".join(line.rstrip() for line in lines)


# -- starting a flow ------------------------------------------------------------------
def with_attributes(app: App, message: OutgoingMessage, attributes: dict[str, str],
                     key: str) -> OutgoingMessage:
    """The message with flow attributes (and an idempotency key, unless it has one) added."""
    extra = dict(attributes)
    if message.idempotency_key is None:
        extra["cqkey"] = key
    body = message.body
    if not body.endswith(b"}"):  # every encoder writes a compact object; anything else is a bug
        raise PayloadError(f"job {message.job_type!r}: its message is not a JSON object", job=message.job_type)
    tail = b"".join(b',"%s":%s' % (name.encode(), json.dumps(value).encode()) for name, value in extra.items())
    body = body[:-1] + tail + b"}"
    backend = app.queue(message.queue) if message.queue is not None else app.backend
    limit = backend.capabilities.max_message_size
    if len(body) > limit:
        raise PayloadError(f"job {message.job_type!r}: with its flow attributes the message is {len(body)} "
                           f"bytes, over the {backend.scheme} limit of {limit}; make the payload smaller "
                           "or give the app a payload store", job=message.job_type)
    return replace(message, body=body, idempotency_key=message.idempotency_key or key)


@dataclass(frozen=True, slots=True)
class Subflow:
    """A child that is a flow itself: its parent counts as the outer flow's child, and
    finishes it when it ran (or fails it when the subflow failed)::

        app.flow(ship.message(order), children=[
            Subflow(pack.message(box), children=[pick.message(a), pick.message(b)]),
            charge.message(payment)])
    """

    parent: OutgoingMessage
    children: Sequence[OutgoingMessage | Subflow]
    on_child_failure: str = "fail"


def _check_message(what: str, message: Any) -> OutgoingMessage:
    from .backends.base import OutgoingMessage

    if not isinstance(message, OutgoingMessage):
        raise ConfigurationError(f"app.flow {what} must be a message from job.message(payload), "
                                 f"got {message!r}; write e.g. charge.message(Charge(...))")
    return message


def start(app: App, parent: OutgoingMessage, children: Sequence[OutgoingMessage | Subflow], *,
          on_child_failure: str = "fail", flow_id: str | None = None,
          ttl: timedelta = DEFAULT_TTL) -> str:
    """Record a flow (and its subflows) and send the children (``app.flow``); the flow id.

    With ``flow_id`` given, starting the same flow again sends its children again (each
    runs once: they carry idempotency keys) without starting a second flow. A subflow's
    id is its flow's id, a dot and its index (``<flow id>.2``).

    Raises:
        ConfigurationError: no store, an unknown policy, no children, a bad flow id.
        PayloadError: a message too large once the flow attributes are added.
    """
    store = _store(app)
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise ConfigurationError(f"app.flow ttl must be a positive datetime.timedelta, got {ttl!r}")
    if flow_id is None:
        flow_id = os.urandom(10).hex()
    elif not isinstance(flow_id, str) or not _FLOW_ID.fullmatch(flow_id):
        raise ConfigurationError(f"app.flow flow_id {flow_id!r}: use 1-100 letters, digits, '_', '.' or '-'")
    now = app.clock.now()
    states: list[dict[str, Any]] = []
    leaves = _plan(app, flow_id, Subflow(parent, children, on_child_failure), now, None, states)
    documents = []
    for state in states:
        head, plan = _split(state)
        _check_size(store, state["id"], plan, f"started with {len(state['children'])} children")
        documents.append((state["id"], head, plan))
    for flow, head, plan in documents:
        # the plan first: a head in the store always has its plan there
        store.save(_plan_key(app.name, flow), plan, version=1, expires_at=now + ttl, now=now)
        if not store.save(flow_key(app.name, flow), head, version=1, expires_at=now + ttl, now=now):
            log.info("flow %s already exists: its children are sent again (each runs once)", flow)
    app._enqueue(leaves)
    return flow_id


def _plan(app: App, flow_id: str, node: Subflow, now: datetime, member_of: tuple[str, int] | None,
          states: list[dict[str, Any]]) -> list[OutgoingMessage]:
    """The states of ``node`` and its subflows (into ``states``) and the messages to send now."""
    parent = _check_message("parent", node.parent)
    if node.on_child_failure not in POLICIES:
        raise ConfigurationError(f"app.flow on_child_failure={node.on_child_failure!r}: write one of "
                                 f"{', '.join(map(repr, POLICIES))}")
    if not node.children:
        raise ConfigurationError(f"app.flow for parent {parent.job_type!r} has no children; enqueue the "
                                 "parent directly, or give it children=[job.message(...), ...]")
    attributes = {PARENT_ATTRIBUTE: flow_id}
    if member_of is not None:
        attributes[CHILD_ATTRIBUTE] = f"{member_of[0]}:{member_of[1]}"
    parent = with_attributes(app, parent, attributes, f"cqflow-{flow_id}-parent")
    entries: list[dict[str, Any]] = []
    leaves: list[OutgoingMessage] = []
    for index, child in enumerate(node.children):
        if isinstance(child, Subflow):
            sub_id = f"{flow_id}.{index}"
            leaves.extend(_plan(app, sub_id, child, now, (flow_id, index), states))
            sub_parent = states[-1]["parent"]  # the subflow's own state is the last added
            entries.append({"type": sub_parent["type"], "job_id": sub_parent["job_id"], "status": "pending",
                            "flow": sub_id})
            continue
        message = with_attributes(app, _check_message(f"child {index}", child),
                                   {CHILD_ATTRIBUTE: f"{flow_id}:{index}"}, f"cqflow-{flow_id}-{index}")
        entries.append({"type": message.job_type, "job_id": message.job_id, "status": "pending",
                        "key": message.idempotency_key})
        leaves.append(message)
    states.append({
        "id": flow_id, "app": app.name, "policy": node.on_child_failure, "status": "running",
        "created_at": format_time(now), "finished_at": None, "reason": None,
        "member_of": None if member_of is None else {"flow": member_of[0], "index": member_of[1]},
        "parent": {"type": parent.job_type, "job_id": parent.job_id, "queue": parent.queue,
                   "body": parent.body.decode(), "key": parent.idempotency_key,
                   "ordering_key": parent.ordering_key, "max_attempts": parent.max_attempts,
                   "priority": parent.priority, "delay": parent.delay.total_seconds()},
        "children": entries,
    })
    return leaves


# -- retrying a failed flow -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Retried:
    """What ``retry`` did: the job ids whose dead letters it sent back (``redriven``),
    those it sent again from the flow's record (``resent``: only a parent can be), and the
    failed children it found nowhere (``missing``: their dead letters lapsed or were purged)."""

    redriven: list[str]
    resent: list[str]
    missing: list[str]


#: how many dead letters per queue ``retry`` looks through for a flow's failed jobs
RETRY_SCAN = 1000


def retry(app: App, flow_id: str) -> Retried:
    """Send a failed or stuck flow's jobs again from dead letters (``cloudqueue flows retry``).

    A flow ``failed`` (a child dead-lettered under "fail") gets its failed children's dead
    letters redriven, its failed subflows retried the same way; when they succeed the flow
    runs on, and its parent runs once every child succeeded. A ``parent_failed`` flow gets
    its parent's dead letter redriven, or, when that is gone, the parent sent again from
    the flow's record; a ``ready`` one (its children finished, the send of its parent
    failed) gets its parent sent. A ``running`` flow gets the dead letters of its pending children
    redriven: children a queue moved there itself, without a consumer seeing them (SQS's
    redrive policy), which the flow cannot have recorded. Fix the cause first: a job that
    fails the same way dead-letters again.

    Raises:
        FlowNotFound: no such flow.
        ConfigurationError: nothing to retry (the flow finished, or is running with none of
            its pending children in dead letters).
    """
    flow = get(app, flow_id)
    out = _retry(app, flow)
    if flow.status == "running" and not out.redriven:
        raise ConfigurationError(f"flow {flow_id!r} is running and none of its {flow.pending} pending "
                                 "children is in dead letters: nothing to retry (they are queued or "
                                 "running; see cloudqueue flows show)")
    for job_id in out.missing:
        log.warning("flow %s: job %s is not in dead letters (purged, or older than their retention); "
                    "it cannot be sent again", flow_id, job_id)
    return out


def _retry(app: App, flow: Flow) -> Retried:
    if flow.status == "ready":  # every child finished, and the send of its parent failed
        state = _state(app, flow.id)
        app._enqueue([_parent_message(state)])  # its key makes a copy sent before harmless
        FlowStep(app)._set_status(flow.id, "parent_enqueued", only_from="ready")
        return Retried([], [flow.parent_job_id], [])
    if flow.status not in ("failed", "parent_failed", "running"):
        raise ConfigurationError(f"flow {flow.id!r} is {flow.status}, not failed: nothing to retry "
                                 "(see cloudqueue flows show)")
    wanted: set[str] = set()
    subflows: list[Flow] = []
    if flow.status == "parent_failed":
        wanted.add(flow.parent_job_id)
    else:
        redo = "pending" if flow.status == "running" else "failed"
        for child in flow.children:
            if child.status != redo:
                continue
            sub = get(app, child.flow) if child.flow is not None else None
            if sub is not None and sub.status in ("failed", "parent_failed", "running", "ready"):
                subflows.append(sub)
            else:
                wanted.add(child.job_id)
    redriven = _redrive(app, wanted)
    # a running flow's pending child not in dead letters is queued or running: not missing
    missing = [] if flow.status == "running" else sorted(wanted - redriven)
    resent: list[str] = []
    if flow.status == "parent_failed" and missing:
        state = _state(app, flow.id)
        app._enqueue([_resent(_parent_message(state))])
        resent, missing = missing, []
    out = Retried(sorted(redriven), resent, missing)
    for sub in subflows:
        inner = _retry(app, sub)
        out.redriven.extend(inner.redriven)
        out.resent.extend(inner.resent)
        out.missing.extend(inner.missing)
    return out


def _state(app: App, flow_id: str) -> dict[str, Any]:
    """A flow's whole state: its head, with its plan and its children's ends."""
    now = app.clock.now()
    document = _store(app).load(flow_key(app.name, flow_id), now=now)
    if document is None:
        raise FlowNotFound(f"app {app.name!r} has no flow {flow_id!r} in its store")
    state: dict[str, Any] = json.loads(document.value)
    _assemble(app, [state], now)
    return state


def _resent(message: OutgoingMessage) -> OutgoingMessage:
    """The parent sent again under a fresh key: the store forgot its key when it
    dead-lettered, but a queue's deduplication window may still hold it."""
    key = message.idempotency_key
    if key is None:
        return message
    fresh = f"{key}-retry-{os.urandom(4).hex()}"
    body = message.body.replace(b'"cqkey":' + json.dumps(key).encode(), b'"cqkey":' + json.dumps(fresh).encode(), 1)
    return replace(message, body=body, idempotency_key=fresh)


def _redrive(app: App, job_ids: set[str]) -> set[str]:
    """Redrive the dead letters of these job ids, on every queue of the app; the ids found."""
    from pydantic_core import from_json

    found: set[str] = set()
    for name in app.queue_names:
        if found >= job_ids:
            break
        backend = app.queue(name)
        ids: list[str] = []
        for letter in backend.dead_letters(limit=RETRY_SCAN):
            try:
                job_id = from_json(letter.body).get("id")
            except ValueError:
                continue
            if job_id in job_ids and job_id not in found:
                ids.append(letter.message_id)
                found.add(job_id)
        if ids:
            backend.redrive(ids)
    return found


def poisoned(app: App, delivery_body: bytes, reason: str) -> None:
    """Record the end of a flow's child (or parent) that went to dead letters without
    running (poison: its payload failed validation, its claim-checked payload is gone...)."""
    from pydantic_core import from_json

    try:
        raw = from_json(delivery_body)
        member, parent_of = raw.get(CHILD_ATTRIBUTE), raw.get(PARENT_ATTRIBUTE)
    except (ValueError, AttributeError):
        return  # not even JSON: nothing says which flow it belonged to
    step = FlowStep(app)
    if isinstance(parent_of, str):
        step._set_status(parent_of, "parent_failed", reason=f"the parent went to dead letters: {reason}")
    if isinstance(member, str) and ":" in member:
        flow_id, _, index = member.rpartition(":")
        if index.isdigit():
            # a child that ran has its end recorded already: finding the flow ready (another
            # consumer is sending the parent) is no reason to send it again
            step.finish(flow_id, int(index), ok=False, error=reason, resend=False)


# -- the run step ---------------------------------------------------------------------
def _parent_message(state: dict[str, Any]) -> OutgoingMessage:
    from .backends.base import OutgoingMessage

    p = state["parent"]
    return OutgoingMessage(p["body"].encode(), p["job_id"], p["type"], timedelta(seconds=p["delay"]),
                           p["key"], p["ordering_key"], p["max_attempts"], p["queue"], p["priority"])


def guarded(guard: Callable[[Task, Callable[[], Any]], Any], app: App) -> Callable[[Task, Callable[[], Any]], Any]:
    """The store's run step with the flows' inside it: one hook, and for a message outside
    any flow one search of its bytes more than the guard alone."""
    step = FlowStep(app).run

    def run(task: Task, call_next: Callable[[], Any]) -> Any:
        if b'"cqflow' not in task.delivery.body:
            return guard(task, call_next)
        return guard(task, lambda: step(task, call_next))

    return run


class FlowStep:
    """The run step that records children's ends and sends the parent (one per app)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def run(self, task: Task, call_next: Callable[[], Any]) -> Any:
        body = task.delivery.body
        if b'"cqflow' not in body:  # the common case: one search of the bytes, nothing parsed
            return call_next()
        from pydantic_core import from_json

        raw = from_json(body)
        member, parent_of = raw.get(CHILD_ATTRIBUTE), raw.get(PARENT_ATTRIBUTE)
        if isinstance(parent_of, str):
            return self._run_parent(task, parent_of, member, call_next)
        return self._run_child(task, member, call_next)

    def _run_child(self, task: Task, member: Any, call_next: Callable[[], Any]) -> Any:
        if not isinstance(member, str) or ":" not in member:
            return call_next()
        flow_id, _, index_text = member.rpartition(":")
        from .chunks import _member

        continued = [False]  # a chunked child that sent its next chunk has not finished
        token = _member.set((member, continued))
        try:
            value = call_next()
        except BaseException as exc:
            outcome = self.app.dispatcher.failed(task, exc)
            try:
                if outcome.outcome is Outcome.DEAD_LETTER:
                    self.finish(flow_id, int(index_text), ok=False, error=str(outcome.reason))
                elif outcome.outcome is Outcome.SKIP:  # the job asked to be acknowledged: it is done
                    self.finish(flow_id, int(index_text), ok=True, value=None)
            except Exception:  # the child's own fate stands; a redrive records it
                log.exception("flow %s: could not record the end of child %s (%s %s); it stays pending "
                              "until the child is redriven", flow_id, index_text, task.job.name, task.job_id)
            raise
        finally:
            _member.reset(token)
        if not continued[0]:
            try:
                self.finish(flow_id, int(index_text), ok=True, value=_jsonable(task, value))
            except FlowTooLarge as exc:  # its result does not fit: the child fails, its policy decides
                error = f"job {task.job.name} {task.job_id}: its result does not fit in its flow: {exc}"
                self.finish(flow_id, int(index_text), ok=False, error=error)
                raise StepFailed(Permanent(error)) from exc
            except Exception as exc:  # not recorded, or the parent not sent: the delivery is retried
                from .dispatch import _describe

                log.warning("flow %s: child %s (%s %s) ran, but %s; its delivery is retried", flow_id,
                            index_text, task.job.name, task.job_id, _describe(exc))
                raise StepFailed(exc) from exc
        return value

    def _run_parent(self, task: Task, flow_id: str, member: Any, call_next: Callable[[], Any]) -> Any:
        try:
            flow = get(self.app, flow_id)
        except FlowNotFound:
            flow = None
            log.warning("job %s %s is the parent of flow %s, which is no longer in the store (older "
                        "than its ttl?); it runs with ctx.flow None", task.job.name, task.job_id, flow_id)
        token = _current.set(flow)
        try:
            value = self._run_child(task, member, call_next) if member is not None else call_next()
        except BaseException as exc:
            if flow is not None and self.app.dispatcher.failed(task, exc).outcome is Outcome.DEAD_LETTER:
                self._set_status(flow_id, "parent_failed", reason=f"the parent {task.job.name} {task.job_id} "
                                                                   f"went to dead letters: {exc!r}")
            raise
        finally:
            _current.reset(token)
        if flow is not None:
            self._set_status(flow_id, "succeeded")
        return value

    # -- the store writes --------------------------------------------------------------
    def _update(self, flow_id: str, change: Callable[[dict[str, Any]], bool], *,
                with_ends: bool = False) -> tuple[dict[str, Any], bool]:
        """Apply ``change`` (mutates the state, True when it changed anything) to the flow's
        head with one conditional write; read again and retry when another consumer wrote
        first. With ``with_ends`` the state ``change`` sees has its children's ends merged
        in (the head keeps none of them)."""
        store = _store(self.app)
        key = flow_key(self.app.name, flow_id)
        for attempt in range(_WRITE_ATTEMPTS):
            now = self.app.clock.now()
            document = store.load(key, now=now)
            if document is None:
                raise FlowNotFound(f"flow {flow_id!r} of app {self.app.name!r} is not in the store "
                                   "(older than its ttl?)")
            state = json.loads(document.value)
            if with_ends:
                _assemble(self.app, [state], now)
            if not change(state):
                return state, False
            text = _head(state) if with_ends else json.dumps(state)
            _check_size(store, flow_id, text, "with this change")
            if store.save(key, text, version=document.version + 1,
                          expires_at=document.expires_at, now=now):
                return state, True
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))  # others are writing: spread out
        raise BackendError(f"flow {flow_id!r}: {_WRITE_ATTEMPTS} writes in a row lost to others "
                           "writing the same flow; the delivery is retried")

    def finish(self, flow_id: str, index: int, *, ok: bool, value: Any = None, error: str | None = None,
               resend: bool = True) -> None:
        """Record child ``index``'s end; the write that finishes the flow sends its parent
        (and, with ``resend``, a child whose end was recorded before and finds the flow
        ``ready``: the retry of a child whose parent send failed).

        A child's end is a document of its own, written once (a success after a failure:
        its redrive, over it), and its index joins the flow's set of finished children:
        one write each, however wide the flow. Only the child that fails the flow, revives
        it, or completes the set reads the others' ends and writes the flow's head.
        """
        store = _store(self.app)
        now = self.app.clock.now()
        head = store.load(flow_key(self.app.name, flow_id), now=now)
        if head is None:
            raise FlowNotFound(f"flow {flow_id!r} of app {self.app.name!r} is not in the store "
                               "(older than its ttl?)")
        state = json.loads(head.value)
        total = state["total"] if "total" in state else len(state["children"])
        if not 0 <= index < total:
            raise ConfigurationError(f"flow {flow_id!r} has no child {index}")
        end: dict[str, Any] = {"status": "succeeded" if ok else "failed", "finished_at": format_time(now)}
        if ok:
            end["result"] = value
        else:
            end["error"] = error
        text = json.dumps(end)
        _check_size(store, flow_id, text, f"with child {index}'s end")
        key = _end_key(self.app.name, flow_id, index)
        recorded = store.save(key, text, version=1, expires_at=head.expires_at, now=now)
        revived = False
        if not recorded and ok:  # ended before: a success over a failure is a redrive's
            before = store.load(key, now=now)
            if before is not None and json.loads(before.value)["status"] == "failed":
                recorded = revived = store.save(key, text, version=before.version + 1,
                                                expires_at=before.expires_at, now=now)
        done = store.add_member(_ends_key(self.app.name, flow_id), index, expires_at=head.expires_at, now=now)
        decides = (revived or done >= total or (recorded and not ok and state["policy"] == "fail")
                   or (not recorded and state["status"] == "ready"))
        if not decides:
            return

        def change(merged: dict[str, Any]) -> bool:
            children = merged["children"]
            failed = [i for i, c in enumerate(children) if c["status"] == "failed"]
            changed = False
            if merged["status"] == "failed":
                if failed:  # still failed: its reason names a child that is failed now
                    if f"child {failed[0]} " in (merged["reason"] or ""):
                        return False
                    merged["reason"] = _failure_reason(failed[0], children[failed[0]])
                    return True
                # its failed children were redriven and succeeded: it runs on
                merged.update(status="running", finished_at=None, reason=None)
                changed = True
            if merged["status"] != "running":
                return changed
            if failed and merged["policy"] == "fail":
                merged.update(status="failed", finished_at=format_time(self.app.clock.now()),
                              reason=_failure_reason(failed[0], children[failed[0]]))
                return True
            if all(c["status"] != "pending" for c in children):
                merged["status"] = "ready"
                return True
            return changed

        merged, changed = self._update(flow_id, change, with_ends=True)
        if merged["status"] == "failed" and changed and f"child {index} " in (merged["reason"] or ""):
            log.error("flow %s failed: %s; its parent %s %s does not run (policy 'fail')", flow_id,
                      merged["reason"], merged["parent"]["type"], merged["parent"]["job_id"])
            outer = merged.get("member_of")
            if outer:  # a subflow whose parent will not run: that child of the outer flow failed
                self.finish(outer["flow"], outer["index"], ok=False,
                            error=f"its flow {flow_id} failed: {merged['reason']}")
        if merged["status"] == "ready" and (changed or (resend and not recorded)):
            # ours to send: this write finished the flow, or a redelivery of the child
            # whose send failed (the parent's idempotency key makes a second copy harmless)
            self.app._enqueue([_parent_message(merged)])
            self._set_status(flow_id, "parent_enqueued", only_from="ready")

    def _set_status(self, flow_id: str, status: str, *, only_from: str | None = None,
                    reason: str | None = None) -> None:
        stamp = format_time(self.app.clock.now())

        def change(state: dict[str, Any]) -> bool:
            if state["status"] == status or (only_from is not None and state["status"] != only_from):
                return False
            state["status"] = status
            if status in ("succeeded", "parent_failed"):
                state["finished_at"] = stamp
            if status == "succeeded":
                state["reason"] = None  # a parent redriven after it failed
            if reason is not None:
                state["reason"] = reason
            return True

        try:
            self._update(flow_id, change)
        except FlowNotFound:
            log.warning("flow %s lapsed before it was marked %s", flow_id, status)


def _end_key(app: str, flow_id: str, index: int) -> str:
    """The store key of a child's end (outside ``<app>/flow/``, which lists heads only)."""
    return f"{app}/flowend/{flow_id}/{index}"


def _ends_key(app: str, flow_id: str) -> str:
    """The store key of the set of a flow's finished children."""
    return f"{app}/flowends/{flow_id}"


_END_FIELDS = ("status", "result", "error", "finished_at")
#: what of a flow's parent its head keeps (the plan keeps the whole message)
_PARENT_HEAD = ("type", "job_id")


def _plan_key(app: str, flow_id: str) -> str:
    """The store key of a flow's plan: its children and its parent's message, written once."""
    return f"{app}/flowplan/{flow_id}"


def _split(state: dict[str, Any]) -> tuple[str, str]:
    """A new flow's head and plan documents. The head is what every child's end reads and
    what changes: status, policy, the number of children; it stays small however wide the
    flow. The plan is written once: each child (type, job id, key) and the parent's message."""
    head = {k: v for k, v in state.items() if k != "children"}
    head["parent"] = {k: state["parent"][k] for k in _PARENT_HEAD}
    head["total"] = len(state["children"])
    return json.dumps(head), json.dumps({"children": state["children"], "parent": state["parent"]})


def _assemble(app: App, states: Sequence[dict[str, Any]], now: datetime) -> None:
    """Complete flows' heads into their whole states, in place: the plan's children and
    parent, then each child's end (status, result or error, when). Two ``load_many``
    calls for all the flows."""
    store = _store(app)
    planned = [state for state in states if "children" not in state]
    if planned:
        plans = store.load_many([_plan_key(app.name, state["id"]) for state in planned], now=now)
        for state in planned:
            plan = plans.get(_plan_key(app.name, state["id"]))
            if plan is None:
                raise FlowNotFound(f"flow {state['id']!r} of app {app.name!r} has lost its plan "
                                   "(older than its ttl?)")
            state.update(json.loads(plan.value), planned=True)
    keys = [_end_key(app.name, state["id"], i) for state in states for i in range(len(state["children"]))]
    ends = store.load_many(keys, now=now) if keys else {}
    for state in states:
        for i, child in enumerate(state["children"]):
            document = ends.get(_end_key(app.name, state["id"], i))
            if document is not None:
                child.update(json.loads(document.value))


def _head(state: dict[str, Any]) -> str:
    """A whole state (``_assemble``) as its head document keeps it."""
    if state.get("planned"):
        head = {k: v for k, v in state.items() if k not in ("children", "planned")}
        head["parent"] = {k: state["parent"][k] for k in _PARENT_HEAD}
        return json.dumps(head)
    # a flow started before plans were kept apart: its head holds its children, without ends
    children = [{k: v for k, v in c.items() if k not in _END_FIELDS} | {"status": "pending"}
                for c in state["children"]]
    return json.dumps({**state, "children": children})


def _failure_reason(index: int, child: dict[str, Any]) -> str:
    how = "failed" if child.get("flow") else "went to dead letters"
    return f"child {index} ({child['type']} {child['job_id']}) {how}: {child.get('error')}"


def _jsonable(task: Task, value: Any) -> Any:
    """A child's return value as stored: JSON, or None (with a warning) when it is not."""
    if value is None:
        return None
    from pydantic_core import to_jsonable_python

    try:
        return to_jsonable_python(value)
    except Exception as exc:
        log.warning("job %s %s: its return value is not JSON-serializable (%s); its flow records "
                    "it as None", task.job.name, task.job_id, exc)
        return None

