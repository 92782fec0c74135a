"""An app with schedules for the CLI tests, loaded as tests.schedules.cron_app:app."""

from __future__ import annotations

from pydantic import BaseModel

import cloudqueue as cq

app = cq.App("cron-test", backend="memory://cron-tests")


class Report(BaseModel):
    kind: str


@app.job(schedule=cq.Cron("* * * * *", payload={"kind": "minutely"}, name="minutely"))
def report(payload: Report) -> None:
    """Runs every minute."""
