"""Issuers turn an :class:`~certkeeper.model.IssueRequest` into a chain.

They know nothing of renewal, storage or binding. Optional abilities are separate protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self, runtime_checkable

from certkeeper.hostnames import NamePolicy
from certkeeper.model import IssueRequest, IssueResult, RenewalWindow
from certkeeper.plugins import PluginContext


@runtime_checkable
class Issuer(Protocol):
    """Turns an IssueRequest into a chain; raises IssuanceError (or a subclass)."""

    name: str
    #: which names its CA can sign: PUBLIC (no internal or special-use names) or PRIVATE; the
    #: service normalises every requested name with it before anything is stored or ordered
    name_policy: NamePolicy
    #: transitional: ``name_policy is NamePolicy.PRIVATE``, read by service.py until it passes
    #: ``policy=issuer.name_policy`` to hostnames.normalize_names; then remove it
    allows_internal_names: bool

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self: ...

    def issue(self, request: IssueRequest) -> IssueResult: ...

    def trust_anchors_pem(self) -> bytes:
        """Roots a client must trust to verify what this issuer signs (may be empty if unknown)."""
        ...


@runtime_checkable
class SupportsRenewalInfo(Protocol):
    """ACME Renewal Information (RFC 9773)."""

    def renewal_info(self, cert_pem: bytes, issuer_pem: bytes) -> RenewalWindow | None: ...


@runtime_checkable
class SupportsRevoke(Protocol):
    def revoke(self, cert_pem: bytes, key_pem: bytes | None, reason: int) -> None: ...
