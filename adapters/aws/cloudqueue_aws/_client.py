"""Making an SQS client, with boto3 imported only here and only when one is needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudqueue import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

INSTALL_HINT = 'pip install "cloudqueue[aws]"'


def make_client(region: str | None = None, endpoint_url: str | None = None) -> SQSClient:
    """A boto3 SQS client (boto3 is imported here, not at module import).

    Raises:
        ConfigurationError: boto3 is not installed (with the install hint).
    """
    try:
        import boto3
    except ImportError as exc:
        raise ConfigurationError(f"the sqs backend needs boto3: {INSTALL_HINT}") from exc
    client: SQSClient = boto3.client("sqs", region_name=region, endpoint_url=endpoint_url)
    return client
