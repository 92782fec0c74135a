"""Several queues: routing jobs and messages, per-queue checks, strict and weighted workers,
drain, stats and the memory backend's per-message priority."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest

import cloudqueue as cq
from cloudqueue.backends.base import Delivery, OutgoingMessage
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.testing import FakeClock, enqueued
from cloudqueue.worker import _Picker

from .models import Receipt

FAST = {"poll_wait": timedelta(milliseconds=50), "handle_signals": False}
NAMES = ("critical", "default", "bulk")


def _app(clock: FakeClock | None = None, **extra: MemoryBackend) -> tuple[cq.App, dict[str, MemoryBackend]]:
    clock = clock or FakeClock()
    queues = {name: MemoryBackend(clock=clock) for name in NAMES}
    queues.update(extra)
    return cq.App("shop", queues=dict(queues), clock=clock), queues


def _r(n: int | str) -> Receipt:
    return Receipt(to=f"c{n}", order_id=str(n))


# -- routing -------------------------------------------------------------------------------------
def test_a_job_goes_to_its_queue_and_one_without_queue_to_default() -> None:
    app, queues = _app()

    @app.job(queue="bulk")
    def export(payload: Receipt) -> None: ...

    @app.job
    def send_receipt(payload: Receipt) -> None: ...

    export.enqueue(_r(1))
    send_receipt.enqueue(_r(2))
    assert enqueued(queues["bulk"], "export") == [{"to": "c1", "order_id": "1", "amount": 1}]
    assert enqueued(queues["default"], "send_receipt") == [{"to": "c2", "order_id": "2", "amount": 1}]
    assert queues["critical"].pending() == []
    assert (export.queue, send_receipt.queue) == ("bulk", "default")


def test_enqueue_and_message_override_the_queue_per_message() -> None:
    app, queues = _app()

    @app.job(queue="bulk")
    def export(payload: Receipt) -> None: ...

    export.enqueue(_r(1), queue="critical")
    app.enqueue("export", {"to": "c2", "order_id": "2"}, queue="default")
    msg = export.message(_r(3), queue="critical")
    assert msg.queue == "critical"
    export.enqueue_many([msg, _r(4)])
    assert [p["order_id"] for p in enqueued(queues["critical"], "export")] == ["1", "3"]
    assert [p["order_id"] for p in enqueued(queues["default"], "export")] == ["2"]
    assert [p["order_id"] for p in enqueued(queues["bulk"], "export")] == ["4"]


def test_an_unknown_queue_is_an_error_naming_the_job_and_the_queues() -> None:
    app, _ = _app()
    with pytest.raises(cq.ConfigurationError, match=r"job 'export'.*no queue 'blk'.*did you mean 'bulk'.*"
                                                    r"critical, default, bulk"):
        @app.job(queue="blk")
        def export(payload: Receipt) -> None: ...

    @app.job
    def send_receipt(payload: Receipt) -> None: ...

    with pytest.raises(cq.ConfigurationError, match=r"job 'send_receipt'.*no queue 'urgent'"):
        send_receipt.enqueue(_r(1), queue="urgent")


def test_a_job_without_queue_needs_a_default_queue() -> None:
    app = cq.App("shop", queues={"critical": MemoryBackend(), "bulk": MemoryBackend()})
    with pytest.raises(cq.ConfigurationError, match=r"job 'send_receipt' has no queue=.*no 'default' "
                                                    r"queue.*critical, bulk.*queue='critical'"):
        @app.job
        def send_receipt(payload: Receipt) -> None: ...

    assert app.default_queue == "critical"  # app.backend is the first queue's then


def test_backend_is_the_one_queue_named_default() -> None:
    backend = MemoryBackend()
    app = cq.App("shop", backend=backend)
    assert app.queue_names == ("default",) and app.queue("default") is backend is app.backend
    with pytest.raises(cq.ConfigurationError, match=r"job 'export'.*no queue 'bulk'.*queues=\{"):
        @app.job(queue="bulk")
        def export(payload: Receipt) -> None: ...


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"backend": "memory://", "queues": {"default": "memory://"}}, "not both"),
    ({"queues": {}}, "non-empty mapping"),
    ({"queues": {"has space": "memory://"}}, "queue name 'has space'"),
    ({"queues": {"a": "memory://q", "b": "memory://q"}}, "'a' and 'b' are the same queue"),
    ({"queues": {"a": 42}}, "queue 'a' must be a URL string or a Backend"),
])
def test_bad_queues_are_refused_when_the_app_is_made(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(cq.ConfigurationError, match=message):
        cq.App("shop", **kwargs)  # type: ignore[arg-type]


def test_queue_urls_open_on_first_use_only() -> None:
    app = cq.App("shop", queues={"critical": "memory://q-critical", "default": "memory://q-default"})
    assert app._backends == {}
    assert app.queue_url("critical") == "memory://q-critical"
    assert isinstance(app.queue("critical"), MemoryBackend) and list(app._backends) == ["critical"]


# -- per-queue checks ------------------------------------------------------------------------------
def test_capability_checks_are_the_destination_queues() -> None:
    app, queues = _app(ordered=MemoryBackend(fifo=True))

    @app.job
    def step(payload: Receipt) -> None: ...

    with pytest.raises(cq.UnsupportedFeature, match="ordering_key needs a FIFO queue"):
        step.enqueue(_r(1), ordering_key="order-1")
    step.enqueue(_r(1), ordering_key="order-1", queue="ordered")
    with pytest.raises(cq.UnsupportedFeature, match=r"priority= needs.*Capabilities.priority.*'ordered'"):
        step.enqueue(_r(2), queue="ordered", priority=3)
    step.enqueue(_r(2), priority=3)
    assert [m.ordering_key for m in queues["ordered"].pending()] == ["order-1"]


# -- enqueue_many across queues ----------------------------------------------------------------------
def test_enqueue_many_groups_per_queue_and_keeps_the_input_order() -> None:
    app, queues = _app()

    @app.job
    def send_receipt(payload: Receipt) -> None: ...

    items = [send_receipt.message(_r(i), queue=NAMES[i % 3]) for i in range(9)]
    ids = send_receipt.enqueue_many(items)
    assert ids == [item.job_id for item in items]
    for offset, name in enumerate(NAMES):
        assert [m.job_id for m in queues[name].pending()] == ids[offset::3]


class Refusing(MemoryBackend):
    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        raise cq.PermissionDenied("not allowed to send to this queue")


def test_a_failed_queue_in_enqueue_many_says_which_job_ids_were_sent() -> None:
    clock = FakeClock()
    app, queues = _app(clock, bulk=Refusing(clock=clock))

    @app.job
    def send_receipt(payload: Receipt) -> None: ...

    items = [send_receipt.message(_r(i), queue=("default", "bulk", "bulk")[i % 3]) for i in range(6)]
    with pytest.raises(cq.EnqueueError) as caught:
        send_receipt.enqueue_many(items)
    error = caught.value
    ids = [item.job_id for item in items]
    assert error.job_ids == ids
    assert error.sent == ids[0::3]
    assert error.not_sent == [job_id for i, job_id in enumerate(ids) if i % 3]
    assert error.unknown == []  # a refusal: the queue did not take them
    assert [m.job_id for m in error.not_sent_messages] == error.not_sent
    assert [m.job_id for m in queues["default"].pending()] == error.sent


# -- the memory backend's priority --------------------------------------------------------------------
def test_memory_runs_higher_priorities_first_and_keeps_send_order_within_one(cq_app: cq.App) -> None:
    ran: list[str] = []

    @cq_app.job
    def work(payload: Receipt) -> None:
        ran.append(payload.order_id)

    for order_id, priority in [("a", None), ("b", 5), ("c", -1), ("d", 0), ("e", 5), ("f", 9)]:
        work.enqueue(Receipt(to="x", order_id=order_id), priority=priority)
    cq_app.drain()
    assert ran == ["f", "b", "e", "a", "d", "c"]
    assert cq_app.backend.capabilities.priority


def test_a_retried_message_keeps_its_priority(cq_app: cq.App, cq_clock: FakeClock) -> None:
    ran: list[str] = []

    @cq_app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(seconds=10))))
    def work(payload: Receipt, ctx: cq.JobContext) -> None:
        ran.append(payload.order_id)
        if payload.order_id == "urgent" and ctx.attempt == 1:
            raise RuntimeError("flaky")

    work.enqueue(Receipt(to="x", order_id="urgent"), priority=1)
    cq_app.drain()
    for n in range(3):
        work.enqueue(Receipt(to="x", order_id=str(n)), delay=timedelta(seconds=10))
    cq_clock.advance(timedelta(seconds=11))
    cq_app.drain()
    assert ran == ["urgent", "urgent", "0", "1", "2"]


def test_priority_must_be_an_int(cq_app: cq.App) -> None:
    @cq_app.job
    def work(payload: Receipt) -> None: ...

    with pytest.raises(cq.ConfigurationError, match="priority= must be an int"):
        work.enqueue(_r(1), priority="high")  # type: ignore[arg-type]


# -- drain and stats ------------------------------------------------------------------------------
def _three_jobs(app: cq.App, ran: list[str]) -> None:
    """A job per queue, ``<queue>_job``, that notes its queue's name when it runs."""
    for name in NAMES:
        app.job(name=f"{name}_job", queue=name)(_noting(ran, name))


