"""Least privilege: what each Lambda function may do, and on exactly which resource.

One table, reviewed against the code paths (chalicelib/services/*):
- only the functions that check a bearer token read the JWT secret (the
  container reads it on first use): the REST API and the WebSocket connect
  handler; the tick and the worker never do;
- every function writes its own log group (created by the stack, so no
  CreateLogGroup) and its EMF metrics go through those logs (no PutMetricData);
- DynamoDB transactions (TransactWriteItems) are authorised per item as
  PutItem/UpdateItem/DeleteItem, batches as BatchGetItem; SendMessageBatch as
  SendMessage, DeleteMessageBatch as DeleteMessage.

Resources are symbolic here and resolved to ARNs by the stack:
``table:<key>``, ``index:<key>:<index name>``, ``queue:work``, ``queue:dlq``,
``topic:alerts``, ``secret:jwt``, ``ws:connections`` (the WebSocket API's
@connections, POST), ``ws:close`` (DELETE @connections), ``lambda:agents`` (functions ``lambda`` agents may invoke),
``kms:signing`` (the key of webhook agents' signing secrets: the API only encrypts, the worker only decrypts),
``logs:self`` (the function's own log group).
"""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.adapters.tables import AgentTenantModel, ConnectionModel, SessionModel
from infra.config import index_name

DUE_INDEX = index_name(AgentTenantModel, "due_index")
PENDING_INDEX = index_name(SessionModel, "pending_index")
ACTIVE_INDEX = index_name(SessionModel, "active_index")
DLQ_INDEX = index_name(SessionModel, "dlq_index")
TENANT_INDEX = index_name(ConnectionModel, "tenant_index")

GET, PUT, UPDATE, DELETE = "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"
QUERY, SCAN, BATCH_GET = "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem"
BATCH_WRITE = "dynamodb:BatchWriteItem"
SQS_SEND, SQS_RECEIVE, SQS_DELETE = "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"
SQS_VISIBILITY, SQS_ATTRIBUTES = "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"
MANAGE_CONNECTIONS = "execute-api:ManageConnections"
READ_SECRET = "secretsmanager:GetSecretValue"
# With the X-Ray option only, on "*" (X-Ray has no resource-level permissions).
XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")


@dataclass(frozen=True)
class Access:
    resource: str
    actions: tuple[str, ...]


COMMON = (
    Access("logs:self", ("logs:CreateLogStream", "logs:PutLogEvents")),
)

