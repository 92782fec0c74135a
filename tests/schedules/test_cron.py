"""cq.Cron: expressions, zones and daylight saving time, slot keys, EventBridge expressions."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.schedules import Cron, aws_cron_expression, cloud_body, slot_key

BERLIN = ZoneInfo("Europe/Berlin")


class Report(BaseModel):
    kind: str


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)  # type: ignore[misc]


def test_a_daily_slot_is_read_in_its_time_zone() -> None:
    cron = Cron("0 3 * * *", tz="Europe/Berlin")
    # 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer
    assert cron.next_after(utc(2026, 1, 10, 12, 0)) == utc(2026, 1, 11, 2, 0)
    assert cron.next_after(utc(2026, 7, 10, 12, 0)) == utc(2026, 7, 11, 1, 0)


def test_a_slot_in_the_spring_gap_runs_once_right_after_it() -> None:
    # 2026-03-29: Berlin's clocks jump from 02:00 to 03:00; 02:30 does not exist that day
    cron = Cron("30 2 * * *", tz="Europe/Berlin")
    slots = cron.due(utc(2026, 3, 28, 12, 0), utc(2026, 3, 31, 12, 0))
    local = [slot.astimezone(BERLIN).strftime("%m-%d %H:%M") for slot in slots]
    assert local == ["03-29 03:00", "03-30 02:30", "03-31 02:30"]


def test_a_daily_slot_in_the_repeated_autumn_hour_runs_once() -> None:
    # 2026-10-25: Berlin's clocks go back from 03:00 to 02:00; 02:30 happens twice
    cron = Cron("30 2 * * *", tz="Europe/Berlin")
    slots = cron.due(utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 12, 0))
    assert slots == [utc(2026, 10, 25, 0, 30)]  # the first 02:30 (+02:00)


def test_bad_expressions_and_zones_are_refused_with_the_fix() -> None:
    with pytest.raises(cq.ConfigurationError, match="five fields"):
        Cron("0 3 * *")
    with pytest.raises(cq.ConfigurationError, match="unknown time zone 'Mars/Olympus'"):
        Cron("0 3 * * *", tz="Mars/Olympus").check()
    with pytest.raises(cq.ConfigurationError, match=r"cq.Cron\('61 3 \* \* \*'\)"):
        Cron("61 3 * * *").check()
    with pytest.raises(cq.ConfigurationError, match="missed must be"):
        Cron("0 3 * * *", missed="later")  # type: ignore[arg-type]


def test_a_schedule_payload_is_validated_when_the_job_is_registered() -> None:
    app = cq.App("t", backend="memory://")
    with pytest.raises(cq.ConfigurationError,
                       match=r"(?s)job .nightly.: the payload of schedule .*field .kind.: Field required"):
        @app.job(schedule=cq.Cron("0 3 * * *", payload={"wrong": 1}))
        def nightly(payload: Report) -> None: ...


def test_two_schedules_of_one_job_need_different_ids() -> None:
    app = cq.App("t", backend="memory://")
    with pytest.raises(cq.ConfigurationError, match="share the id"):
        @app.job(schedule=[cq.Cron("0 3 * * *", payload={"kind": "a"}),
                           cq.Cron("0 3 * * *", payload={"kind": "a"})])
        def nightly(payload: Report) -> None: ...

    @app.job(schedule=[cq.Cron("0 3 * * *", payload={"kind": "daily"}),
                       cq.Cron("0 4 * * 1", payload={"kind": "weekly"}, name="weekly")])
    def reports(payload: Report) -> None: ...

    assert [s.id for s in reports.schedules][1] == "weekly"
    assert len({s.id for s in reports.schedules}) == 2


def test_the_slot_key_names_job_schedule_and_slot_in_utc() -> None:
    cron = Cron("0 3 * * *", tz="Europe/Berlin", name="daily")
    slot = datetime(2026, 11, 29, 3, 0, tzinfo=BERLIN)
    assert slot_key("nightly", cron, slot) == "cron:nightly:daily:2026-11-29T02:00:00Z"


@pytest.mark.parametrize(("unix", "aws"), [
    ("0 3 * * *", "cron(0 3 * * ? *)"),
    ("*/15 9-17 * * 1-5", "cron(*/15 9-17 ? * 2-6 *)"),
    ("0 4 * * sun", "cron(0 4 ? * 1 *)"),
    ("0 4 * * 0,6", "cron(0 4 ? * 1,7 *)"),
    ("0 4 * * 7", "cron(0 4 ? * 1 *)"),
    ("30 1 1 * *", "cron(30 1 1 * ? *)"),
])
def test_unix_expressions_become_eventbridge_ones(unix: str, aws: str) -> None:
    assert aws_cron_expression(Cron(unix)) == aws


def test_an_expression_eventbridge_cannot_carry_is_refused() -> None:
    with pytest.raises(cq.ConfigurationError, match="split it into two schedules"):
        aws_cron_expression(Cron("0 3 1 * mon"))
    with pytest.raises(cq.ConfigurationError, match="wraps past Saturday"):
        aws_cron_expression(Cron("0 3 * * 5-7"))


def test_the_cloud_body_is_an_envelope_once_the_slot_is_filled_in() -> None:
    from cloudqueue.envelope import decode

    app = cq.App("shop", backend="memory://")

    @app.job(schedule=cq.Cron("0 3 * * *", payload={"kind": "daily"}, name="daily"))
    def nightly(payload: Report) -> None: ...

    body = cloud_body(app, nightly, nightly.schedules[0])
    assert "<aws.scheduler.scheduled-time>" in body
    env = decode(body.replace("<aws.scheduler.scheduled-time>", "2026-11-29T03:00:00Z").encode())
    assert env.type == "nightly" and env.data == {"kind": "daily"}
    assert env.key == "cron:nightly:daily:2026-11-29T03:00:00Z"
    assert env.time == "2026-11-29T03:00:00Z"
    assert env.id == "cron-nightly-daily-2026-11-29T03:00:00Z"


def test_declaring_a_schedule_imports_no_cron_parser() -> None:
    import subprocess
    import sys

    code = ("import sys, cloudqueue as cq\n"
            "cq.Cron('0 3 * * *', tz='Europe/Berlin')\n"
            "assert 'cronsim' not in sys.modules\n"
            "import cloudqueue\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_an_app_without_schedules_or_limits_never_imports_them() -> None:
    import subprocess
    import sys

    code = ("import sys, cloudqueue\n"
            "print(sorted(m for m in sys.modules if m in ('cloudqueue.schedules', 'cloudqueue.limits')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