def _noting(ran: list[str], queue: str) -> Callable[[Receipt], None]:
    def run(payload: Receipt) -> None:
        ran.append(queue)
    return run


def test_drain_takes_the_queues_in_strict_order() -> None:
    app, _ = _app()
    ran: list[str] = []
    _three_jobs(app, ran)
    for name in reversed(NAMES):
        app.get_job(f"{name}_job").enqueue_many([_r(i) for i in range(3)])
    report = app.drain()
    assert report.succeeded == 9
    assert ran == ["critical"] * 3 + ["default"] * 3 + ["bulk"] * 3


def test_drain_of_some_queues_leaves_the_others_and_stats_counts_per_queue() -> None:
    app, _ = _app()
    ran: list[str] = []
    _three_jobs(app, ran)
    for name in NAMES:
        app.get_job(f"{name}_job").enqueue_many([_r(i) for i in range(2)])
    app.drain(queues=["bulk", "default"])
    assert ran == ["bulk", "bulk", "default", "default"]
    assert {name: s.waiting for name, s in app.stats().items()} == {"critical": 2, "default": 0, "bulk": 0}
    assert list(app.stats(queues=["bulk"])) == ["bulk"]
    with pytest.raises(cq.ConfigurationError, match="no queue 'nope'"):
        app.drain(queues=["nope"])


