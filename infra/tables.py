"""DynamoDB tables built from the pynamodb models (the single source of keys, indexes and TTL)."""
from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from infra.config import TABLES

CONSTRUCT_IDS = {"agents": "AgentsTable", "sessions": "SessionsTable", "control": "ControlTable",
                 "connections": "ConnectionsTable", "events": "EventsTable"}

_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER, "B": dynamodb.AttributeType.BINARY}
_PROJECTIONS = {
    "ALL": dynamodb.ProjectionType.ALL,
    "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY,
    "INCLUDE": dynamodb.ProjectionType.INCLUDE,
}


def _keys(key_schema, types):
    pk = sk = None
    for k in key_schema:
        attr = dynamodb.Attribute(name=k["AttributeName"], type=_TYPES[types[k["AttributeName"]]])
        if k["KeyType"] == "HASH":
            pk = attr
        else:
            sk = attr
    return pk, sk


def build_table(scope: Construct, key: str, *, deletion_protection: bool) -> dynamodb.Table:
    """One table: on-demand, point-in-time recovery, no stream (nothing consumes one), TTL from the model."""
    model, _ = TABLES[key]
    schema = model._get_schema()  # what pynamodb's create_table sends locally: same keys, same indexes
    types = {d["AttributeName"]: d["AttributeType"] for d in schema["attribute_definitions"]}
    pk, sk = _keys(schema["key_schema"], types)
    ttl = model._ttl_attribute()
    table = dynamodb.Table(
        scope,
        CONSTRUCT_IDS[key],
        partition_key=pk,
        sort_key=sk,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=ttl.attr_name if ttl is not None else None,
        deletion_protection=deletion_protection,
        removal_policy=RemovalPolicy.RETAIN,  # run history and agents outlive a stack deletion
    )
    for gsi in schema["global_secondary_indexes"]:
        gpk, gsk = _keys(gsi["key_schema"], types)
        projection = gsi["projection"]
        table.add_global_secondary_index(
            index_name=gsi["index_name"],
            partition_key=gpk,
            sort_key=gsk,
            projection_type=_PROJECTIONS[projection["ProjectionType"]],
            non_key_attributes=projection.get("NonKeyAttributes"),
        )
    if schema["local_secondary_indexes"]:
        raise NotImplementedError("local secondary indexes: add them here (none are defined today)")
    return table
