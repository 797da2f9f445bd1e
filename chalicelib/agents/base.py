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


@dataclass(frozen=True)
class KindDeps:
    """Outside things a kind may use, handed in by the worker.

    ``lambda_client``: a boto3 Lambda client (required by the ``lambda`` kind).
    ``http``: a ``urllib3.PoolManager``; None means the ``http`` kind uses its
    own lazily created, module-level one.
    """

    lambda_client: Any = None
    http: Any = None
