"""What an agent kind is, what it receives, and how it fails.

A *kind* is a small object with a ``name``, a ``validate_config`` that checks
and normalises its config (raising :class:`~chalicelib.errors.ValidationError`
naming ``config.<field>``), and a ``run`` that does the work with a
:class:`RunContext` and returns JSON-serialisable output or raises
:class:`AgentFailure`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from chalicelib.domain.model import ErrorCategory


class AgentFailure(Exception):
    """A run failed in a way the kind understands; ``category`` drives retries.

    ``retry_after`` is the number of seconds a server asked us to wait
    (``Retry-After``), or None.
    """

    def __init__(
        self, category: ErrorCategory, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.category = ErrorCategory(category)
        self.message = message
        if retry_after is not None:
            retry_after = max(0.0, float(retry_after))
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"AgentFailure({self.category.value}, {self.message!r}, "
            f"retry_after={self.retry_after!r})"
        )


class RunAccepted(Exception):
    """The agent accepted the run and will report its outcome by callback.

    Raised by a kind when the agent answered ``202`` (or a ``lambda`` result
    ``{"async": true}``): the attempt stays RUNNING and ends only by a callback,
    its deadline or its heartbeat timeout; no worker waits for it.
    """

    def __init__(self, message: str = "accepted") -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Reported:
    """What a kind returns when the agent reported more than its output.

    ``usage``: ``{inputTokens?, outputTokens?, costUsd?}`` as the agent reported it
    (checked by the kind), or None.
    """

    output: Any
    usage: dict | None = None


@runtime_checkable
class RunContext(Protocol):
    """What a kind receives while running; the worker implements it."""

    @property
    def agent_id(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    @property
    def attempt(self) -> int:  # 1-based
        ...

    @property
    def input(self) -> dict | None: ...

    def progress(self, percent: float, message: str = "") -> None: ...

    def cancelled(self) -> bool:
        """True once the run was cancelled OR its deadline passed."""
        ...

    def remaining_seconds(self) -> float:
        """Seconds left before the deadline."""
        ...

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds`` in slices; False early if cancelled/deadline,
        True if slept fully."""
        ...


@runtime_checkable
class AgentKind(Protocol):
    name: str

    def validate_config(self, config: dict) -> dict: ...

    def run(self, config: dict, ctx: RunContext, deps: "KindDeps") -> Any: ...


def tenant_of(ctx: Any) -> str | None:
    """The tenant a run belongs to: ``ctx.tenant_id``, else the tenant of ``ctx.session``."""
    tenant = getattr(ctx, "tenant_id", None)
    if tenant is None:
        tenant = getattr(getattr(ctx, "session", None), "tenant_id", None)
    return tenant if isinstance(tenant, str) and tenant else None


@dataclass(frozen=True)
class KindDeps:
    """Outside things a kind may use, handed in by the worker.

    ``policy``: what agents may reach (:class:`~chalicelib.agents.policy.AgentPolicy`);
    None reads it from the environment, as the process's settings do.
    ``lambda_invoker``: invokes a Lambda function (``invoke(function_name, payload)``,
    see :mod:`chalicelib.adapters.lambda_invoke`); without one, ``lambda_client`` (a
    boto3 Lambda client) is wrapped into one.
    ``http``: a :class:`~chalicelib.agents.net.GuardedHttp`; None builds one from
    ``policy`` and ``resolver`` (None: the system's resolver).
    ``signing_keys``: decrypts webhook agents' signing secrets
    (:class:`~chalicelib.adapters.signing_keys.SigningKeys`); only the worker has one.
    ``sync_wait_seconds``: the longest wait for a synchronous answer
    (``SCHEDULER_SYNC_WAIT_SECONDS``); None: the largest allowed.
    """

    policy: Any = None
    lambda_invoker: Any = None
    lambda_client: Any = None
    http: Any = None
    resolver: Any = None
    signing_keys: Any = None
    sync_wait_seconds: float | None = None

    def agent_policy(self):
        from chalicelib.agents.policy import AgentPolicy

        return self.policy if self.policy is not None else AgentPolicy.from_env()

    def invoker(self):
        if self.lambda_invoker is not None:
            return self.lambda_invoker
        if self.lambda_client is not None:
            from chalicelib.adapters.lambda_invoke import LambdaInvoker

            return LambdaInvoker(self.lambda_client)
        return None
