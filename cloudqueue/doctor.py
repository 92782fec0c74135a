"""``cloudqueue doctor``: what is deployed for an app's queues, compared with its code.

    cloudqueue doctor myproject.jobs:app

For each queue of the app, the checks of the queue's backend read what is deployed (the
queue, its dead-letter queue, the function and the grants that consume it) and compare
it with the jobs: their attempts, backoff and ordering. Each finding names what was found
and the fix; ``cloudqueue doctor`` prints them as a table and exits 1 when any is an error.

The core imports no cloud SDK. A backend's checks live in its adapter and are looked up
by the scheme of the queue's URL, when the doctor runs:

    sqs        -> cloudqueue_aws.doctor:check
    cloudtasks -> cloudqueue_gcp.doctor:check_cloud_tasks
    pubsub     -> cloudqueue_gcp.doctor:check_pubsub

A third-party backend adds its own the same way its backend is found, through the
entry-point group ``cloudqueue.doctor`` (name: the scheme, value: ``module:function``).

The app's idempotency store (``App(store=...)``) is checked too, by its scheme:

    dynamodb   -> cloudqueue_aws.doctor:check_store
    firestore  -> cloudqueue_gcp.doctor:check_store

(third-party stores: the entry-point group ``cloudqueue.doctor.stores``; the function
takes a ``StoreUnderCheck``). So is its claim-check payload store (``App(payload_store=...)``):

    s3         -> cloudqueue_aws.doctor:check_payload_store
    gs         -> cloudqueue_gcp.doctor:check_payload_store

(others: the entry-point group ``cloudqueue.doctor.payload_stores``; the function takes a
``PayloadStoreUnderCheck``, which carries the app's queues: the bucket's lifecycle rule
must outlive every message that can point at an object).
The function takes a ``QueueUnderCheck`` and returns a list of ``Finding``; it may raise
a ``CloudQueueError`` (the queue is missing, access is denied), which becomes an error
finding for that queue.
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._errors import CloudQueueError, ConfigurationError
from .retry import max_receives_for

if TYPE_CHECKING:
    from .app import App
    from .backends.base import Backend
    from .job import Job
    from .payloads import PayloadStore
    from .store import Store

__all__ = ["ENTRY_POINT_GROUP", "PAYLOAD_STORE_ENTRY_POINT_GROUP", "STORE_ENTRY_POINT_GROUP", "Check",
           "DoctorSettings", "Finding", "PayloadStoreCheck", "PayloadStoreUnderCheck", "QueueUnderCheck",
           "Report", "Severity", "StoreCheck", "StoreUnderCheck", "checks_for", "diagnose"]

ENTRY_POINT_GROUP = "cloudqueue.doctor"
STORE_ENTRY_POINT_GROUP = "cloudqueue.doctor.stores"
PAYLOAD_STORE_ENTRY_POINT_GROUP = "cloudqueue.doctor.payload_stores"

#: first-party checks, by scheme, imported only when a queue of that scheme is checked
_BUILTIN = {
    "sqs": "cloudqueue_aws.doctor:check",
    "cloudtasks": "cloudqueue_gcp.doctor:check_cloud_tasks",
    "pubsub": "cloudqueue_gcp.doctor:check_pubsub",
}
_INSTALL_HINTS = {"sqs": 'pip install "cloudqueue[aws]"', "s3": 'pip install "cloudqueue[aws]"',
                  "cloudtasks": 'pip install "cloudqueue[gcp]"',
                  "pubsub": 'pip install "cloudqueue[gcp]"', "dynamodb": 'pip install "cloudqueue[aws]"',
                  "firestore": 'pip install "cloudqueue-gcp[firestore]"',
                  "gs": 'pip install "cloudqueue-gcp[storage]"'}
#: first-party checks of idempotency stores, by scheme
_STORE_BUILTIN = {
    "dynamodb": "cloudqueue_aws.doctor:check_store",
    "firestore": "cloudqueue_gcp.doctor:check_store",
}
#: first-party checks of claim-check payload stores, by scheme
_PAYLOAD_STORE_BUILTIN = {
    "s3": "cloudqueue_aws.doctor:check_payload_store",
    "gs": "cloudqueue_gcp.doctor:check_payload_store",
}
_BUILTINS = {ENTRY_POINT_GROUP: _BUILTIN, STORE_ENTRY_POINT_GROUP: _STORE_BUILTIN,
             PAYLOAD_STORE_ENTRY_POINT_GROUP: _PAYLOAD_STORE_BUILTIN}


class Severity(str, Enum):
    """How bad a finding is: errors make ``cloudqueue doctor`` exit 1."""

    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference between what is deployed and what the code needs.

    Args:
        queue: the queue it is about (its URL without options).
        check: what was checked, e.g. "max receive count".
        severity: error (jobs misbehave or security is off), warning, or note.
        found: what is deployed, in a few words.
        fix: what to change, and where.
        why: what goes wrong meanwhile (``cloudqueue doctor --explain`` prints it).
    """

    queue: str
    check: str
    severity: Severity
    found: str
    fix: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class DoctorSettings:
    """What the doctor cannot read from the cloud.

    Args:
        heartbeat: how often a ``cloudqueue worker`` extends a running job's message
            (the worker's default: a third of its 30 s visibility timeout).
        function_timeout: the push function's timeout, for Pub/Sub's ack deadline
            (default: unknown; the command reads ``$CLOUDQUEUE_FUNCTION_TIMEOUT``).
    """

    heartbeat: timedelta = timedelta(seconds=10)
    function_timeout: timedelta | None = None


