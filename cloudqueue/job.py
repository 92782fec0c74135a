"""A registered job: a function with a typed payload, and the ways to enqueue it."""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import CoreSchema

from ._errors import ConfigurationError, PayloadError
from .backends.base import OutgoingMessage
from .context import JobContext
from .retry import Retry

if TYPE_CHECKING:
    from .app import App
    from .limits import JobLimits
    from .schedules import Cron
    from .store import Once

P = TypeVar("P")
R = TypeVar("R")

log = logging.getLogger("cloudqueue")

OrderingKey = str | Callable[[Any], str] | None


class Job(Generic[P, R]):
    """A job registered with ``@app.job``. Call it to run inline; ``enqueue`` to queue it."""

    def __init__(self, app: App, func: Callable[..., R], *, name: str, retry: Retry,
                 payload_type: Any, codec: PayloadCodec, takes_context: bool,
                 ordering_key: OrderingKey, queue: str = "default", schedules: tuple[Cron, ...] = (),
                 limits: JobLimits | None = None) -> None:
        self.app = app
        self.func = func
        self.name = name
        self.retry = retry
        self.payload_type = payload_type
        self.takes_context = takes_context
        self.is_async = inspect.iscoroutinefunction(func)
        self.ordering_key = ordering_key
        #: the app queue an enqueue goes to unless it says ``queue=``
        self.queue = queue
        self.codec = codec
        #: the job's cron schedules (``@app.job(schedule=...)``)
        self.schedules = schedules
        #: rate and concurrency limits (``@app.job(rate_limit=..., concurrency=...)``), or None
        self.limits = limits
        #: with the app's store: None guards keyed enqueues, False none, a cq.Once all
        self.once: Once | bool | None = None
        self._fields = _accepted_fields(payload_type)
        self._warned_extra: set[frozenset[str]] = set()
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", name)
        self.__wrapped__ = func

    # -- running -----------------------------------------------------------------------
    def __call__(self, payload: P | dict[str, Any], ctx: JobContext | None = None) -> R:
        """Run the job inline, here and now (an async job returns its coroutine)."""
        value = self.validate(payload)
        if not self.takes_context:
            return self.func(value)
        if ctx is None:
            ctx = JobContext(job_id="inline", job_type=self.name, attempt=1,
                             max_attempts=self.retry.attempts, enqueued_at=self.app.clock.now(),
                             clock=self.app.clock)
        return self.func(value, ctx)

    def validate(self, payload: Any) -> Any:
        """Validate ``payload`` (a model instance or plain data) against the job's model.

        Raises:
            PayloadError: naming the job, each failing field and the fix.
        """
        if self._fields is not None and type(payload) is dict:
            self._warn_extra(payload)
        try:
            return self.codec.validate(payload)
        except ValidationError as exc:
            raise PayloadError.from_validation(self.name, exc) from None

    def _warn_extra(self, payload: dict[Any, Any]) -> None:
        # pydantic drops fields its model does not declare (extra="ignore"); say so once
        assert self._fields is not None
        extra = frozenset(str(key) for key in payload if key not in self._fields)
        if extra and extra not in self._warned_extra:
            self._warned_extra.add(extra)
            log.warning(
                "job %r: payload field(s) %s are not in model %s and are dropped; to refuse them "
                "instead, set model_config = ConfigDict(extra=\"forbid\") on the model",
                self.name, ", ".join(repr(name) for name in sorted(extra)),
                getattr(self.payload_type, "__name__", self.payload_type))

    def dump_json(self, value: Any) -> bytes:
        """Serialize a validated payload to JSON for the envelope.

        Raises:
            PayloadError: naming the job, the field that cannot be JSON, and the fix.
        """
        try:
            return self.codec.dump_json(value)
        except (ValueError, TypeError) as exc:  # pydantic's serialization errors are ValueErrors
            raise _serialization_error(self.name, value, exc) from None

    # -- enqueueing --------------------------------------------------------------------
    def message(self, payload: P | dict[str, Any], *, delay: timedelta | None = None,
                at: datetime | None = None, idempotency_key: str | None = None,
                ordering_key: str | None = None, traceparent: str | None = None,
                queue: str | None = None, priority: int | None = None) -> OutgoingMessage:
        """Validate and serialize one job without sending it (see ``enqueue_many``)."""
        return self.app._build(self, payload, delay, at, idempotency_key, ordering_key, traceparent,
                               queue, priority)

    def enqueue(self, payload: P | dict[str, Any], *, delay: timedelta | None = None,
                at: datetime | None = None, idempotency_key: str | None = None,
                ordering_key: str | None = None, traceparent: str | None = None,
                queue: str | None = None, priority: int | None = None) -> str:
        """Queue the job; return its job id.

        Args:
            payload: an instance of the job's model, or data that validates against it.
            delay: run no sooner than this from now.
            at: run no sooner than this aware datetime (not with ``delay``).
            idempotency_key: a second enqueue with the same key is dropped and returns
                the first job's id (within the backend's dedup window).
            ordering_key: FIFO group; needs a backend with ordering.
            traceparent: W3C trace context to carry (default: the running job's, if any).
            queue: the app queue to send it to (default: the job's ``queue=``).
            priority: runs before lower priorities waiting in the same queue (higher
                first; needs a queue with ``Capabilities.priority``, e.g. memory).

        Raises:
            PayloadError: the payload does not validate, or is too large; nothing is sent.
            ConfigurationError: ``queue`` is not one of the app's queues.
            UnsupportedFeature: the destination queue cannot honour ``delay``,
                ``ordering_key`` or ``priority``.
        """
        app = self.app
        msg = app._build(self, payload, delay, at, idempotency_key, ordering_key, traceparent,
                         queue, priority)
        return app._enqueue([msg])[0]

    def enqueue_many(self, payloads: Iterable[P | dict[str, Any] | OutgoingMessage], *,
                     delay: timedelta | None = None, at: datetime | None = None,
                     queue: str | None = None) -> list[str]:
        """Queue many jobs in as few backend calls as it allows; return their ids in order.

        Items may be payloads or ``job.message(...)`` results (for per-item options, a
        ``queue=`` among them). Every item is validated before anything is sent; the
        messages are grouped per queue and each group goes through its queue's backend.
        """
        msgs: list[OutgoingMessage] = []
        for index, item in enumerate(payloads):
            if isinstance(item, OutgoingMessage):
                msgs.append(item)
                continue
            try:
                msgs.append(self.message(item, delay=delay, at=at, queue=queue))
            except PayloadError as exc:
                raise exc.at_item(index) from None
        return self.app._enqueue(msgs)

    def __repr__(self) -> str:
        return f"<Job {self.name} attempts={self.retry.attempts}>"


