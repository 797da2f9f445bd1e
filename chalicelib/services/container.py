"""Wiring: builds adapters once per Lambda container (or local process)."""
from __future__ import annotations

import functools
from typing import Any

from chalicelib.adapters import aws, tables
from chalicelib.adapters.connections_api import ConnectionPusher
from chalicelib.adapters.dynamo import AgentStore, ConnectionStore, ControlStore, SessionStore
from chalicelib.adapters.queues import AlertTopic, WorkQueue
from chalicelib.adapters.runstore import RunStore
from chalicelib.adapters.tickstore import TickWriter
from chalicelib.clock import Clock
from chalicelib.settings import Settings


class Container:
    """Everything a handler needs. Clients are created lazily, on first use."""

    def __init__(self, settings: Settings, clock: Clock | None = None, clients: dict | None = None) -> None:
        self.settings = settings
        self.clock = clock or Clock()
        self._clients = dict(clients or {})
        tables.bind(settings)
        self.agents = AgentStore(settings.due_shards)
        self.sessions = SessionStore(settings.pending_shards, settings.session_retention_days)
        self.control = ControlStore()
        self.runs = RunStore(settings.pending_shards, settings.session_retention_days)
        self.tick_writer = TickWriter(settings.pending_shards, settings.session_retention_days)
        self.connections = ConnectionStore()

    @functools.cached_property
    def jwt_secret(self) -> str:
        """The HS256 secret: from settings, or (in AWS) read once from Secrets Manager, on
        first use, so the tick and the worker never need it."""
        if self.settings.jwt_secret:
            return self.settings.jwt_secret
        from chalicelib.adapters.errors import aws_call
        from chalicelib.errors import ConfigError

        if not self.settings.jwt_secret_arn:
            raise ConfigError("SCHEDULER_JWT_SECRET (or SCHEDULER_JWT_SECRET_ARN) is required")
        with aws_call("read JWT secret"):
            return self.client("secretsmanager").get_secret_value(SecretId=self.settings.jwt_secret_arn)["SecretString"]

    @functools.cached_property
    def agent_policy(self):
        """What tenants' agents may reach (http targets, lambda functions)."""
        from chalicelib.agents.policy import AgentPolicy

        return AgentPolicy.from_settings(self.settings)

    @functools.cached_property
    def agent_signer(self):
        """``sign(agent, msg_id, body) -> headers``: Standard Webhooks headers signed with the
        agent's active secrets (decrypted: the worker's right only). None without a signing key:
        an async agent's cancel notice is then not sent (logged and counted)."""
        if not self.settings.signing_key_id:
            return None
        from chalicelib.agents.signing import active_ciphertexts, signature_headers

        keys, clock = self.signing_keys, self.clock

        def sign(agent, msg_id: str, body: bytes) -> dict[str, str]:
            now = clock.now()
            secrets = [keys.decrypt(ct, agent.tenant_id, agent.agent_id)
                       for ct in active_ciphertexts(agent.signing_keys, now.timestamp())]
            return signature_headers(msg_id, body, secrets, now)

        return sign

    @functools.cached_property
    def cancel_notifier(self):
        """Tells async agents their run was cancelled (best effort, signed by ``agent_signer``)."""
        from chalicelib.agents.net import GuardedHttp
        from chalicelib.services.async_runs import CancelNotifier

        return CancelNotifier(GuardedHttp(self.agent_policy.net), lambda: self.agent_signer)

    @functools.cached_property
    def callbacks(self):
        from chalicelib.services.callbacks import CallbackService

        return CallbackService(self)

    def kind_deps(self, kind: str):
        """What an agent kind gets to run: the policy, for ``lambda`` an invoker, for
        ``webhook`` the signing secrets' store and the synchronous wait."""
        from chalicelib.adapters.lambda_invoke import LambdaInvoker
        from chalicelib.agents.base import KindDeps

        invoker = LambdaInvoker(self.client("lambda")) if kind == "lambda" else None
        signing_keys = self.signing_keys if kind == "webhook" else None
        return KindDeps(policy=self.agent_policy, lambda_invoker=invoker, signing_keys=signing_keys,
                        sync_wait_seconds=self.settings.sync_wait_seconds)

    @functools.cached_property
    def signing_keys(self):
        """Webhook agents' signing secrets, encrypted with the KMS key ``SCHEDULER_SIGNING_KEY_ID``."""
        from chalicelib.adapters.signing_keys import SigningKeys

        return SigningKeys(self.client("kms"), self.settings.signing_key_id)

    def client(self, service: str) -> Any:
        if service == "lambda" and service not in self._clients:
            from chalicelib.adapters import lambda_invoke

            # agent invocations: no SDK retries (one invocation per attempt), long read timeout
            self._clients[service] = lambda_invoke.build_client(
                region=self.settings.region, endpoint_url=self.settings.aws_endpoint_url, session=aws.session()
            )
        if service not in self._clients:
            endpoint = self.settings.aws_endpoint_url
            extra = {}
            if service == "apigatewaymanagementapi":
                endpoint = self.settings.ws_endpoint or None
                extra = {"read_timeout": 3, "connect_timeout": 2, "max_attempts": 1}
            self._clients[service] = aws.client(service, region=self.settings.region, endpoint_url=endpoint, **extra)
        return self._clients[service]

    @functools.cached_property
    def work_queue(self) -> WorkQueue:
        return WorkQueue(self.client("sqs"), self.settings.work_queue_url)

    @functools.cached_property
    def dlq(self) -> WorkQueue:
        return WorkQueue(self.client("sqs"), self.settings.dlq_url)

    @functools.cached_property
    def alerts(self) -> AlertTopic:
        return AlertTopic(self.client("sns"), self.settings.alert_topic_arn)

    @functools.cached_property
    def pusher(self) -> ConnectionPusher:
        return ConnectionPusher(self.client("apigatewaymanagementapi"))

    @functools.cached_property
    def event_store(self):
        from chalicelib.adapters.events_store import EventStore

        return EventStore(self.settings.event_retention_hours)

    @functools.cached_property
    def events(self):
        from chalicelib.services.events import EventPublisher

        return EventPublisher(self)

    @functools.cached_property
    def dispatcher(self):
        from chalicelib.services.dispatch import Dispatcher

        return Dispatcher(self)

    @functools.cached_property
    def pools(self):
        from chalicelib.adapters.pools import PoolStore

        return PoolStore()

    @functools.cached_property
    def flow(self):
        from chalicelib.services.flow import FlowControl

        return FlowControl(self)

    @functools.cached_property
    def pool_service(self):
        from chalicelib.services.pools import PoolService

        return PoolService(self)

    @functools.cached_property
    def worker(self):
        from chalicelib.services.worker import Worker

        return Worker(self)

    @functools.cached_property
    def agent_service(self):
        from chalicelib.services.agents import AgentService

        return AgentService(self)

    @functools.cached_property
    def history(self):
        from chalicelib.adapters.history import HistoryStore

        return HistoryStore(self.settings)

    @functools.cached_property
    def schedule_service(self):
        from chalicelib.services.schedules import ScheduleService

        return ScheduleService(self)

    @functools.cached_property
    def idempotency(self):
        """Creating requests with an ``Idempotency-Key``: their records and sealed answers."""
        from chalicelib.adapters.idempotency import IdempotencyStore, Sealer

        return IdempotencyStore(self.client("dynamodb"), self.settings.control_table, Sealer.from_secret(self.jwt_secret))
