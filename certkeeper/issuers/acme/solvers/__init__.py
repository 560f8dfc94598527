"""Challenge solvers, lego style: ``present`` publishes, ``cleanup`` removes.

Each solver answers one challenge type. The issuer calls ``present`` for every pending
authorization, answers the challenges, waits, and calls ``cleanup`` in ``finally``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Protocol, runtime_checkable


@runtime_checkable
class ChallengeSolver(Protocol):
    #: "http-01" or "dns-01"
    challenge_type: ClassVar[str]

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        """Publish the challenge response; return once the CA can see it. Raises IssuanceError."""
        ...

    def cleanup(self, domain: str, token: str, key_authorization: str) -> None:
        """Remove what ``present`` published (best effort; errors are logged by the caller)."""
        ...


@runtime_checkable
class SupportsChallengeSolvers(Protocol):
    """An issuer that answers challenges through solvers (``certkeeper dns test`` tries them)."""

    solvers: Mapping[str, ChallengeSolver]
