"""The ``acme`` issuer: RFC 8555 orders against any ACME CA, with ARI (RFC 9773) and revocation.

This module is what the config needs: the options, the name policy, the challenge solvers. The
protocol work is :class:`~certkeeper.issuers.acme.orders.Orders`, imported the first time the
issuer talks to its CA: building an issuer to check a config or normalise names (``list``,
``status``, the daemon's config sync) imports no ``acme``, ``josepy`` or ``requests``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

from certkeeper.config import validate_options
from certkeeper.errors import ConfigError
from certkeeper.hostnames import NamePolicy
from certkeeper.model import IssueRequest, IssueResult, RenewalWindow
from certkeeper.plugins import PluginContext

from .options import AcmeOptions
from .solvers import ChallengeSolver
from .solvers.build import build_solvers

if TYPE_CHECKING:
    from .client import Network
    from .orders import Orders


class AcmeIssuer:
    """Issues from an RFC 8555 CA. Thread-safe: several ``issue`` calls may run at once."""

    def __init__(self, name: str, options: AcmeOptions, context: PluginContext,
                 solvers: Mapping[str, ChallengeSolver] | None = None,
                 network: type[Network] | None = None) -> None:
        self.name = name
        self.options = options
        #: the HTTP seam: a Network subclass can record or break requests (tests, diagnostics);
        #: None is :class:`certkeeper.issuers.acme.client.Network`
        self.network = network
        #: PUBLIC for a public CA (Let's Encrypt ...), PRIVATE for step-ca, Pebble or
        #: ``public_names_only = false`` (see options.directory_is_public)
        self.name_policy = NamePolicy.PUBLIC if options.is_public else NamePolicy.PRIVATE
        self.context = context
        self.solvers = dict(solvers) if solvers is not None else build_solvers(options, context,
                                                                                   f"issuers.{name}")
        self._orders: Orders | None = None
        self._orders_lock = threading.Lock()

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        parsed: AcmeOptions = validate_options(AcmeOptions, options, where=f"issuers.{name}")
        for key, path in (("ca_bundle", parsed.ca_bundle), ("eab_hmac_key_file", parsed.eab_hmac_key_file)):
            if path is not None and not path.is_file():
                raise ConfigError(f"issuers.{name}.{key}: {path} is not a readable file")
        webroot = parsed.http01.webroot if parsed.http01 is not None else None
        if webroot is not None and not webroot.is_dir():
            raise ConfigError(f"issuers.{name}.http01.webroot: {webroot} is not a folder")
        return cls(name, parsed, context)

    def _work(self) -> Orders:
        """The protocol side, built (and ``acme`` imported) on first use, then kept: it holds the
        directory, the account and the CA's clock, shared by every issuance."""
        with self._orders_lock:
            if self._orders is None:
                from .orders import Orders

                self._orders = Orders(self.name, self.options, self.context, self.solvers, self.network)
            return self._orders

    # -- account ----------------------------------------------------------------------------

    def register(self) -> dict[str, Any]:
        """Register the account now (idempotent) and describe it."""
        return self._work().register()

    def show(self) -> dict[str, Any]:
        """URL, status, contact and directory of the account (never the key)."""
        return self._work().show()

    def deactivate(self) -> dict[str, Any]:
        """Deactivate the account at the CA (irreversible) and forget its key."""
        return self._work().deactivate()

    # -- issuance, ARI, revocation ----------------------------------------------------------

    def issue(self, request: IssueRequest) -> IssueResult:
        return self._work().issue(request)

    def renewal_info(self, cert_pem: bytes, issuer_pem: bytes) -> RenewalWindow | None:
        """The CA's suggested renewal window (RFC 9773), or None when the CA has no ARI, the
        certificate has expired (§4.3: never ask then), or the answer is unusable."""
        return self._work().renewal_info(cert_pem, issuer_pem)

    def revoke(self, cert_pem: bytes, key_pem: bytes | None, reason: int) -> None:
        """Revoke with our account; if the CA says the account may not, sign with the
        certificate's own key (RFC 8555 §7.6) when we have it."""
        self._work().revoke(cert_pem, key_pem, reason)

    def trust_anchors_pem(self) -> bytes:
        """Unknown in general: a public ACME CA chains to the system's roots."""
        return b""
