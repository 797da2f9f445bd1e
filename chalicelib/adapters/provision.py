"""Create the tables, queues and topic locally (moto) from the same definitions infra uses."""
from __future__ import annotations

import json

from chalicelib import limits
from chalicelib.adapters import tables
from chalicelib.settings import Settings

WORK_QUEUE_NAME = "agent-scheduler-work"
DLQ_NAME = "agent-scheduler-dlq"
ALERT_TOPIC_NAME = "agent-scheduler-alerts"
# The same numbers the stack uses (chalicelib/limits.py says how they fit together).
WORKER_TIMEOUT_SECONDS = limits.WORKER_TIMEOUT_SECONDS
WORK_QUEUE_VISIBILITY_SECONDS = limits.WORK_QUEUE_VISIBILITY_SECONDS
MAX_RECEIVE_COUNT = limits.MAX_RECEIVE_COUNT  # a message received this often goes to the DLQ
DLQ_RETENTION_SECONDS = limits.DLQ_RETENTION_SECONDS


def provision(settings: Settings, sqs, sns, kms=None) -> Settings:
    """Create everything (idempotent) and return settings with the URLs and ARN filled in.

    With a ``kms`` client and no ``SCHEDULER_SIGNING_KEY_ID``, a key for webhook agents'
    signing secrets is created too and named in the settings returned."""
    tables.bind(settings)
    tables.create_tables(wait=False)
    dlq_url = sqs.create_queue(
        QueueName=DLQ_NAME, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    work_url = sqs.create_queue(
        QueueName=WORK_QUEUE_NAME,
        Attributes={
            "VisibilityTimeout": str(WORK_QUEUE_VISIBILITY_SECONDS),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
        },
    )["QueueUrl"]
    topic_arn = sns.create_topic(Name=ALERT_TOPIC_NAME)["TopicArn"]
    settings = settings.with_(work_queue_url=work_url, dlq_url=dlq_url, alert_topic_arn=topic_arn)
    if kms is not None and not settings.signing_key_id:
        from chalicelib.adapters.signing_keys import create_key

        settings = settings.with_(signing_key_id=create_key(kms))
    return settings
