"""What an SQS event source mapping does around a Lambda function, against a real (moto)
queue: receive messages and hand them over as an event, then delete what succeeded."""

from __future__ import annotations

from typing import Any


def receive_event(sqs: Any, url: str, arn: str, count: int) -> dict[str, Any]:
    """What the event source mapping would invoke the function with: ``count`` messages
    received from the queue, as Lambda's SQS records."""
    messages: list[dict[str, Any]] = []
    while len(messages) < count:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, count - len(messages)),
                                  VisibilityTimeout=30, AttributeNames=["All"],
                                  MessageAttributeNames=["All"]).get("Messages")
        assert got, f"expected {count} messages, the queue gave {len(messages)}"
        messages += got
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m["Attributes"], "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
        "eventSourceARN": arn, "awsRegion": "us-east-1",
        "messageAttributes": {name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"],
                                     "stringListValues": [], "binaryListValues": []}
                              for name, value in (m.get("MessageAttributes") or {}).items()}}
        for m in messages]}


def esm_deletes_successes(sqs: Any, event: dict[str, Any], response: dict[str, Any], url: str) -> None:
    """What the event source mapping does with the response: delete every record not reported."""
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for record in event["Records"]:
        if record["messageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])