ACCESS: dict[str, tuple[Access, ...]] = {
    # REST API: agents, schedules (bulk: BatchGet), run now, sessions, cancel, status, pause, DLQ.
    "api_handler": (
        Access("table:agents", (GET, PUT, UPDATE, DELETE, QUERY, BATCH_GET)),
        Access("table:sessions", (GET, PUT, UPDATE, QUERY, BATCH_GET)),
        Access(f"index:sessions:{PENDING_INDEX}", (QUERY,)),
        Access(f"index:sessions:{DLQ_INDEX}", (QUERY, SCAN)),  # Scan: an admin lists every tenant's
        Access(f"index:sessions:{ACTIVE_INDEX}", (QUERY,)),  # status: runs holding slots
        # BatchGet: the slot counters; Put/Delete: idempotency records (Idempotency-Key); Delete: a pool
        Access("table:control", (GET, PUT, UPDATE, DELETE, BATCH_GET)),
        Access("queue:work", (SQS_SEND,)),  # run now, cancel and redrive admit at once
        Access("queue:dlq", (SQS_RECEIVE, SQS_DELETE, SQS_VISIBILITY)),  # redrive drains the DLQ
        # Agents' callbacks end attempts as the worker does: the hand-off checks the pause, a dead
        # run's DLQ copy and alert.
        Access("table:control", ("dynamodb:ConditionCheckItem",)),
        Access("queue:dlq", (SQS_SEND,)),
        Access("topic:alerts", ("sns:Publish",)),
        Access("secret:jwt", (READ_SECRET,)),  # bearer tokens
        Access("kms:signing", ("kms:Encrypt",)),  # a webhook agent's new signing secret, never read back
        # schedule:changed events: the tenant's connections, gone ones removed
        Access("table:connections", (DELETE,)),
        Access(f"index:connections:{TENANT_INDEX}", (QUERY,)),
        Access("ws:connections", (MANAGE_CONNECTIONS,)),
        # GET /api/events (Query, the head), tickets (Put), events of the API's own changes
        Access("table:events", (GET, PUT, UPDATE, QUERY)),
    ),
    # The minute tick: due schedules, admission, the sweep, scheduler:status to every connection.
    "tick": (
        # BatchGet: admission reads the waiting runs' agents (limits); Get: an abandoned attempt's agent
        # (its budget, its brakes); Put: a schedule the brakes disable gets its history item
        Access("table:agents", (GET, PUT, UPDATE, BATCH_GET)),
        Access(f"index:agents:{DUE_INDEX}", (QUERY,)),
        Access("table:sessions", (GET, PUT, UPDATE, BATCH_GET)),  # Get: "was it me?" after a failed write
        Access(f"index:sessions:{PENDING_INDEX}", (QUERY,)),
        Access(f"index:sessions:{DLQ_INDEX}", (QUERY,)),  # dlqDepth in the status pushed to each tenant
        Access(f"index:sessions:{ACTIVE_INDEX}", (QUERY,)),  # recovery sweep, reconciler, status
        # slot and keyed counters; Scan: the reconciler's view of the keyed counters
        Access("table:control", (GET, UPDATE, BATCH_GET, SCAN, "dynamodb:ConditionCheckItem")),
        Access("table:connections", (SCAN, DELETE)),
        Access("table:events", (PUT, UPDATE, BATCH_WRITE)),  # scheduler:status, agent:skipped: numbered, kept
        Access("queue:work", (SQS_SEND,)),
        # recovery ends abandoned attempts like the worker does: a dead run's DLQ copy and alert
        Access("queue:dlq", (SQS_SEND,)),
        Access("topic:alerts", ("sns:Publish",)),
        Access("ws:connections", (MANAGE_CONNECTIONS,)),
    ),
    # The worker: claims, runs, records, retries, dead-letters, alerts, admits the next run.
    "worker": (
        # BatchGet: the next run's agent (its limits); Put: the history item of a schedule the brakes disable
        Access("table:agents", (GET, PUT, UPDATE, BATCH_GET)),
        Access("table:sessions", (GET, PUT, UPDATE, QUERY)),  # Query: the overlap check (recent runs)
        Access(f"index:sessions:{PENDING_INDEX}", (QUERY,)),
        # hand-off checks the pause; BatchGet: keyed counters and pools for the next run, admission
        # (also after CANCEL_PREVIOUS cancelled an earlier run)
        Access("table:control", (GET, UPDATE, BATCH_GET, "dynamodb:ConditionCheckItem")),
        Access("table:connections", (DELETE,)),
        Access(f"index:connections:{TENANT_INDEX}", (QUERY,)),
        Access("queue:work", (SQS_RECEIVE, SQS_DELETE, SQS_ATTRIBUTES, SQS_SEND)),  # event source + admission
        Access("queue:dlq", (SQS_SEND,)),
        Access("table:events", (PUT, UPDATE)),  # run events: numbered (head), kept
        Access("topic:alerts", ("sns:Publish",)),
        Access("lambda:agents", ("lambda:InvokeFunction",)),  # the `lambda` agent kind
        Access("kms:signing", ("kms:Decrypt",)),  # signs webhook deliveries with the agent's secret
        Access("ws:connections", (MANAGE_CONNECTIONS,)),
    ),
    "websocket_connect": (
        Access("table:connections", (PUT,)),
        Access("secret:jwt", (READ_SECRET,)),  # the token in the connect request
        Access("table:events", (GET, DELETE)),  # a single-use ticket: read, then deleted
    ),
    "websocket_message": (
        Access("table:connections", (GET, UPDATE, DELETE)),
        Access("table:agents", (GET,)),  # subscribe checks the agent is the tenant's
        Access("table:events", (GET, UPDATE, QUERY)),  # follow, hold, replay, go live (the stream head)
        Access("ws:connections", (MANAGE_CONNECTIONS,)),
        Access("ws:close", (MANAGE_CONNECTIONS,)),  # a replay that cannot be sent closes its connection
    ),
    "websocket_disconnect": (
        Access("table:connections", (GET, DELETE)),
        Access("table:events", (UPDATE,)),  # leave the stream head
    ),
}


def grants(function: str) -> tuple[Access, ...]:
    return ACCESS[function] + COMMON
