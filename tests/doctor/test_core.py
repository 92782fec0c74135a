"""The core of `cloudqueue doctor`: no cloud SDK, checks found by scheme (built in or by entry
point), findings rendered as a table with their fixes, exit 1 only on an error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.cli import cli
from cloudqueue.doctor import ENTRY_POINT_GROUP, Finding, Report, Severity, checks_for, diagnose
from tests.conftest import missing_component

REPO = Path(__file__).resolve().parents[2]


class Order(BaseModel):
    order_id: str


def test_the_core_doctor_imports_no_cloud_sdk() -> None:
    code = textwrap.dedent("""
        import sys
        import cloudqueue as cq
        from cloudqueue.doctor import diagnose
        from pydantic import BaseModel

        class Order(BaseModel):
            order_id: str

        app = cq.App("shop", backend="memory://")

        @app.job
        def ship(payload: Order) -> None: ...

        report = diagnose(app)
        # "google" and "google.cloud" are namespace stubs a .pth file loads at start-up
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "google", "grpc",
                                                                       "cloudqueue_aws", "cloudqueue_gcp")
                        and m not in ("google", "google.cloud"))
        print(loaded, [f.check for f in report.findings])
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] ['checks']"


def test_a_memory_app_has_nothing_deployed_to_check() -> None:
    app = cq.App("shop", backend="memory://")

    @app.job
    def ship(payload: Order) -> None: ...

    report = diagnose(app)
    [finding] = report.findings
    assert (finding.severity, finding.check, finding.fix) == (Severity.NOTE, "checks", "nothing is deployed to compare")
    assert report.ok and report.checked == ["memory://"]


def test_an_app_without_jobs_is_a_configuration_error_naming_the_fix() -> None:
    with pytest.raises(cq.ConfigurationError, match="no jobs registered; import the module that defines them"):
        diagnose(cq.App("empty", backend="memory://"))


def test_first_party_checks_are_found_by_scheme_and_unknown_schemes_have_none() -> None:
    try:
        from cloudqueue_aws import doctor
    except ImportError:
        missing_component("cloudqueue-aws (the SQS checks)", 'pip install -e "adapters/aws[test]"')

    assert checks_for("sqs") is doctor.check
    assert checks_for("no-such-scheme") is None


# -- a third-party backend's checks, found through a real entry point ---------------------------------

@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A distribution on sys.path that registers a backend and its doctor checks; yields its scheme."""
    scheme = f"acme{uuid.uuid4().hex[:6]}"
    module = f"acme_queue_{scheme}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        from cloudqueue.backends.memory import MemoryBackend
        from cloudqueue.doctor import Finding, QueueUnderCheck

        def from_url(url: str) -> MemoryBackend:
            return MemoryBackend()

        def check(queue: QueueUnderCheck) -> list[Finding]:
            findings = [queue.warning("retention", "1 day", "7 days", "old jobs expire")]
            if queue.max_attempts > 2:
                findings.append(queue.error("attempts", f"2, jobs {queue.max_attempts}", "raise it",
                                            "jobs dead-letter early"))
            return findings
        """))
    dist = tmp_path / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[cloudqueue.backends]\n{scheme} = {module}:from_url\n\n[{ENTRY_POINT_GROUP}]\n{scheme} = {module}:check\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield scheme


def test_a_third_party_backend_adds_checks_through_the_entry_point_group(third_party: str) -> None:
    app = cq.App("shop", backend=f"{third_party}://jobs?x=1")

    @app.job(retry=cq.Retry(attempts=4))
    def ship(payload: Order) -> None: ...

    report = diagnose(app)
    assert [(f.queue, f.check, f.severity) for f in report.findings] == [
        (f"{third_party}://jobs", "retention", Severity.WARNING),
        (f"{third_party}://jobs", "attempts", Severity.ERROR)]
    assert report.findings[1].found == "2, jobs 4"
    assert not report.ok


def test_the_table_lists_errors_first_with_each_fix_and_explains_on_request() -> None:
    report = Report(findings=[
        Finding("sqs://orders", "long polling", Severity.WARNING, "wait 0 s", "wait 20 s", "empty receives"),
        Finding("sqs://orders", "max receive count", Severity.ERROR, "5", "max_receive_count = 10", "early DLQ"),
    ], checked=["sqs://orders"])
    plain = report.render()
    lines = plain.splitlines()
    assert lines[0] == "sqs://orders"
    assert lines[1].split() == ["severity", "check", "found", "fix"]
    assert lines[3].split()[:4] == ["error", "max", "receive", "count"] and "max_receive_count = 10" in lines[3]
    assert lines[4].startswith("warning") and lines[4].endswith("wait 20 s")
    assert lines[-1] == "1 error(s), 1 warning(s) in 1 queue(s): sqs://orders"
    assert "why:" not in plain
    explained = report.render(explain=True).splitlines()
    assert explained[4].strip() == "why: early DLQ"


def test_the_command_exits_1_on_an_error_and_0_on_warnings_only(
        third_party: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for attempts, code in ((4, 1), (2, 0)):
        name = f"doctor_core_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
            import cloudqueue as cq
            from pydantic import BaseModel

            class Order(BaseModel):
                order_id: str

            app = cq.App("shop", backend="{third_party}://jobs")

            @app.job(retry=cq.Retry(attempts={attempts}))
            def ship(payload: Order) -> None: ...
            """))
        result = CliRunner().invoke(cli, ["doctor", f"{name}:app"])
        assert result.exit_code == code, result.output
        assert "retention" in result.stdout
