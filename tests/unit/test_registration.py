"""Registering jobs: what is accepted, and what fails at decoration time."""

from __future__ import annotations

from datetime import timedelta

import pytest

import cloudqueue as cq

from .models import Receipt


def test_a_plain_function_with_a_model_and_a_context_registers() -> None:
    app = cq.App("shop")

    @app.job(retry=cq.Retry(attempts=4))
    def send(payload: Receipt, ctx: cq.JobContext) -> str:
        return f"{payload.to} {ctx.attempt}/{ctx.max_attempts}"

    assert app.jobs["send"] is send
    assert send.takes_context and not send.is_async and send.retry.attempts == 4
    assert send(Receipt(to="a", order_id="1")) == "a 1/4"  # inline call
    assert send({"to": "b", "order_id": "2"}) == "b 1/4"  # a dict is validated first


def test_async_jobs_and_jobs_without_context_register() -> None:
    app = cq.App("shop", retry=cq.Retry(attempts=7))

    @app.job
    async def notify(payload: Receipt) -> None: ...

    assert notify.is_async and not notify.takes_context and notify.retry.attempts == 7


def test_any_type_pydantic_validates_is_a_payload() -> None:
    app = cq.App("shop")

    @app.job
    def count(n: int) -> int:
        return n * 2

    assert count("21") == 42
    with pytest.raises(cq.PayloadError, match="job 'count'"):
        count("many")


def test_duplicate_job_names_fail_at_decoration_time() -> None:
    app = cq.App("shop")

    @app.job
    def send(payload: Receipt) -> None: ...

    with pytest.raises(cq.ConfigurationError, match="'send' is already registered"):
        @app.job(name="send")
        def other(payload: Receipt) -> None: ...


def test_a_missing_annotation_fails_with_the_fix() -> None:
    app = cq.App("shop")
    with pytest.raises(cq.ConfigurationError, match="'payload' has no type annotation"):
        @app.job
        def send(payload) -> None: ...  # type: ignore[no-untyped-def]


@pytest.mark.parametrize("retry", [3, {"attempts": 3}, timedelta(seconds=1)])
def test_a_bad_retry_setting_fails_at_decoration_time(retry: object) -> None:
    app = cq.App("shop")
    with pytest.raises(cq.ConfigurationError, match=r"retry must be a cq\.Retry"):
        @app.job(retry=retry)  # type: ignore[call-overload]
        def send(payload: Receipt) -> None: ...


def test_wrong_signatures_are_refused() -> None:
    app = cq.App("shop")
    with pytest.raises(cq.ConfigurationError, match="must take"):
        @app.job
        def none() -> None: ...
    with pytest.raises(cq.ConfigurationError, match="must take"):
        @app.job
        def three(a: Receipt, b: cq.JobContext, c: int) -> None: ...
    with pytest.raises(cq.ConfigurationError, match="second parameter"):
        @app.job
        def wrong_ctx(a: Receipt, b: int) -> None: ...
    with pytest.raises(cq.ConfigurationError, match="first parameter is the payload"):
        @app.job
        def ctx_first(a: cq.JobContext) -> None: ...


def test_unresolvable_annotations_name_the_fix() -> None:
    app = cq.App("shop")

    def send(payload: NotDefinedAnywhere) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(cq.ConfigurationError, match="module level"):
        app.job(send)


def test_app_settings_are_checked() -> None:
    with pytest.raises(cq.ConfigurationError, match="non-empty name"):
        cq.App("")
    with pytest.raises(cq.ConfigurationError, match="URL string or a Backend"):
        cq.App("x", backend=42)  # type: ignore[arg-type]


def test_get_job_suggests_a_close_name() -> None:
    app = cq.App("shop")

    @app.job
    def send_receipt(payload: Receipt) -> None: ...

    with pytest.raises(cq.UnknownJobError, match="did you mean 'send_receipt'"):
        app.enqueue("send_reciept", {"to": "a", "order_id": "1"})