def test_drain_follow_delays_waits_for_the_earliest_queue(cq_clock: FakeClock) -> None:
    app, _ = _app(cq_clock)
    ran: list[str] = []
    _three_jobs(app, ran)
    app.get_job("bulk_job").enqueue(_r(1), delay=timedelta(minutes=5))
    app.get_job("critical_job").enqueue(_r(2), delay=timedelta(minutes=10))
    app.drain(follow_delays=True)
    assert ran == ["bulk", "critical"]


# -- the picker: strict and weighted ---------------------------------------------------------------
def _filled(counts: Sequence[int]) -> list[MemoryBackend]:
    backends = []
    for count in counts:
        backend = MemoryBackend()
        backend.send([OutgoingMessage(body=b"{}", job_id=str(i), job_type="x") for i in range(count)])
        backends.append(backend)
    return backends


def _picks(picker: _Picker, backends: list[MemoryBackend], n: int) -> list[int]:
    out = []
    for _ in range(n):
        backend, batch = picker.receive(1, timedelta(0), None)
        if not batch:
            break
        out.append(backends.index(backend))  # type: ignore[arg-type]
    return out


def test_strict_never_takes_from_a_lower_queue_while_a_higher_one_has_due_work() -> None:
    backends = _filled([2, 3, 2])
    picks = _picks(_Picker(backends, None), backends, 10)
    assert picks == [0, 0, 1, 1, 1, 2, 2]


def test_weighted_shares_by_weight_smoothly() -> None:
    backends = _filled([30, 30, 30])
    picks = _picks(_Picker(backends, [3, 2, 1]), backends, 36)
    assert picks[:6] == [0, 1, 0, 2, 1, 0]  # smooth: no queue takes its share in one burst
    assert picks[6:12] == picks[:6]
    assert [picks.count(i) for i in range(3)] == [18, 12, 6]