class _UnderCheck:
    """What a check looks at: it reports findings under the thing's ``label``."""

    @property
    def label(self) -> str:
        raise NotImplementedError

    def error(self, check: str, found: str, fix: str, why: str = "") -> Finding:
        return Finding(self.label, check, Severity.ERROR, found, fix, why)

    def warning(self, check: str, found: str, fix: str, why: str = "") -> Finding:
        return Finding(self.label, check, Severity.WARNING, found, fix, why)

    def note(self, check: str, found: str, fix: str, why: str = "") -> Finding:
        return Finding(self.label, check, Severity.NOTE, found, fix, why)


@dataclass(frozen=True)
class QueueUnderCheck(_UnderCheck):
    """A queue of the app and the jobs it carries: what a backend's checks get."""

    url: str | None
    backend: Backend
    jobs: tuple[Job[Any, Any], ...]
    settings: DoctorSettings = field(default_factory=DoctorSettings)
    #: the jobs routed to this queue, of an app with several (None: every job); any job
    #: may be sent to any queue, so attempts and backoff follow ``jobs``, ordering these
    routed: tuple[Job[Any, Any], ...] | None = None

    @property
    def label(self) -> str:
        """The queue as the table names it: its URL without options."""
        if self.url:
            return self.url.split("?", 1)[0]
        return repr(self.backend)

    @property
    def max_attempts(self) -> int:
        """The largest ``cq.Retry(attempts=N)`` of the jobs (1 when there are none)."""
        return max((job.retry.attempts for job in self.jobs), default=1)

    @property
    def max_receives(self) -> int:
        """The receive limit the queue's own redrive should keep (``max_receives_for``)."""
        return max_receives_for(self.max_attempts)

    @property
    def ordered_jobs(self) -> list[str]:
        """The jobs that use an ordering key."""
        jobs = self.jobs if self.routed is None else self.routed
        return sorted(job.name for job in jobs if job.ordering_key is not None)

    def terraform_values(self, module: str) -> dict[str, object]:
        """What ``cloudqueue terraform-vars`` prints for these jobs and ``module``."""
        from .tfvars import module_values, ordering_of

        values = module_values(self.jobs, module)
        return values if self.routed is None else ordering_of(module, values, list(self.routed))


Check = Callable[[QueueUnderCheck], list[Finding]]


@dataclass(frozen=True)
class StoreUnderCheck(_UnderCheck):
    """The app's idempotency store and the jobs it guards: what a store's checks get."""

    url: str | None
    store: Store
    jobs: tuple[Job[Any, Any], ...]

    @property
    def label(self) -> str:
        """The store as the table names it: ``store <URL without options>``."""
        return "store " + (self.url.split("?", 1)[0] if self.url else repr(self.store))