def _accepted_fields(payload_type: Any) -> frozenset[str] | None:
    """The keys a model's validation reads, when it silently drops others (else None)."""
    if not (isinstance(payload_type, type) and issubclass(payload_type, BaseModel)):
        return None
    if payload_type.model_config.get("extra") not in (None, "ignore"):
        return None  # "forbid" refuses extras itself, "allow" keeps them
    names: set[str] = set()
    for name, info in payload_type.model_fields.items():
        names.add(name)
        for alias in (info.alias, info.validation_alias):
            if alias is None:
                continue
            if not isinstance(alias, str):
                return None  # AliasChoices / AliasPath: too rich to second-guess
            names.add(alias)
    return frozenset(names)


def _serialization_error(job: str, value: Any, exc: Exception) -> PayloadError:
    """A PayloadError naming the field pydantic could not serialize, and the fix."""
    path, model = _failing_field(value)
    where = f"field {'.'.join(path)!r}" if path else "the payload"
    owner = type(model).__name__ if model is not None else "a pydantic model wrapping the payload"
    if "utf-8" in str(exc):
        fix = (f"bytes that are not UTF-8 text cannot travel in JSON as they are: set "
               "model_config = ConfigDict(ser_json_bytes=\"base64\", val_json_bytes=\"base64\") "
               f"on {owner} (both, so the consumer decodes them back), or send text")
    else:
        fix = f"give {where} a type pydantic can write as JSON, or a field_serializer on {owner}"
    return PayloadError(f"payload for job {job!r} cannot be serialized to JSON: {where}: {exc}\n"
                        f"  fix: {fix}", job=job)