def test_weighted_starves_nothing_and_wastes_no_turn_on_an_empty_queue() -> None:
    backends = _filled([500, 0, 3])
    picks = _picks(_Picker(backends, [100, 10, 1]), backends, 202)
    assert len(picks) == 202 and picks.count(1) == 0
    # the busy queues share by 100:1 as if the empty one were not there: none starves
    turns = [number for number, index in enumerate(picks) if index == 2]
    assert len(turns) == 2 and turns[0] < 101 and turns[1] - turns[0] <= 101
    # an empty queue banks no credit: when work arrives it gets its share, not a burst
    backends[1].send([OutgoingMessage(body=b"{}", job_id=f"late{i}", job_type="x") for i in range(50)])
    later = _picks(_Picker(backends, [100, 10, 1]), backends, 111)
    assert 5 <= later.count(1) <= 15


# -- the worker ---------------------------------------------------------------------------------
def test_a_strict_worker_runs_every_higher_queue_first() -> None:
    app, _ = _app()
    ran: list[str] = []
    _three_jobs(app, ran)
    for name in reversed(NAMES):
        app.get_job(f"{name}_job").enqueue_many([_r(i) for i in range(4)])
    stats = app.worker(concurrency=1, queues=list(NAMES), strategy="strict", **FAST).run(until_empty=True)
    assert stats.succeeded == 12
    assert ran == ["critical"] * 4 + ["default"] * 4 + ["bulk"] * 4


def test_a_weighted_worker_shares_by_weight() -> None:
    app, _ = _app()
    ran: list[str] = []
    _three_jobs(app, ran)
    for name in NAMES:
        app.get_job(f"{name}_job").enqueue_many([_r(i) for i in range(12)])
    app.worker(concurrency=1, strategy="weighted", weights={"critical": 3, "default": 2, "bulk": 1},
               **FAST).run(until_empty=True)
    assert len(ran) == 36
    first = ran[:24]
    assert (first.count("critical"), first.count("default"), first.count("bulk")) == (12, 8, 4)
    assert ran[:6] == ["critical", "default", "critical", "bulk", "default", "critical"]


def test_a_worker_consumes_only_its_queues() -> None:
    app, queues = _app()
    ran: list[str] = []
    _three_jobs(app, ran)
    for name in NAMES:
        app.get_job(f"{name}_job").enqueue(_r(1))
    app.worker(concurrency=2, queues=["bulk"], **FAST).run(until_empty=True)
    assert ran == ["bulk"]
    assert len(queues["critical"].pending()) == len(queues["default"].pending()) == 1


class Counting(MemoryBackend):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.extended = threading.Event()

    def extend_visibility(self, delivery: Delivery, timeout: timedelta) -> None:
        super().extend_visibility(delivery, timeout)
        self.extended.set()


