"""The public surface: explicit __all__, the error tree, no cloud SDK on import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cloudqueue as cq
from cloudqueue import backends
from cloudqueue.backends.base import Backend
from cloudqueue.backends.memory import MemoryBackend


def test_all_names_exist_and_cover_the_contract() -> None:
    for name in cq.__all__:
        assert hasattr(cq, name), name
    contract = {"App", "Job", "Retry", "Backoff", "Permanent", "RetryLater", "JobContext",
                "CloudQueueError", "ConfigurationError", "UnknownJobError", "PayloadError",
                "BackendError", "QueueNotFound", "PermissionDenied", "Throttled",
                "BackendUnavailable", "UnsupportedFeature", "EnqueueError"}
    assert contract <= set(cq.__all__)
    public = {n for n in vars(cq) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(cq.__all__), public - set(cq.__all__)


def test_every_error_is_a_cloudqueue_error_in_its_place() -> None:
    for name in ("QueueNotFound", "PermissionDenied", "Throttled", "BackendUnavailable", "EnqueueError"):
        assert issubclass(getattr(cq, name), cq.BackendError)
    for name in ("ConfigurationError", "PayloadError", "BackendError", "UnsupportedFeature"):
        assert issubclass(getattr(cq, name), cq.CloudQueueError)
    assert issubclass(cq.UnknownJobError, cq.ConfigurationError)
    # job control signals are not library errors
    assert not issubclass(cq.Permanent, cq.CloudQueueError)
    assert not issubclass(cq.RetryLater, cq.CloudQueueError)


def test_import_loads_no_cloud_sdk() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import cloudqueue"],
                         capture_output=True, text=True, check=True).stderr
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    assert not loaded & {"boto3", "botocore", "google", "grpc", "aiobotocore", "click"}, \
        sorted(loaded & {"boto3", "botocore", "google", "grpc", "click"})


def test_unknown_scheme_suggests_a_close_one() -> None:
    with pytest.raises(cq.ConfigurationError, match=r"unknown backend scheme 'memroy'.*did you mean 'memory'"):
        backends.from_url("memroy://x")
    with pytest.raises(cq.ConfigurationError, match="has no scheme"):
        backends.from_url("orders")


@pytest.mark.parametrize(("scheme", "extra"), [("sqs", "aws"), ("cloudtasks", "gcp"), ("pubsub", "gcp")])
def test_first_party_schemes_without_their_adapter_give_the_install_hint(
        monkeypatch: pytest.MonkeyPatch, scheme: str, extra: str) -> None:
    monkeypatch.setattr(backends, "_entry_points", dict)  # as on an install without adapters
    with pytest.raises(cq.ConfigurationError, match=rf'pip install "cloudqueue\[{extra}\]"'):
        backends.from_url(f"{scheme}://queue")


def make_plugin_backend(url: str) -> Backend:
    backend = MemoryBackend(name="")
    backend.scheme = "plugin"
    return backend


def test_a_third_party_backend_plugs_in_through_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_entry_points",
                        lambda: {"plugin": "tests.unit.test_public_api:make_plugin_backend"})
    assert backends.from_url("plugin://anything").scheme == "plugin"
    assert "plugin" in backends.registered_schemes()


def test_the_memory_backend_is_registered_as_an_entry_point() -> None:
    assert "memory" in backends._entry_points()
