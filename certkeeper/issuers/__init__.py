"""Issuers turn an :class:`~certkeeper.model.IssueRequest` into a chain.

They know nothing of renewal, storage or binding. Optional abilities are separate protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self, cast, runtime_checkable

from certkeeper.hostnames import NamePolicy
from certkeeper.model import IssueRequest, IssueResult, RenewalWindow
from certkeeper.plugins import PluginContext, load_plugin


@runtime_checkable
class Issuer(Protocol):
    """Turns an IssueRequest into a chain; raises IssuanceError (or a subclass)."""

    name: str
    #: which names its CA can sign: PUBLIC (no internal or special-use names) or PRIVATE; the
    #: service normalises every requested name with it before anything is stored or ordered
    name_policy: NamePolicy

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


@runtime_checkable
class SupportsAccounts(Protocol):
    """An issuer with a CA account an operator manages (ACME: register, show, deactivate)."""

    def register(self) -> dict[str, Any]:
        """Register the account now (idempotent) and describe it."""
        ...

    def show(self) -> dict[str, Any]:
        """The account as the CA sees it (never the key)."""
        ...

    def deactivate(self) -> dict[str, Any]:
        """Deactivate the account at the CA (irreversible) and forget its key."""
        ...


#: the built-in issuers: config ``type`` -> "module:Class"
ISSUERS: Mapping[str, str] = {
    "internal-ca": "certkeeper.issuers.internal_ca:InternalCA",
    "acme": "certkeeper.issuers.acme.issuer:AcmeIssuer",
    "adcs": "certkeeper.issuers.adcs:AdcsIssuer",
}


def load_issuer(kind: str) -> type[Issuer]:
    """The issuer class for a config ``type``; ConfigError names the known types."""
    return cast("type[Issuer]", load_plugin(ISSUERS, kind, "issuer"))