def test_the_heartbeat_extends_each_message_on_its_own_queue() -> None:
    bulk = Counting(visibility_timeout=timedelta(seconds=30))
    app = cq.App("shop", queues={"default": MemoryBackend(), "bulk": bulk})
    attempts: list[int] = []

    @app.job(queue="bulk")
    def long_job(payload: Receipt, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        assert bulk.extended.wait(30), "the heartbeat never extended the bulk message"

    long_job.enqueue(_r(1))
    stats = app.worker(concurrency=1, visibility_timeout=timedelta(milliseconds=400),
                       **FAST).run(until_empty=True)
    assert attempts == [1] and stats.succeeded == 1


def test_a_stop_gives_unstarted_messages_back_to_their_own_queue() -> None:
    app, queues = _app()
    worker = app.worker(concurrency=1, prefetch=3, **FAST)

    @app.job(queue="bulk")
    def export(payload: Receipt) -> None:
        worker.stop()

    export.enqueue_many([_r(i) for i in range(3)])
    stats = worker.run()
    assert (stats.succeeded, stats.released) == (1, 2)
    pending = queues["bulk"].pending()
    assert len(pending) == 2 and all(m.receives == 0 and not m.in_flight for m in pending)


@pytest.mark.parametrize(("options", "message"), [
    ({"strategy": "fastest"}, "strategy must be one of"),
    ({"weights": {"critical": 2}}, "weights= go with strategy='weighted'"),
    ({"strategy": "weighted", "weights": {"critical": 1, "default": 1, "bulk": 1, "nope": 1}},
     "queue.*'nope'.*does not consume"),
    ({"strategy": "weighted", "weights": {"critical": 1, "default": 0, "bulk": 1}}, "int >= 1"),
    ({"strategy": "weighted", "weights": {"critical": 1}}, "no weight for queue 'default'"),
    ({"queues": ["critical", "critical"]}, "names a queue twice"),
    ({"queues": "critical"}, "a list of names"),
])
def test_bad_worker_queue_options_are_refused(options: dict[str, object], message: str) -> None:
    app, _ = _app()
    with pytest.raises(cq.ConfigurationError, match=message):
        app.worker(**options)  # type: ignore[arg-type]


def test_the_queues_example_in_the_readme_prints_what_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Queues and priorities", 1)[1].split("\n## ", 1)[0]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    namespace: dict[str, object] = {"__name__": "readme_queues"}
    exec(compile(code, "README.md", "exec"), namespace)
    assert capsys.readouterr().out == shown
    app = namespace["app"]
    assert isinstance(app, cq.App)
    app.close()


# -- the command line ---------------------------------------------------------------------------
QAPP = "tests.unit.cli_queues_app:app"


@pytest.fixture
def cli_app() -> Iterator[Any]:
    from . import cli_queues_app

    for name in cli_queues_app.app.queue_names:
        backend = cli_queues_app.app.queue(name)
        assert isinstance(backend, MemoryBackend)
        backend.purge()
        backend.purge_dead_letters()
    cli_queues_app.ran.clear()
    yield cli_queues_app


def _cli(*args: str, ok: bool = True) -> str:
    from click.testing import CliRunner

    from cloudqueue.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result.stdout if ok else result.output


def test_the_cli_enqueues_to_a_queue_and_a_worker_consumes_the_queues_it_names(cli_app: Any) -> None:
    _cli("enqueue", QAPP, "send_receipt", '{"to": "a", "order_id": "1"}')
    _cli("enqueue", QAPP, "send_receipt", '{"to": "a", "order_id": "2"}', "--queue", "critical")
    assert [len(cli_app.app.queue(name).pending()) for name in ("critical", "default")] == [1, 1]
    _cli("worker", QAPP, "--queues", "critical", "--until-empty", "-c", "1")
    assert cli_app.ran == ["receipt 2"]
    out = _cli("worker", QAPP, "--queues", "critical,default", "--strategy", "weighted",
               "--weights", "critical=3,default=1", "--until-empty", "-c", "1")
    assert cli_app.ran == ["receipt 2", "receipt 1"] and "succeeded" in out


def test_the_cli_reads_stats_and_dead_letters_of_one_queue(cli_app: Any) -> None:
    _cli("enqueue", QAPP, "page", '{"to": "bounce", "order_id": "9"}')
    cli_app.app.drain()
    assert "permanent: nobody on call" in _cli("dead-letters", "list", QAPP, "--queue", "critical")
    assert "no dead letters" in _cli("dead-letters", "list", QAPP)  # the default queue's
    [row] = [line.split() for line in _cli("stats", QAPP, "--queue", "critical").splitlines()
             if line.startswith("critical")]
    assert row[:5] == ["critical", "0", "0", "0", "1"]  # waiting, in flight, delayed, dead letters
    rows = [line.split()[0] for line in _cli("stats", QAPP).splitlines()[2:]]
    assert rows == ["critical", "default"]  # a row per queue of the app
    assert "redrove 1" in _cli("dead-letters", "redrive", QAPP, "--queue", "critical")


@pytest.mark.parametrize(("args", "message"), [
    (("stats", "memory://x", "--queue", "critical"), "--queue critical picks one of an app's queues"),
    (("stats", QAPP, "--queue", "urgent"), "no queue 'urgent'"),
    (("worker", QAPP, "--weights", "critical=high", "--strategy", "weighted"), "is not NAME=N"),
    (("worker", QAPP, "--queues", "critical,nope"), "no queue 'nope'"),
])
def test_the_cli_refuses_bad_queue_options_in_one_line(cli_app: Any, args: tuple[str, ...], message: str) -> None:
    lines = [line for line in _cli(*args, ok=False).splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


# -- terraform-vars --------------------------------------------------------------------------------
def test_terraform_vars_give_one_entry_per_queue_besides_the_default() -> None:
    from cloudqueue.tfvars import render_tfvars

    app = cq.App("shop", queues={"critical": "memory://tf-c", "default": "memory://tf-d", "bulk": "memory://tf-b"})

    @app.job(queue="critical", retry=cq.Retry(attempts=5))
    def page(payload: Receipt) -> None: ...

    @app.job(queue="bulk", ordering_key="exports")
    def export(payload: Receipt) -> None: ...

    @app.job
    def ship(payload: Receipt) -> None: ...

    text = render_tfvars(app, "aws-sqs-lambda")
    body = text.split("\nmax_receive_count", 1)[1]
    assert "queues = {\n  critical = {\n    max_receive_count   = 10\n    fifo                = false\n" in body
    assert ("  bulk = {\n    max_receive_count   = 10\n    fifo                = true\n"
            "    allow_send_to_queue = false\n  }\n}\n") in body
    assert "\nfifo                = false\n" in text  # the default queue's own jobs have no ordering key
    assert "queues: the app's queues besides 'default'" in " ".join(text.split())
    pubsub = render_tfvars(app, "gcp-pubsub")
    assert "  bulk = {\n    max_delivery_attempts   = 10\n" in pubsub
    single = cq.App("shop", backend="memory://")

    @single.job
    def alone(payload: Receipt) -> None: ...

    assert "queues" not in render_tfvars(single, "gcp-cloud-tasks")


def test_the_doctor_checks_every_queue_with_the_jobs_routed_to_it() -> None:
    from cloudqueue.doctor import DoctorSettings, diagnose, queues_of

    app = cq.App("shop", queues={"critical": "memory://doc-c", "default": "memory://doc-d"})

    @app.job(queue="critical", retry=cq.Retry(attempts=2))
    def page(payload: Receipt) -> None: ...

    @app.job(ordering_key="orders", retry=cq.Retry(attempts=7))
    def ship(payload: Receipt) -> None: ...

    checked = queues_of(app, DoctorSettings())
    assert [(q.label, q.ordered_jobs, q.max_attempts) for q in checked] == [
        ("memory://doc-c", [], 7), ("memory://doc-d", ["ship"], 7)]
    assert checked[0].terraform_values("aws-sqs-lambda")["fifo"] is False
    assert checked[1].terraform_values("aws-sqs-lambda")["fifo"] is True
    assert "in 2 queue(s): memory://doc-c, memory://doc-d" in diagnose(app).render()


def test_the_dashboard_lists_every_queue_in_declared_order() -> None:
    from cloudqueue.dashboard import queues_of

    app, queues = _app()
    assert queues_of(app) == [(name, queues[name]) for name in NAMES]


def test_use_backend_swaps_one_queue_for_the_block() -> None:
    from cloudqueue.testing import use_backend

    app = cq.App("shop", queues={"critical": "memory://swap-c", "default": "memory://swap-d"})

    @app.job(queue="critical")
    def page(payload: Receipt) -> None: ...

    stand_in = MemoryBackend()
    with use_backend(app, stand_in, queue="critical"):
        page.enqueue(_r(1))
        assert app.queue("critical") is stand_in and len(stand_in.pending()) == 1
    assert app.queue_url("critical") == "memory://swap-c" and app.queue("critical") is not stand_in
    with use_backend(app, stand_in):
        assert app.backend is stand_in and app.queue("default") is stand_in
    assert app.backend_url == "memory://swap-d"


def test_weighted_shares_messages_when_a_receive_takes_several() -> None:
    backends = _filled([60, 60])
    picker = _Picker(backends, [1, 1])
    taken = [0, 0]
    for _ in range(20):
        backend, batch = picker.receive(3, timedelta(0), None)
        taken[backends.index(backend)] += len(batch)  # type: ignore[arg-type]
    assert taken == [30, 30]