def _failing_field(value: Any) -> tuple[list[str], BaseModel | None]:
    """The path to the first field of a model that does not serialize, and its model."""
    if not isinstance(value, BaseModel):
        return [], None
    for name in type(value).model_fields:
        try:
            value.__pydantic_serializer__.to_json(value, include={name})
        except (ValueError, TypeError):
            inner = getattr(value, name, None)
            path, model = _failing_field(inner)
            return ([name, *path], model) if path else ([name], value)
    return [], value


class PayloadCodec:
    """Validation and JSON serialization for one payload type, straight from pydantic-core.

    A BaseModel brings its own validator and serializer; any other type goes through a
    TypeAdapter (imported only then, which keeps ``import cloudqueue`` light).
    """

    __slots__ = ("core_schema", "dump_json", "validate")

    def __init__(self, payload_type: Any) -> None:
        if isinstance(payload_type, type) and issubclass(payload_type, BaseModel):
            if not payload_type.__pydantic_complete__:
                payload_type.model_rebuild(raise_errors=True)
            self.validate: Callable[[Any], Any] = payload_type.__pydantic_validator__.validate_python
            self.dump_json: Callable[[Any], bytes] = payload_type.__pydantic_serializer__.to_json
            self.core_schema: CoreSchema = payload_type.__pydantic_core_schema__
        else:
            from pydantic import TypeAdapter

            adapter: TypeAdapter[Any] = TypeAdapter(payload_type)
            self.validate = adapter.validator.validate_python
            self.dump_json = adapter.serializer.to_json
            self.core_schema = adapter.core_schema


def inspect_job_function(func: Callable[..., Any], name: str) -> tuple[Any, PayloadCodec, bool]:
    """Find a job function's payload type and whether it takes a ``JobContext``.

    Raises:
        ConfigurationError: no payload parameter, a missing annotation, too many parameters.
    """
    if not callable(func):
        raise ConfigurationError(f"@app.job needs a function, got {func!r}")
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"job {name!r}: cannot read its signature ({exc})") from None
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    extra = [p for p in sig.parameters.values() if p.kind in (p.VAR_POSITIONAL, p.KEYWORD_ONLY)
             and p.default is p.empty]
    if not params or len(params) > 2 or extra:
        raise ConfigurationError(
            f"job {name!r} must take (payload) or (payload, ctx: cq.JobContext), "
            f"got {sig}; fix: def {name}(payload: MyModel, ctx: cq.JobContext) -> None")
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # unresolvable forward references
        raise ConfigurationError(
            f"job {name!r}: cannot resolve its annotations ({exc}); define the payload model "
            "at module level so it can be found") from None
    first = params[0]
    if first.name not in hints:
        raise ConfigurationError(
            f"job {name!r}: parameter {first.name!r} has no type annotation; annotate it with "
            f"the payload model, e.g. def {name}({first.name}: MyModel) -> None")
    payload_type = hints[first.name]
    if payload_type is JobContext:
        raise ConfigurationError(f"job {name!r}: the first parameter is the payload, the "
                                 "second (optional) one the JobContext")
    takes_context = len(params) == 2
    if takes_context:
        second = params[1]
        hint = hints.get(second.name)
        if hint is not None and hint is not JobContext:
            raise ConfigurationError(
                f"job {name!r}: the second parameter {second.name!r} is annotated {hint!r}; "
                "it receives the cq.JobContext, annotate it so or drop it")
    try:
        codec = PayloadCodec(payload_type)
    except Exception as exc:
        raise ConfigurationError(
            f"job {name!r}: pydantic cannot validate payload type {payload_type!r} ({exc})") from None
    return payload_type, codec, takes_context
