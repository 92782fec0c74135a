"""Making an SQS client, with boto3 imported only here and only when one is needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudqueue import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

INSTALL_HINT = 'pip install "cloudqueue[aws]"'
#: what to do when botocore finds no region anywhere
REGION_HINT = ("give the queue's region: sqs://orders?region=eu-west-1, a full queue URL "
               "(sqs://sqs.eu-west-1.amazonaws.com/123456789012/orders), or AWS_DEFAULT_REGION")


def make_client(region: str | None = None, endpoint_url: str | None = None) -> SQSClient:
    """A boto3 SQS client (boto3 is imported here, not at module import).

    Raises:
        ConfigurationError: boto3 is not installed (with the install hint), or no region
            is set anywhere (with where to set one).
    """
    try:
        import boto3
    except ImportError as exc:
        raise ConfigurationError(f"the sqs backend needs boto3: {INSTALL_HINT}") from exc
    from botocore.exceptions import NoRegionError

    try:
        client: SQSClient = boto3.client("sqs", region_name=region, endpoint_url=endpoint_url)
    except NoRegionError as exc:
        raise ConfigurationError(f"SQS needs a region and none is set: {REGION_HINT}") from exc
    return client