StoreCheck = Callable[[StoreUnderCheck], list[Finding]]


@dataclass(frozen=True)
class PayloadStoreUnderCheck(_UnderCheck):
    """The app's claim-check payload store and the queues whose messages point into it:
    what a payload store's checks get."""

    url: str | None
    store: PayloadStore
    queues: tuple[QueueUnderCheck, ...]

    @property
    def label(self) -> str:
        """The store as the table names it: ``payload store <URL without options>``."""
        return "payload store " + (self.url.split("?", 1)[0] if self.url else repr(self.store))


PayloadStoreCheck = Callable[[PayloadStoreUnderCheck], list[Finding]]


@dataclass
class Report:
    """Every finding for an app's queues."""

    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """No errors (warnings and notes allowed)."""
        return not self.errors

    def render(self, width: int = 100, *, explain: bool = False) -> str:
        """The findings as a plain-text table per queue, errors first, then a summary line.

        Args:
            width: the width to wrap the table's text columns to.
            explain: add each finding's ``why`` under its row.
        """
        order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
        summary = (f"{len(self.errors)} error(s), {len(self.warnings)} warning(s) "
                   f"in {len(self.checked)} queue(s): {', '.join(self.checked) or 'none'}")
        if not self.findings:
            return f"no findings\n{summary}"
        blocks = []
        for queue in dict.fromkeys(f.queue for f in self.findings):
            mine = sorted((f for f in self.findings if f.queue == queue), key=lambda f: order[f.severity])
            rows = [([f.severity.value, f.check, f.found, f.fix], f.why if explain else "") for f in mine]
            blocks.append(queue + "\n" + _table(["severity", "check", "found", "fix"], rows, width))
        return "\n\n".join(blocks) + "\n\n" + summary


def checks_for(scheme: str, *, group: str = ENTRY_POINT_GROUP) -> Any:
    """The checks registered for a backend scheme (or, with ``group=STORE_ENTRY_POINT_GROUP``,
    a store scheme; ``PAYLOAD_STORE_ENTRY_POINT_GROUP``, a payload store scheme), entry
    points first; None when there are none."""
    from importlib.metadata import entry_points

    target = {ep.name: ep.value for ep in entry_points(group=group)}.get(scheme)
    target = target or _BUILTINS.get(group, {}).get(scheme)
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = _INSTALL_HINTS.get(scheme, f"install the adapter that provides {module_name}")
        raise ConfigurationError(f"the doctor's {scheme} checks need {module_name}: {hint}") from exc
    return getattr(module, attr)


def queues_of(app: App, settings: DoctorSettings) -> list[QueueUnderCheck]:
    """The app's queues with the jobs each carries: every job (any may be enqueued to any
    queue), and, with several queues, the jobs routed to each."""
    jobs = tuple(app.jobs.values())
    if len(app.queue_names) == 1:
        return [QueueUnderCheck(url=app.backend_url, backend=app.backend, jobs=jobs, settings=settings)]
    return [QueueUnderCheck(url=app.queue_url(name), backend=app.queue(name), jobs=jobs, settings=settings,
                            routed=tuple(job for job in jobs if job.queue == name))
            for name in app.queue_names]


def diagnose(app: App, settings: DoctorSettings | None = None) -> Report:
    """Check what is deployed for each of ``app``'s queues against its jobs.

    Raises:
        ConfigurationError: the app has no jobs, or a queue's checks cannot be loaded.
    """
    if not app.jobs:
        raise ConfigurationError(
            f"app {app.name!r} has no jobs registered; import the module that defines them "
            "(e.g. cloudqueue doctor myproject.jobs:app)")
    report = Report()
    queues = queues_of(app, settings or DoctorSettings())
    for queue in queues:
        scheme = urlsplit(queue.url).scheme if queue.url else queue.backend.scheme
        report.checked.append(queue.label)
        check = checks_for(scheme)
        if check is None:
            report.findings.append(queue.note(
                "checks", f"no doctor checks for the {scheme or type(queue.backend).__name__} backend",
                "nothing is deployed to compare" if scheme == "memory" else
                f"register checks under the entry-point group {ENTRY_POINT_GROUP!r}"))
            continue
        try:
            report.findings += check(queue)
        except CloudQueueError as exc:
            report.findings.append(queue.error(
                "reachable", f"{type(exc).__name__}: {exc}",
                "check the URL, the credentials and that the queue was deployed "
                "(terraform apply of the module)"))
    _diagnose_store(app, report)
    _diagnose_payload_store(app, queues, report)
    return report


