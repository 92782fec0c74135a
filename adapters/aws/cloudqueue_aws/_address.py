"""Where a queue is: ``sqs://`` URLs, queue URLs and ARNs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from cloudqueue import ConfigurationError
from cloudqueue.backends.options import parse_options, parse_seconds

#: URL query options of ``sqs://`` and what they configure
OPTIONS = ("region", "endpoint_url", "visibility_timeout", "wait", "dead_letter_url", "long_delay",
           "scheduler_role_arn", "long_delay_threshold", "scheduler_group")


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed ``sqs://`` URL: the queue's name or full URL, and the client options."""

    name: str
    queue_url: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    visibility_timeout: timedelta | None = None
    wait: timedelta | None = None
    dead_letter_url: str | None = None
    long_delay: str | None = None
    scheduler_role_arn: str | None = None
    long_delay_threshold: timedelta | None = None
    scheduler_group: str | None = None

    @property
    def fifo(self) -> bool:
        return self.name.endswith(".fifo")


def parse_url(url: str) -> Address:
    """Parse ``sqs://<queue-name>[?options]`` or ``sqs://<host>/<account>/<queue-name>[?options]``.

    The second form is a full queue URL without its ``https://`` (``http`` when the
    ``endpoint_url`` option says so). Options: region, endpoint_url, visibility_timeout
    and wait (seconds), dead_letter_url.

    Raises:
        ConfigurationError: another scheme, no queue name, an unknown or malformed option.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqs":
        raise ConfigurationError(f"not an sqs:// URL: {url!r}")
    options = parse_options("sqs", parts.query, OPTIONS)
    path = parts.path.strip("/")
    endpoint = options.get("endpoint_url") or None
    queue_url = None
    region = options.get("region") or None
    if path:  # host/account/name: a full queue URL
        segments = path.split("/")
        if len(segments) != 2 or not segments[1]:
            raise ConfigurationError(
                f"sqs:// URL {url!r}: write sqs://<queue-name> or sqs://<host>/<account-id>/<queue-name>")
        name = segments[1]
        scheme = urlsplit(endpoint).scheme if endpoint else "https"
        queue_url = f"{scheme}://{parts.netloc}/{path}"
        host = parts.netloc.split(":")[0].split(".")
        if region is None and len(host) >= 3 and host[0] == "sqs":
            region = host[1]  # sqs.<region>.amazonaws.com
    else:
        name = parts.netloc
    if not name:
        raise ConfigurationError(f"sqs:// URL {url!r} names no queue; write e.g. sqs://orders")
    return Address(name=name, queue_url=queue_url, region=region, endpoint_url=endpoint,
                   visibility_timeout=_seconds(options, "visibility_timeout"),
                   wait=_seconds(options, "wait"),
                   dead_letter_url=options.get("dead_letter_url") or None,
                   long_delay=options.get("long_delay") or None,
                   scheduler_role_arn=options.get("scheduler_role_arn") or None,
                   long_delay_threshold=_seconds(options, "long_delay_threshold"),
                   scheduler_group=options.get("scheduler_group") or None)


def _seconds(options: dict[str, str], key: str) -> timedelta | None:
    text = options.get(key)
    return None if text is None or text == "" else parse_seconds("sqs", key, text)


@dataclass(frozen=True, slots=True)
class Arn:
    """``arn:aws:sqs:<region>:<account>:<name>``."""

    partition: str
    region: str
    account: str
    name: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:sqs:{self.region}:{self.account}:{self.name}"


def parse_arn(text: str) -> Arn:
    """Parse an SQS queue ARN.

    Raises:
        ConfigurationError: not an SQS queue ARN.
    """
    parts = text.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        raise ConfigurationError(f"not an SQS queue ARN: {text!r} (expected "
                                 "arn:aws:sqs:<region>:<account>:<queue-name>)")
    return Arn(partition=parts[1], region=parts[3], account=parts[4], name=parts[5])
