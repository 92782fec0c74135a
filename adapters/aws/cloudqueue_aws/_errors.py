"""botocore errors, translated at one boundary into the cloudqueue hierarchy.

    ClientError code                                    ->  cloudqueue error
    AWS.SimpleQueueService.NonExistentQueue,
      QueueDoesNotExist                                 ->  QueueNotFound
    AccessDenied, AccessDeniedException, KmsAccessDenied,
      InvalidClientTokenId, InvalidSecurity, ...        ->  PermissionDenied
    Throttling, ThrottlingException, RequestThrottled,
      KmsThrottled, OverLimit                           ->  Throttled
    any 5xx, InternalFailure, InternalError,
      ServiceUnavailable; connection errors             ->  BackendUnavailable
    no credentials / region, invalid parameters         ->  ConfigurationError (with the fix)
    anything else                                       ->  BackendError
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cloudqueue import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    EnqueueError,
    PermissionDenied,
    QueueNotFound,
    Throttled,
)

if TYPE_CHECKING:
    from cloudqueue import OutgoingMessage

NOT_FOUND = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "KmsAccessDenied", "InvalidClientTokenId",
                    "InvalidSecurity", "MissingAuthenticationToken", "SignatureDoesNotMatch",
                    "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException",
                    "NotAuthorized"})
THROTTLED = frozenset({"Throttling", "ThrottlingException", "RequestThrottled", "KmsThrottled",
                       "OverLimit", "TooManyRequestsException"})
UNAVAILABLE = frozenset({"InternalFailure", "InternalError", "ServiceUnavailable",
                         "AWS.SimpleQueueService.InternalError"})
_SETUP_ERRORS = frozenset({"NoCredentialsError", "PartialCredentialsError", "NoRegionError",
                           "ParamValidationError", "UnknownServiceError"})
_SETUP_HINTS = {
    "NoRegionError": "; give the queue's region: sqs://orders?region=eu-west-1, a full queue URL, "
                     "or AWS_DEFAULT_REGION",
    "NoCredentialsError": "; set AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                          "or a role), or pass client= with a configured boto3 client",
    "PartialCredentialsError": "; set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use AWS_PROFILE",
}
#: SendMessageBatch entry codes worth sending again (the service's fault, or throttling)
RETRYABLE_ENTRY_CODES = THROTTLED | UNAVAILABLE


class BatchSendError(EnqueueError):
    """SQS did not take every message of one ``send``: entries refused inside a
    SendMessageBatch, or a later SendMessageBatch of the same send failing.

    An ``EnqueueError`` (``sent``, ``not_sent``, ``errors``, ``unknown``), so
    ``enqueue_many`` folds it into its account of the whole call. ``failed`` maps each
    refused entry's job id to the service's code and message. ``sent`` lists the job ids
    that did reach the queue; sending the rest again is safe (FIFO queues deduplicate,
    and a job id is the same on a second try).
    """

    def __init__(self, message: str | None = None, *, sent: Sequence[str],
                 failed: Mapping[str, tuple[str, str]], not_sent: Sequence[str] | None = None,
                 errors: Mapping[str, Exception] | None = None, unknown: Iterable[str] = (),
                 job_ids: Sequence[str] | None = None,
                 not_sent_messages: Sequence[OutgoingMessage] = ()) -> None:
        self.failed: dict[str, tuple[str, str]] = dict(failed)
        refused: dict[str, Exception] = {
            job_id: BackendError(f"SQS refused the message: {code} {text}".rstrip())
            for job_id, (code, text) in self.failed.items()}
        super().__init__(message, sent=sent, not_sent=list(self.failed) if not_sent is None else not_sent,
                         errors={**refused, **(errors or {})}, unknown=unknown, job_ids=job_ids,
                         not_sent_messages=not_sent_messages)


def error_code(exc: BaseException) -> str:
    """The service's error code of a botocore ``ClientError`` ('' for other errors)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return ""
    error = response.get("Error") or {}
    return str(error.get("Code") or "")


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return 0
    meta = response.get("ResponseMetadata") or {}
    try:
        return int(meta.get("HTTPStatusCode") or 0)
    except (TypeError, ValueError):
        return 0


def translate(exc: Exception, action: str, *, service: str = "SQS", fix: str | None = None) -> Exception:
    """The cloudqueue error for a botocore error raised while doing ``action``.

    Non-botocore exceptions come back unchanged (they are not the SDK's to translate).
    ``service`` names the AWS service in the message; ``fix`` the actions to grant when
    access is denied (default: the sqs:* action named in the error).
    """
    module = type(exc).__module__
    if not (module.startswith("botocore") or module.startswith("boto3")):
        return exc
    code = error_code(exc)
    query_code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        query_code = str((response.get("Error") or {}).get("QueryErrorCode") or "")
    text = f"{service} {action} failed: {exc}"
    if code in NOT_FOUND or query_code in NOT_FOUND:
        return QueueNotFound(text + "; create it (Terraform module aws-sqs-lambda, or "
                             "cloudqueue_aws.ensure_queue for local work) or fix the URL")
    if code in DENIED or query_code in DENIED:
        return PermissionDenied(text + (f"; grant {fix} to this role" if fix
                                        else "; grant the sqs:* action named above to this role"))
    if code in THROTTLED or query_code in THROTTLED:
        return Throttled(text)
    if code in UNAVAILABLE or _status(exc) >= 500:
        return BackendUnavailable(text)
    if not code:
        if type(exc).__name__ in _SETUP_ERRORS:  # our side: no credentials, region, bad params
            return ConfigurationError(text + _SETUP_HINTS.get(type(exc).__name__, ""))
        return BackendUnavailable(text)  # no answer at all: connection refused, timeout, DNS
    return BackendError(text)


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Run an SQS call; re-raise botocore's errors as cloudqueue errors, ``from`` the original."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        mapped = translate(exc, action)
        if mapped is exc:
            raise
        raise mapped from exc
