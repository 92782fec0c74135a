"""Fixtures for the claim check: S3 on the moto server, Cloud Storage on gcp-storage-emulator,
and the queue fixtures of the AWS and Google tests."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.aws.conftest import make_queue, sqs
from tests.conftest import free_port, missing_component
from tests.gcp.conftest import emulator, http_function, issuer, project, queues, tasks_server

__all__ = ["emulator", "gcs_emulator", "http_function", "issuer", "make_queue", "project", "queues", "s3",
           "s3_bucket", "sqs", "tasks_server"]


@pytest.fixture(scope="session")
def s3(moto_server: str) -> Iterator[Any]:
    """A boto3 S3 client talking to the moto server."""
    try:
        import boto3
    except ImportError:
        missing_component("boto3", 'install the AWS adapter: pip install -e "adapters/aws[test]"')
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3: Any) -> Iterator[str]:
    """A fresh bucket on the moto server, emptied and removed afterwards."""
    name = f"payloads-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


class GCSEmulator:
    """gcp-storage-emulator serving Cloud Storage's JSON API on a loopback port, in memory."""

    def __init__(self) -> None:
        try:
            from gcp_storage_emulator.server import create_server
        except ImportError:
            missing_component("gcp-storage-emulator (Cloud Storage emulator)",
                              'pip install -e "adapters/gcp[test]"')
        # it logs every request at INFO; the tests' output stays readable without that
        logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._server = create_server("127.0.0.1", self.port, in_memory=True)
        self._server.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/storage/v1/b?project=local", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self._server.stop()
                    missing_component("a responding Cloud Storage emulator", "see gcp-storage-emulator's log")
                time.sleep(0.1)

    def make_bucket(self) -> str:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        name = f"payloads-{uuid.uuid4().hex[:12]}"
        client = storage.Client(project="local", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": f"http://{self.host}"})
        client.create_bucket(name)
        return name

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSEmulator]:
    server = GCSEmulator()
    yield server
    server.stop()