def _diagnose_store(app: App, report: Report) -> None:
    """Check the app's idempotency store, when it has one (the table or collection exists,
    and lapsed records are deleted)."""
    guard = app.idempotency
    if guard is None:
        return
    target = StoreUnderCheck(url=guard.url, store=guard.store, jobs=tuple(app.jobs.values()))
    scheme = urlsplit(guard.url).scheme if guard.url else guard.store.scheme
    _run_checks(report, target, scheme, f"the {scheme} store", STORE_ENTRY_POINT_GROUP,
                "check the store URL, the credentials and that the store was deployed (terraform apply "
                "of the module with its store variables)")


def _run_checks(report: Report, target: _UnderCheck, scheme: str, what: str, group: str, unreachable_fix: str) -> None:
    """Run the checks registered for ``scheme`` under ``group`` on ``target`` into ``report``."""
    report.checked.append(target.label)
    check = checks_for(scheme, group=group)
    if check is None:
        report.findings.append(target.note(
            "checks", f"no doctor checks for {what}",
            "nothing is deployed to compare" if scheme == "memory" else
            f"register checks under the entry-point group {group!r}"))
        return
    try:
        report.findings += check(target)
    except CloudQueueError as exc:
        report.findings.append(target.error("reachable", f"{type(exc).__name__}: {exc}", unreachable_fix))


def _diagnose_payload_store(app: App, queues: list[QueueUnderCheck], report: Report) -> None:
    """Check the app's claim-check payload store, when it has one (the bucket exists, its
    lifecycle rule outlives the messages, the consuming function may read and delete)."""
    if not app.has_payload_store:
        return
    url = app.payload_store_url
    scheme = urlsplit(url).scheme if url else ""
    try:
        store = app.payload_store
    except CloudQueueError as exc:
        report.findings.append(Finding(f"payload store {url}", "configuration", Severity.ERROR,
                                       f"{type(exc).__name__}: {exc}", "fix the payload_store URL"))
        return
    assert store is not None
    target = PayloadStoreUnderCheck(url=url, store=store, queues=tuple(queues))
    _run_checks(report, target, scheme, f"the {scheme or type(store).__name__} payload store",
                PAYLOAD_STORE_ENTRY_POINT_GROUP,
                "check the payload_store URL, the credentials and that the bucket was deployed "
                "(terraform apply of the module with payload_bucket)")


def _table(headers: Sequence[str], rows: Sequence[tuple[Sequence[str], str]], width: int) -> str:
    """A table whose last two columns wrap within the width; a row's note goes under it."""
    fixed = [len(h) for h in headers[:2]]
    for cells, _ in rows:
        fixed = [max(w, len(cell)) for w, cell in zip(fixed, cells[:2], strict=False)]
    rest = max(width - sum(fixed) - 2 * (len(headers) - 1), 40)
    widths = [*fixed, rest // 2, rest - rest // 2]
    indent = " " * (sum(fixed) + 4)
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for cells, note in rows:
        wrapped = [textwrap.wrap(cell, w, break_long_words=True, break_on_hyphens=False) or [""]
                   for cell, w in zip(cells, widths, strict=True)]
        for i in range(max(len(c) for c in wrapped)):
            lines.append("  ".join((c[i] if i < len(c) else "").ljust(w)
                                   for c, w in zip(wrapped, widths, strict=True)).rstrip())
        if note:
            lines += textwrap.wrap("why: " + note, width, initial_indent=indent, subsequent_indent=indent + "     ")
    return "\n".join(lines)
