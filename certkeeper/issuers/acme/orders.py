"""What an ``acme`` issuer does on the network: account, orders, authorizations, ARI, revocation.

:class:`~certkeeper.issuers.acme.issuer.AcmeIssuer` builds one :class:`Orders` the first time it
talks to its CA, so the ``acme``, ``josepy`` and ``requests`` imports (about 0.15 s and 12 MB) are
paid by commands that order or revoke certificates, never by ``list``, ``status`` or a config
sync. One issuance: account (registered on first use) -> one order for all names (or the order
saved in the request's checkpoint) -> every pending authorization solved at once -> finalize with
our CSR -> download the chain (the preferred one, if asked). See the README section "ACME".
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import requests
from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA, JWKOct

from certkeeper.errors import CertkeeperError, ConfigError, IssuanceError, IssuanceRejected, IssuedCertificateInvalid
from certkeeper.model import IssueRequest, IssueResult, RenewalWindow

from . import ari
from .account import AccountRecord, AccountStore, new_record
from .client import Deadline, Directory, Network, Order, Session, shared_http
from .problems import PERMANENT, PERMANENT_WITH_UNAUTHORIZED, PROTOCOL_ERRORS, problem_code, translate
from .solvers import ChallengeSolver

if TYPE_CHECKING:
    from collections.abc import Mapping

    from certkeeper.plugins import PluginContext

    from .options import AcmeOptions

log = logging.getLogger(__name__)

PENDING_ORDER = ("pending",)
PROCESSING_ORDER = ("processing",)


class _AccountGone(Exception):
    """The CA no longer knows our account (a test CA restarted, or it was deactivated)."""


def _status(resource: Any) -> str:
    status = resource.status
    if status is None:
        return ""
    return str(getattr(status, "name", status))


def _split_chain(pem: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise IssuedCertificateInvalid("the CA returned a certificate chain that is not PEM") from exc
    return certs


def _common_names(name: x509.Name) -> list[str]:
    return [str(attribute.value) for attribute in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def pick_chain(chains: list[list[x509.Certificate]], preferred: str | None) -> list[x509.Certificate]:
    """certbot's rule: the first chain whose topmost certificate is issued by ``preferred`` (CN),
    else the first chain naming it anywhere, else the default (first) chain."""
    if preferred:
        for chain in chains:
            if preferred in _common_names(chain[-1].issuer):
                return chain
        for chain in chains:
            named = [cn for cert in chain[1:]
                     for cn in _common_names(cert.issuer) + _common_names(cert.subject)]
            if preferred in named:
                return chain
    return chains[0]


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def _spki(key: Any) -> bytes:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bytes(der)


class Orders:
    """The network side of one :class:`AcmeIssuer`. Thread-safe: several ``issue`` calls may run
    at once (each has its own :class:`~certkeeper.issuers.acme.client.Network`)."""

    def __init__(self, name: str, options: AcmeOptions, context: PluginContext,
                 solvers: Mapping[str, ChallengeSolver], network: type[Network] | None = None) -> None:
        self.name = name
        self.options = options
        self.context = context
        self.solvers = solvers
        #: the HTTP seam: a Network subclass can record or break requests (tests, diagnostics)
        self.network: type[Network] = network or Network
        #: one connection pool for every issuance of this issuer (see client.shared_http)
        self._http = shared_http()
        #: replay nonces collected from the CA's responses, for the next request of any issuance
        self._nonces: set[str] = set()
        self._directory = Directory(self.options.directory)
        self._accounts = AccountStore(self.context.state, self.options.directory, self.options.contact)
        self._account_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------

    def _network(self, deadline: Deadline, key: JWK | None = None, alg: JWASignature = ES256,
                 account_url: str | None = None) -> Network:
        verify: bool | str = str(self.options.ca_bundle) if self.options.ca_bundle else True
        return self.network(key or JWKOct(key=b"unused"), alg=alg, verify=verify,
                            timeout=self.options.timeout, deadline=deadline, account_url=account_url,
                            server_clock=self._directory.server_clock, http=self._http, nonces=self._nonces)

    def _session(self, deadline: Deadline, record: AccountRecord | None = None) -> Session:
        if record is None:
            net = self._network(deadline)
        else:
            net = self._network(deadline, record.key, record.algorithm, record.url)
        return Session(self._directory.get(net), net, deadline)

    def _deadline(self, seconds: float | None = None) -> Deadline:
        return Deadline(seconds or self.options.deadline, self.context.clock)

    def _eab_hmac_key(self) -> str:
        if self.options.eab_hmac_key:
            return self.context.resolve_secret(self.options.eab_hmac_key).strip()
        assert self.options.eab_hmac_key_file is not None
        try:
            return self.options.eab_hmac_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"issuers.{self.name}.eab_hmac_key_file: cannot read "
                              f"{self.options.eab_hmac_key_file}: {exc.strerror}") from None

    # -- account ----------------------------------------------------------------------------

    def _ensure_account(self, deadline: Deadline, *, forget_url: bool = False) -> AccountRecord:
        with self._account_lock:
            record = self._accounts.load()
            if record is not None and forget_url:
                record = record.with_url(None)
            if record is not None and record.url:
                return record
            if not self.options.agree_tos:
                raise ConfigError(f"issuers.{self.name}.agree_tos must be true to register an ACME account "
                                  f"at {self.options.directory} (read the CA's terms of service first)")
            if record is None:
                record = new_record(self.options.directory, self.options.contact, self.options.account_key)
                self._accounts.save(record)  # before newAccount: a crash cannot orphan an account
            session = self._session(deadline, record.with_url(None))
            eab = None
            try:
                if self.options.eab_kid:
                    eab = messages.ExternalAccountBinding.from_data(
                        account_public_key=record.key.public_key(), kid=self.options.eab_kid,
                        hmac_key=self._eab_hmac_key(), directory=session.directory)
                elif session.directory.meta.external_account_required:
                    raise ConfigError(f"issuers.{self.name}: {self.options.directory} requires External "
                                      "Account Binding: set eab_kid and eab_hmac_key_file (or eab_hmac_key)")
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"issuers.{self.name}: the EAB HMAC key is not valid base64url") from exc
            registration = messages.NewRegistration.from_data(
                contact=self.options.contact, terms_of_service_agreed=True, external_account_binding=eab)
            try:
                response = session.post(session.directory["newAccount"], registration)
            except PROTOCOL_ERRORS as exc:
                # with EAB, "unauthorized" means the EAB key is wrong: only the operator can fix it
                raise translate(exc, what="ACME account registration",
                                permanent=PERMANENT_WITH_UNAUTHORIZED if eab is not None else PERMANENT) from exc
            url = response.headers.get("Location")
            if not url:
                raise IssuanceError("the ACME server registered the account without a Location")
            record = record.with_url(url)
            self._accounts.save(record)
            log.info("ACME account %s registered at %s", url, self.options.directory)
            return record

    def register(self) -> dict[str, Any]:
        """Register the account now (idempotent) and describe it."""
        self._ensure_account(self._deadline(self.options.timeout * 4))
        return self.show()

    def show(self) -> dict[str, Any]:
        """URL, status, contact and directory of the account (never the key)."""
        record = self._accounts.load()
        info: dict[str, Any] = {"issuer": self.name, "directory": self.options.directory,
                                "contact": list(self.options.contact), "url": None, "status": "unregistered"}
        if record is None or not record.url:
            return info
        info.update(url=record.url, key_algorithm=record.alg)
        session = self._session(self._deadline(self.options.timeout * 2), record)
        try:
            body = messages.Registration.from_json(session.post_as_get(record.url).json())
        except messages.Error as exc:
            if problem_code(exc) in ("accountDoesNotExist", "unauthorized"):
                info["status"] = f"unknown to the CA ({problem_code(exc)})"
                return info
            raise translate(exc, what="ACME account lookup") from exc
        except PROTOCOL_ERRORS as exc:
            raise translate(exc, what="ACME account lookup") from exc
        info.update(status=_status(body) or "valid", contact=list(body.contact))
        return info

    def deactivate(self) -> dict[str, Any]:
        """Deactivate the account at the CA (irreversible) and forget its key."""
        record = self._accounts.load()
        if record is None or not record.url:
            raise IssuanceRejected(f"issuer {self.name} has no registered ACME account to deactivate")
        session = self._session(self._deadline(self.options.timeout * 2), record)
        try:
            update = messages.UpdateRegistration(status=messages.STATUS_DEACTIVATED)
            response = session.post(record.url, update)
            body = messages.Registration.from_json(response.json())
        except PROTOCOL_ERRORS as exc:
            raise translate(exc, what="ACME account deactivation") from exc
        self._accounts.delete()
        log.info("ACME account %s deactivated", record.url)
        return {"issuer": self.name, "directory": self.options.directory, "url": record.url,
                "status": _status(body) or "deactivated", "contact": list(self.options.contact)}

    # -- issuance ---------------------------------------------------------------------------

    def issue(self, request: IssueRequest) -> IssueResult:
        deadline = self._deadline()
        request.progress("account")
        record = self._ensure_account(deadline)
        try:
            return self._issue(request, deadline, record)
        except _AccountGone:
            log.warning("ACME account %s is unknown to the CA; registering again", record.url)
            record = self._ensure_account(deadline, forget_url=True)
            return self._issue(request, deadline, record)

    def _issue(self, request: IssueRequest, deadline: Deadline, record: AccountRecord) -> IssueResult:
        try:
            session = self._session(deadline, record)
            resumed = self._resume(session, request)
            replaces = None
            if resumed is None:
                request.progress("order")
                replaces = self._replaces(session, request)
                order_url, order = self._new_order(session, request, replaces)
                request.save_checkpoint({"order_url": order_url, "directory": self.options.directory,
                                         "account_url": record.url})
            else:
                order_url, order = resumed
            if _status(order) == "pending":
                self._authorize(session, record, order, request)
                order = session.poll(order_url, Order.from_json, _status, PENDING_ORDER, "order")
            finalized: requests.Response | None = None
            if _status(order) == "ready":
                request.progress("finalize")
                csr = x509.load_pem_x509_csr(request.csr_pem)
                order, finalized = session.finalize(order, csr.public_bytes(serialization.Encoding.DER))
            if _status(order) in PROCESSING_ORDER:
                order = session.poll(order_url, Order.from_json, _status, PROCESSING_ORDER, "finalization",
                                     after=finalized)
            if _status(order) != "valid" or not order.certificate:
                if order.error is not None:
                    raise translate(order.error, what=f"order {order_url}")
                raise IssuanceError(f"order {order_url} is {_status(order)}, not valid")
            request.progress("download")
            certs = self._download(session, order.certificate)
        except messages.Error as exc:
            if problem_code(exc) == "accountDoesNotExist":
                raise _AccountGone() from exc
            raise translate(exc, what="ACME", retry_after=getattr(exc, "retry_after_at", None)) from exc
        except IssuanceError:
            raise
        except PROTOCOL_ERRORS as exc:
            raise translate(exc, what="ACME") from exc
        csr_key = x509.load_pem_x509_csr(request.csr_pem).public_key()
        if _spki(certs[0].public_key()) != _spki(csr_key):
            raise IssuedCertificateInvalid(f"order {order_url}: the certificate's key is not the CSR's key")
        details: dict[str, Any] = {"order_url": order_url, "account_url": record.url,
                                   "directory": self.options.directory}
        try:
            details["ari_cert_id"] = ari.cert_id(certs[0])
        except ValueError:
            pass
        if replaces:
            details["replaces"] = replaces
        return IssueResult(cert_pem=_pem(certs[:1]), chain_pem=_pem(certs[1:]), details=details)

    def _resume(self, session: Session, request: IssueRequest) -> tuple[str, Order] | None:
        checkpoint = request.checkpoint or {}
        url = checkpoint.get("order_url")
        directory = checkpoint.get("directory", self.options.directory)
        if not isinstance(url, str) or directory != self.options.directory:
            return None
        try:
            order, _ = session.fetch(url, Order.from_json)
        except messages.Error as exc:
            log.info("saved order %s cannot be resumed (%s); placing a new one", url, problem_code(exc))
            return None
        except acme_errors.ClientError:
            response = session.net.last_response
            if response is None or response.status_code not in (404, 410):
                raise
            log.info("saved order %s is gone (HTTP %d); placing a new one", url, response.status_code)
            return None
        status = _status(order)
        expired = order.expires is not None and order.expires <= self.context.clock.now()
        names = {identifier.value.lower() for identifier in order.identifiers or ()}
        if status == "invalid" or expired or names != {name.lower() for name in request.names}:
            log.info("saved order %s is %s; placing a new one", url, "expired" if expired else status)
            return None
        request.progress(f"order (resuming {status} order)")
        return url, order

    def _replaces(self, session: Session, request: IssueRequest) -> str | None:
        if not request.replaces_cert_pem or session.url("renewalInfo") is None:
            return None
        try:
            return ari.cert_id_from_pem(request.replaces_cert_pem)
        except ValueError:
            return None

    def _profile(self, session: Session) -> str | None:
        profile = self.options.profile
        if not profile:
            return None
        offered = getattr(session.directory.meta, "profiles", None) or {}
        if not offered:
            log.warning("issuer %s: profile %r ignored: %s advertises no profiles", self.name, profile,
                        self.options.directory)
            return None
        if profile not in offered:
            raise IssuanceRejected(f"issuers.{self.name}.profile: {profile!r} is not offered by the CA "
                                   f"(offered: {', '.join(sorted(offered))})")
        return profile

    def _new_order(self, session: Session, request: IssueRequest, replaces: str | None) -> tuple[str, Order]:
        profile = self._profile(session)
        try:
            return session.new_order(request.names, profile=profile, replaces=replaces)
        except messages.Error as exc:
            if not replaces or problem_code(exc) not in ("alreadyReplaced", "malformed", "conflict"):
                raise
            log.warning("the CA refused replaces=%s (%s); ordering without it", replaces, problem_code(exc))
            return session.new_order(request.names, profile=profile, replaces=None)

    def _authorize(self, session: Session, record: AccountRecord, order: Order,
                   request: IssueRequest) -> None:
        """Solve every authorization of ``order`` that is not valid yet, then wait for the CA.

        A challenge is answered once (RFC 8555 §7.5.1). One that is already ``processing`` (or
        ``valid``) was answered by an earlier run that was killed while the CA validated: its
        token is served again and the authorization polled, but it is not answered again (the CA
        would refuse the second answer as ``malformed``).
        """
        todo: list[tuple[str, str, messages.ChallengeBody, ChallengeSolver | None, bool]] = []
        for url in order.authorizations:
            authorization, _ = session.fetch(url, messages.Authorization.from_json)
            name = str(authorization.identifier.value)
            if authorization.wildcard:
                name = "*." + name
            status = _status(authorization)
            if status == "valid":
                request.progress(f"authorization {name}: already valid")
                continue
            if status != "pending":
                # invalid / expired / deactivated: this order cannot succeed any more; a retry
                # finds it invalid and places a new one (Boulder does not retry challenges)
                raise IssuanceError(f"the authorization for {name} is {status}", name=name)
            answered = next((c for c in authorization.challenges if _status(c) in ("processing", "valid")), None)
            if answered is not None:
                kind = answered.chall.typ
                solver = self.solvers.get(kind)  # None: nothing to serve any more, only wait
                request.progress(f"authorization {name} ({kind}): already answered, the CA is validating")
                todo.append((url, name, answered, solver, False))
                continue
            kind = self.options.challenge_for(name)
            challenge = next((c for c in authorization.challenges if c.chall.typ == kind), None)
            if challenge is None:
                offered = ", ".join(c.chall.typ for c in authorization.challenges)
                raise IssuanceRejected(f"the CA offers no {kind} challenge for {name} (offers: {offered})",
                                       name=name)
            solver = self.solvers.get(kind)
            if solver is None:
                raise ConfigError(f"issuers.{self.name}: no {kind} solver configured (needed for {name})")
            request.progress(f"authorization {name} ({kind})")
            todo.append((url, name, challenge, solver, True))
        presented: list[tuple[str, str, str, ChallengeSolver]] = []
        try:
            for _url, name, challenge, solver, _answer in todo:
                if solver is None:
                    continue
                token = str(challenge.chall.encode("token"))
                key_authorization = str(challenge.chall.key_authorization(record.key))
                presented.append((name, token, key_authorization, solver))
                try:
                    solver.present(name, token, key_authorization)
                except IssuanceError as exc:
                    exc.name = exc.name or name
                    raise
            for _url, _name, challenge, _solver, answer in todo:
                if answer:
                    session.post(challenge.uri, challenge.chall.response(record.key))
            if todo:
                request.progress("validation")
            for url, name, _challenge, _solver, _answer in todo:
                authorization = session.poll(url, messages.Authorization.from_json, _status, ("pending",),
                                             f"validation of {name}")
                if _status(authorization) != "valid":
                    raise self._validation_error(name, authorization)
        finally:
            for name, token, key_authorization, solver in presented:
                try:
                    solver.cleanup(name, token, key_authorization)
                except CertkeeperError as exc:  # a translated failure says it all in one line
                    log.warning("cleanup of the %s challenge for %s failed: %s", solver.challenge_type, name, exc)
                except Exception:  # never hide the real outcome behind a cleanup failure
                    log.warning("cleanup of the %s challenge for %s failed", solver.challenge_type, name,
                                exc_info=True)

    @staticmethod
    def _validation_error(name: str, authorization: messages.Authorization) -> IssuanceError:
        for challenge in authorization.challenges:
            if challenge.error is not None:
                return translate(challenge.error, what=f"validation of {name}", name=name)
        # no problem document: nothing says retrying cannot help, and a new order starts afresh
        return IssuanceError(f"validation of {name} failed: authorization is {_status(authorization)}",
                             name=name)

    def _download(self, session: Session, url: str) -> list[x509.Certificate]:
        pem, alternates = session.download(url)
        chains = [_split_chain(pem)]
        if self.options.preferred_chain:
            for alternate in alternates:
                chains.append(_split_chain(session.download(alternate)[0]))
        chain = pick_chain(chains, self.options.preferred_chain)
        if not chain:
            raise IssuedCertificateInvalid(f"the CA returned an empty certificate chain at {url}")
        return chain

    # -- ARI, revocation, trust -------------------------------------------------------------

    def renewal_info(self, cert_pem: bytes, issuer_pem: bytes) -> RenewalWindow | None:
        """The CA's suggested renewal window (RFC 9773), or None when the CA has no ARI, the
        certificate has expired (§4.3: never ask then), or the answer is unusable."""
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            cert_id = ari.cert_id(cert)
        except ValueError as exc:
            log.warning("ARI: cannot identify the certificate: %s", exc)
            return None
        now = self.context.clock.now()
        if cert.not_valid_after_utc <= now:
            return None
        try:
            session = self._session(self._deadline(self.options.timeout * 2))
            base = session.url("renewalInfo")
            if base is None:
                return None
            response = session.net.get(f"{base.rstrip('/')}/{cert_id}")
        except Exception as exc:  # noqa: BLE001 (ARI never blocks renewal: log and carry on)
            log.warning("ARI: fetching renewalInfo for %s failed: %s", cert_id, translate(exc, what="ARI"))
            return None
        wait = session.net.retry_after(response)
        retry_at = now + (timedelta(seconds=wait) if wait is not None else ari.DEFAULT_RETRY)
        try:
            window = ari.parse_window(response.json(), retry_at)
        except ValueError as exc:
            log.warning("ARI: unusable renewalInfo for %s: %s", cert_id, exc)
            return None
        if window.explanation_url:
            log.info("ARI: %s explains its window for %s at %s", self.options.directory, cert_id,
                     window.explanation_url)
        return window

    def revoke(self, cert_pem: bytes, key_pem: bytes | None, reason: int) -> None:
        """Revoke with our account; if the CA says the account may not, sign with the
        certificate's own key (RFC 8555 §7.6) when we have it."""
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise IssuanceRejected("revocation: the certificate is not PEM") from exc
        deadline = self._deadline(self.options.timeout * 4)
        payload = messages.Revocation(certificate=cert, reason=reason)
        try:
            try:
                session = self._session(deadline, self._ensure_account(deadline))
                session.post(session.directory["revokeCert"], payload)
            except messages.Error as exc:
                if problem_code(exc) != "unauthorized" or key_pem is None:
                    raise
                key = serialization.load_pem_private_key(key_pem, password=None)
                if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
                    raise
                jwk: JWK = JWKRSA(key=key) if isinstance(key, rsa.RSAPrivateKey) else JWKEC(key=key)
                alg = RS256 if isinstance(key, rsa.RSAPrivateKey) else {
                    256: ES256, 384: ES384, 521: ES512}[key.curve.key_size]
                net = self._network(deadline, jwk, alg)
                own = Session(self._directory.get(net), net, deadline)
                own.post(own.directory["revokeCert"], payload)
        except messages.Error as exc:
            if problem_code(exc) == "alreadyRevoked":
                log.info("certificate %x was already revoked", cert.serial_number)
                return
            raise translate(exc, what="revocation", permanent=PERMANENT_WITH_UNAUTHORIZED) from exc
        except (requests.RequestException, OSError) as exc:
            raise translate(exc, what="revocation") from exc
