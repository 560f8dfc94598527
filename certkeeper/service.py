"""The service: the only place that holds both the store and the plugins.

It turns decisions into actions: issue (with crash-safe resume), validate what the CA returned,
store it encrypted, deploy and verify, and record what happened. The CLI and the daemon both call
it, so ``certkeeper renew`` and the daemon make the same decisions.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from certkeeper import hostnames
from certkeeper.binders import Binder
from certkeeper.clock import Clock, SystemClock
from certkeeper.config import Config
from certkeeper.errors import (
    CertkeeperError,
    ConcurrencyError,
    ConfigError,
    InputError,
    IssuanceError,
    IssuancePending,
    IssuedCertificateInvalid,
    NotFound,
)
from certkeeper.issuers import Issuer, SupportsRenewalInfo
from certkeeper.model import Bundle, Event, EventKind, IssueRequest, IssueResult, KeyType, RevisionState
from certkeeper.notifiers import Notifier
from certkeeper.plugins import ISSUERS, PluginContext, load_class
from certkeeper.store.repository import Repository
from certkeeper.store.schema import DeploymentRow, RevisionRow

log = logging.getLogger(__name__)

#: how long one issuance may hold a certificate's row lease before another process may take over
ISSUE_LEASE_TTL = timedelta(minutes=15)
#: tolerated clock difference when checking an issued certificate's notBefore
CLOCK_SKEW = timedelta(minutes=10)


@dataclass(frozen=True)
class IssueOutcome:
    certificate_id: str
    revision: int
    names: tuple[str, ...]
    serial: str
    fingerprint: str
    not_before: datetime
    not_after: datetime
    renewal_time: datetime
    issuer: str
    renewed: bool


def default_node_name() -> str:
    return socket.gethostname().split(".")[0].lower() or "node"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (never probes on Windows, where os.kill kills)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_is_dead(holder: str) -> bool:
    """A lease holder ``host:pid[:node]`` that ran on this host and is gone (killed, crashed)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    return host == socket.gethostname() and pid_text.isdigit() and not pid_alive(int(pid_text))


CERTIFICATE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_certificate_id(cert_id: str) -> str:
    """Ids name rows, log lines and plugin state: letters, digits, '.', '_', '-' (at most 64)."""
    if not CERTIFICATE_ID.match(cert_id):
        raise InputError(
            f"certificate id {cert_id!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return cert_id


def certificate_id_for(names: tuple[str, ...]) -> str:
    """A readable default id: the first name (``*`` spelled ``wildcard``)."""
    first = names[0].replace("*", "wildcard")
    return first[:64]


@dataclass(frozen=True)
class Decision:
    certificate_id: str
    action: str  # "issue" | "wait" | "blocked"
    reason: str
    message: str
    renewal_time: datetime | None
    not_after: datetime | None


@dataclass
class ReconcileReport:
    decisions: list[Decision]
    issued: list[IssueOutcome]
    failed: dict[str, str]
    deployed: list[str]
    deploy_failed: dict[str, str]
    alerts_queued: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.deploy_failed


ALERT_EVENT_KINDS = {
    EventKind.ISSUED, EventKind.RENEWED, EventKind.RENEWAL_FAILED, EventKind.REJECTED,
    EventKind.PENDING_APPROVAL, EventKind.DEPLOY_FAILED, EventKind.VERIFY_MISMATCH, EventKind.EXPIRING,
    EventKind.RECOVERED,
}

ACTIONS = {
    EventKind.RENEWAL_FAILED: "certkeeper retries with backoff; check the CA's problem and `certkeeper status`.",
    EventKind.REJECTED: "The CA refused permanently: fix the cause, then `certkeeper renew ID --force`.",
    EventKind.PENDING_APPROVAL: "Approve the request on the CA; certkeeper picks the certificate up by itself.",
    EventKind.DEPLOY_FAILED: "The previous certificate is still served; check the binding and `certkeeper status`.",
    EventKind.VERIFY_MISMATCH: "The endpoint serves another certificate: run `certkeeper deploy ID` and check it.",
    EventKind.EXPIRING: "Renewal has not succeeded yet: check `certkeeper status` and the last failure.",
    EventKind.ISSUED: "Nothing to do.",
    EventKind.RENEWED: "Nothing to do; certkeeper deploys and verifies it.",
    EventKind.RECOVERED: "Nothing to do.",
}


def _binding_key(binding: Mapping[str, Any], index: int) -> str:
    return str(binding.get("name") or f"{binding.get('type', 'binding')}#{index}")


@dataclass(frozen=True)
class DeployResult:
    binding: str
    ok: bool
    message: str
    skipped: bool = False
    served_fingerprint: str | None = None


class Service:
    def __init__(
        self,
        config: Config,
        repository: Repository,
        *,
        clock: Clock | None = None,
        node: str | None = None,
    ) -> None:
        self.config = config
        self.repository = repository
        self.clock = clock or SystemClock()
        self.node = node or config.settings.daemon.node or ""
        # host:pid:node - lets a later process on the same host see that a holder has died
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{self.node}"
        #: the certificate row lease's TTL; the daemon sets its (shorter) lease TTL and extends the
        #: leases it holds with every heartbeat, so a node killed on another host blocks the others
        #: only that long (a dead holder on this host is seen at once, see holder_is_dead)
        self.issue_lease_ttl = ISSUE_LEASE_TTL
        self._issuing: set[str] = set()
        self._issuing_lock = threading.Lock()
        self._issuers: dict[str, Issuer] = {}

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        create: bool = True,
        migrate: bool = True,
        clock: Clock | None = None,
        node: str | None = None,
    ) -> Service:
        """Open the store named by ``config``: create the data dir and key if allowed, migrate."""
        from certkeeper.sealing import load_sealer
        from certkeeper.store import db

        if create and not config.settings.store.url:
            config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        sealer = load_sealer(config.secret_key_file, create=create)
        engine = db.make_engine(config.store_url)
        db.ensure_current(engine, auto_upgrade=migrate)
        clock = clock or SystemClock()
        repository = Repository(db.session_factory(engine), sealer, clock)
        return cls(config, repository, clock=clock, node=node)

    # -- plugins ----------------------------------------------------------------------------------

    def resolve_secret(self, reference: str) -> str:
        """``env:VAR``, ``file:PATH``, ``secret:NAME``; anything else is the literal value."""
        scheme, _, rest = reference.partition(":")
        if scheme == "env" and rest:
            value = os.environ.get(rest)
            if value is None:
                raise ConfigError(f"environment variable {rest} (a secret reference) is not set")
            return value
        if scheme == "file" and rest:
            try:
                return Path(rest).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {rest}: {exc.strerror}") from None
        if scheme == "secret" and rest:
            return self.repository.get_secret(rest)
        return reference

    def plugin_context(self, namespace: str) -> PluginContext:
        return PluginContext(
            clock=self.clock,
            state=self.repository.state_store(namespace),
            data_dir=self.config.data_dir,
            resolve_secret=self.resolve_secret,
        )

    def issuer(self, name: str) -> Issuer:
        if name not in self._issuers:
            kind, options = self.config.issuer_table(name)
            cls = load_class(ISSUERS, kind, "issuer")
            self._issuers[name] = cls.from_options(name, options, self.plugin_context(f"issuer:{name}"))
        return self._issuers[name]

    # -- specs ----------------------------------------------------------------------------------

    def sync_config(self) -> list[str]:
        """Put every ``[[certificates]]`` of the config under management (or update its spec)."""
        from certkeeper.errors import InvalidName, InvalidNames

        ids = []
        for index, cert in enumerate(self.config.settings.certificates):
            try:
                names = self._plan_names(cert.names, cert.issuer)
            except InvalidName as exc:
                errors = exc.errors if isinstance(exc, InvalidNames) else (exc,)
                parts = []
                for error in errors:
                    where = f"certificates[{index}].names"
                    if error.name in cert.names:
                        where += f"[{cert.names.index(error.name)}]"
                    parts.append(f"{where}: {error}")
                raise ConfigError("; ".join(parts)) from exc
            renew_before = int(cert.renew_before_days * 86400) if cert.renew_before_days else None
            bindings = [binding.model_dump(exclude_none=True) for binding in cert.bindings]
            self.repository.upsert_certificate(
                cert.id, names=names, issuer=cert.issuer, key_type=cert.key_type.value, source="config",
                renew_before_seconds=renew_before, bindings=bindings,
            )
            ids.append(cert.id)
        return ids

    def _plan_names(self, raw: tuple[str, ...] | list[str], issuer_name: str) -> tuple[str, ...]:
        issuer = self.issuer(issuer_name)
        return hostnames.normalize_names(raw, allow_internal=issuer.allows_internal_names)

    def default_names(self) -> tuple[str, ...]:
        """Names from ``[outlook_anywhere]`` when ``certkeeper issue`` is given none."""
        oa = self.config.settings.outlook_anywhere
        if oa is None:
            raise ConfigError(
                "no names given: pass them (certkeeper issue mail.contoso.com autodiscover.contoso.com) "
                "or configure [outlook_anywhere] external_host and domains"
            )
        from certkeeper.outlook.planner import plan_from_settings

        # the external host, autodiscover.<domain> per accepted domain, the legacy name in coexistence
        # (reference/exchange.md §1.2); `certkeeper plan` shows the same plan with its warnings
        names = list(plan_from_settings(oa).names)
        names.extend(name for name in oa.extra_names if name not in names)
        return tuple(names)

    # -- issuing ------------------------------------------------------------------------------------

    def issue(
        self,
        raw_names: tuple[str, ...],
        *,
        cert_id: str | None = None,
        issuer: str | None = None,
        key_type: KeyType | None = None,
        progress: Callable[[str], None] = lambda _step: None,
    ) -> IssueOutcome:
        """Put ``raw_names`` under management as ``cert_id`` and issue a certificate now."""
        if cert_id is not None:
            check_certificate_id(cert_id)
        existing = self.repository.find_certificate(cert_id) if cert_id else None
        issuer_name = issuer or (existing.issuer if existing else "internal")
        names = self._plan_names(raw_names, issuer_name)
        cert_id = cert_id or certificate_id_for(names)
        existing = existing or self.repository.find_certificate(cert_id)
        chosen_key = key_type or (KeyType(existing.key_type) if existing else KeyType.RSA2048)
        self.repository.upsert_certificate(
            cert_id, names=names, issuer=issuer_name, key_type=chosen_key.value,
            source=existing.source if existing else "cli",
            renew_before_seconds=existing.renew_before_seconds if existing else None,
        )
        outcome = self.issue_certificate(cert_id, progress=progress)
        assert outcome is not None  # only a still_due check returns None
        return outcome

    def issue_certificate(
        self,
        cert_id: str,
        *,
        progress: Callable[[str], None] = lambda _step: None,
        reason: str = "requested",
        still_due: Callable[[], bool] | None = None,
    ) -> IssueOutcome | None:
        """Issue (or resume issuing) the certificate ``cert_id`` under its row lease.

        ``still_due`` is asked once the lease is held: a decision taken before may be stale (another
        node renewed in between), and a False answer returns None without asking the CA.
        """
        if not self.repository.acquire_certificate_lease(cert_id, self.holder, self.issue_lease_ttl):
            holder = self.repository.certificate_lease_holder(cert_id)
            if holder is None or not holder_is_dead(holder) or not self.repository.take_certificate_lease(
                cert_id, holder, self.holder, self.issue_lease_ttl
            ):
                raise ConcurrencyError(
                    f"certificate {cert_id!r} is being issued by another certkeeper process"
                    f"{f' ({holder})' if holder else ''}; try again later"
                )
            log.warning("%s: the process that was issuing it (%s) died; resuming its request", cert_id, holder)
        with self._issuing_lock:
            self._issuing.add(cert_id)
        try:
            if still_due is not None and not still_due():
                log.info("%s: already renewed by another process", cert_id, extra={"cert": cert_id})
                return None
            return self._issue_locked(cert_id, progress, reason)
        finally:
            with self._issuing_lock:
                self._issuing.discard(cert_id)
            self.repository.release_certificate_lease(cert_id, self.holder)

    def extend_issue_leases(self, ttl: timedelta) -> int:
        """Keep the leases of the certificates this process is issuing right now (not of one whose
        release failed, say while the store was down: that one expires)."""
        with self._issuing_lock:
            issuing = sorted(self._issuing)
        return self.repository.extend_certificate_leases(issuing, self.holder, ttl)

    def _issue_locked(self, cert_id: str, progress: Callable[[str], None], reason: str) -> IssueOutcome:
        from certkeeper.pki import csr as pki_csr
        from certkeeper.pki import keys as pki_keys

        repo = self.repository
        with repo.session() as session:
            cert = repo.get_certificate(session, cert_id)
            issuer_name, key_type = cert.issuer, KeyType(cert.key_type)
            spec_names = tuple(cert.names)
            current = repo.current_revision(session, cert_id)
            replaces = None
            if current is not None and current.cert_pem:
                replaces = (current.cert_pem.encode(), (current.chain_pem or "").encode())
            current_id = current.id if current else None
            pending = repo.pending_revision(session, cert_id)
            resume = (
                pending is not None
                and tuple(pending.names) == spec_names
                and pending.key_type == key_type.value
                and pending.issuer == issuer_name
            )
            if pending is not None and not resume:
                pending.state = RevisionState.FAILED.value
                pending.error = "abandoned: the certificate's spec changed while this request was pending"
        issuer = self.issuer(issuer_name)
        names = hostnames.normalize_names(spec_names, allow_internal=issuer.allows_internal_names)

        if resume:
            assert pending is not None
            revision_id, number = pending.id, pending.number
            key_pem = repo.open_key(pending)
            private_key: Any = None
            csr_pem = (pending.csr_pem or "").encode()
            checkpoint: Mapping[str, Any] | None = pending.checkpoint
            progress(f"resuming request {number} for {cert_id}")
        else:
            progress(f"generating a {key_type.value} key")
            key = pki_keys.generate_private_key(key_type)
            key_pem = pki_keys.private_key_pem(key)
            private_key = key
            csr_pem = pki_csr.build_csr(key, names)
            checkpoint = None
            with repo.session() as session:
                number = repo.next_revision_number(session, cert_id)
                row = RevisionRow(
                    certificate_id=cert_id, number=number, state=RevisionState.PENDING.value, origin="issued",
                    issuer=issuer_name, names=list(names), key_type=key_type.value,
                    key_encrypted=repo.seal(key_pem), csr_pem=csr_pem.decode(), requested_at=self.clock.now(),
                    replaces_revision_id=current_id,
                )
                session.add(row)
                session.flush()
                revision_id = row.id

        def save_checkpoint(data: Mapping[str, Any]) -> None:
            with repo.session() as session:
                repo.revision(session, revision_id).checkpoint = dict(data)

        request = IssueRequest(
            certificate_id=cert_id, names=names, csr_pem=csr_pem, key_type=key_type,
            replaces_cert_pem=replaces[0] if replaces else None,
            replaces_chain_pem=replaces[1] if replaces else None,
            checkpoint=checkpoint, save_checkpoint=save_checkpoint, progress=progress,
        )
        log.info("issuing %s from %s (%s)", cert_id, issuer_name, reason, extra={"cert": cert_id})
        try:
            try:
                result = issuer.issue(request)
            except CertkeeperError:
                raise
            except Exception as exc:
                log.exception("issuer %s failed unexpectedly", issuer_name)
                raise IssuanceError(f"issuer {issuer_name!r} failed unexpectedly: {type(exc).__name__}") from exc
            progress("checking the issued certificate")
            bundle = self._validate(cert_id, result, key_pem, names, issuer, private_key=private_key)
        except IssuancePending as exc:
            save_checkpoint(exc.checkpoint)
            self._record_pending(cert_id, revision_id, exc)
            raise
        except IssuanceError as exc:
            self._record_failure(cert_id, revision_id, exc)
            raise
        return self._store_issued(
            cert_id, revision_id, number, result, bundle, issuer, issuer_name, replaced=current_id
        )

    def _validate(
        self,
        cert_id: str,
        result: IssueResult,
        key_pem: bytes,
        names: tuple[str, ...],
        issuer: Issuer,
        *,
        private_key: Any = None,
    ) -> Bundle:
        """Before storing: the key is ours, the names are exactly ours, it is valid now, the chain verifies."""
        from certkeeper.pki import chain as pki_chain
        from certkeeper.pki import keys as pki_keys
        from certkeeper.pki import parse

        try:
            certs = parse.load_certificates(result.cert_pem + result.chain_pem, what="the issued certificate")
        except InputError as exc:
            raise IssuedCertificateInvalid(f"the CA returned an unreadable certificate: {exc}") from exc
        leaf, chain = certs[0], certs[1:]
        info = parse.cert_info(leaf)
        # the key generated moments ago is passed in (loading an RSA key back validates it, ~30 ms)
        key = private_key if private_key is not None else pki_keys.load_private_key(key_pem)
        if not parse.public_key_matches(key, leaf):
            raise IssuedCertificateInvalid("the CA returned a certificate for another key; nothing stored")
        issued_names, wanted = set(info.names), set(names)
        if issued_names != wanted:
            missing = ", ".join(sorted(wanted - issued_names)) or "none"
            extra = ", ".join(sorted(issued_names - wanted)) or "none"
            raise IssuedCertificateInvalid(
                f"the CA returned a certificate with other names (missing: {missing}; unexpected: {extra}); "
                "nothing stored"
            )
        now = self.clock.now()
        if info.not_after <= now:
            raise IssuedCertificateInvalid(f"the CA returned a certificate that expired at {info.not_after}")
        if info.not_before > now + CLOCK_SKEW:
            raise IssuedCertificateInvalid(
                f"the CA returned a certificate valid only from {info.not_before}: check this host's clock"
            )
        anchors_pem = issuer.trust_anchors_pem()
        roots = parse.load_certificates(anchors_pem, what="the issuer's roots") if anchors_pem.strip() else chain[-1:]
        intermediates = [cert for cert in chain if cert not in roots]
        if roots:
            at = max(now, info.not_before)
            try:
                pki_chain.verify_chain(leaf, intermediates, roots, at=at, name=None)
            except CertkeeperError as exc:
                raise IssuedCertificateInvalid(f"the issued chain does not verify: {exc}") from exc
        return Bundle(
            certificate_id=cert_id, cert_pem=result.cert_pem if len(certs) == 1 else _pem(leaf),
            chain_pem=b"".join(_pem(cert) for cert in chain), key_pem=key_pem,
            fingerprint=info.fingerprint_sha256, serial=info.serial, names=tuple(info.names),
            not_before=info.not_before, not_after=info.not_after,
        )

    def _store_issued(
        self,
        cert_id: str,
        revision_id: int,
        number: int,
        result: IssueResult,
        bundle: Bundle,
        issuer: Issuer,
        issuer_name: str,
        *,
        replaced: int | None,
    ) -> IssueOutcome:
        from certkeeper.lifecycle.renewal import renewal_time
        from certkeeper.pki import parse

        repo = self.repository
        now = self.clock.now()
        leaf = parse.load_certificates(bundle.cert_pem, what="the issued certificate")[0]
        info = parse.cert_info(leaf)
        with repo.session() as session:
            cert = repo.get_certificate(session, cert_id)
            renew_before = timedelta(seconds=cert.renew_before_seconds) if cert.renew_before_seconds else None
            revision = repo.revision(session, revision_id)
            revision.state = RevisionState.ISSUED.value
            revision.cert_pem = bundle.cert_pem.decode()
            revision.chain_pem = bundle.chain_pem.decode()
            revision.serial = info.serial
            revision.fingerprint_sha256 = info.fingerprint_sha256
            revision.thumbprint_sha1 = info.thumbprint_sha1
            revision.not_before, revision.not_after = info.not_before, info.not_after
            revision.renewal_time = renewal_time(info.not_before, info.not_after, renew_before=renew_before)
            revision.issued_at = now
            revision.checkpoint = None
            revision.error = None
            recovered = cert.failure_count > 0
            cert.failure_count, cert.rejected = 0, False
            cert.next_attempt_at = cert.last_failure_message = None
            kind = EventKind.RENEWED if replaced else EventKind.ISSUED
            details = {"serial": info.serial, "not_after": info.not_after.isoformat()}
            details.update({k: str(v) for k, v in result.details.items()})
            repo.record_event(
                kind.value,
                f"revision {number} issued by {issuer_name}, valid until {info.not_after:%Y-%m-%d %H:%M} UTC",
                certificate_id=cert_id, revision_id=revision_id, node=self.node, details=details, session=session,
            )
            if recovered:
                repo.record_event(
                    EventKind.RECOVERED.value, "issuing works again after earlier failures",
                    certificate_id=cert_id, revision_id=revision_id, node=self.node, session=session,
                )
            renewal_at = revision.renewal_time
        log.info("%s: revision %s issued, expires %s", cert_id, number, info.not_after, extra={"cert": cert_id})
        message = f"revision {number} issued by {issuer_name}, valid until {info.not_after:%Y-%m-%d %H:%M} UTC"
        self.alert_event(kind, cert_id, message, dedupe=f"{kind.value}:{cert_id}:{revision_id}",
                         details={"serial": info.serial, "issuer": issuer_name})
        if recovered:
            self.alert_event(EventKind.RECOVERED, cert_id, "issuing works again after earlier failures",
                             dedupe=f"recovered:{cert_id}:{revision_id}")
        if isinstance(issuer, SupportsRenewalInfo):
            try:
                self.refresh_renewal_info(cert_id)
            except CertkeeperError as exc:
                log.warning("%s: renewal information not available yet: %s", cert_id, exc)
        return IssueOutcome(
            certificate_id=cert_id, revision=number, names=bundle.names, serial=info.serial,
            fingerprint=info.fingerprint_sha256, not_before=info.not_before, not_after=info.not_after,
            renewal_time=renewal_at, issuer=issuer_name, renewed=replaced is not None,
        )

    def _record_pending(self, cert_id: str, revision_id: int, exc: IssuancePending) -> None:
        with self.repository.session() as session:
            cert = self.repository.get_certificate(session, cert_id)
            cert.next_attempt_at = exc.retry_after
            self.repository.record_event(
                EventKind.PENDING_APPROVAL.value, str(exc), certificate_id=cert_id, revision_id=revision_id,
                node=self.node, session=session,
            )
        self.alert_event(EventKind.PENDING_APPROVAL, cert_id, str(exc), dedupe=f"pending:{cert_id}:{revision_id}")

    def _record_failure(self, cert_id: str, revision_id: int, exc: IssuanceError) -> None:
        from certkeeper.lifecycle.backoff import next_attempt_after_failure

        now = self.clock.now()
        with self.repository.session() as session:
            revision = self.repository.revision(session, revision_id)
            revision.error = str(exc)
            # a retryable failure after the CA accepted the request (an ACME order, an AD CS request ID)
            # keeps the revision pending: the next attempt resumes it instead of asking the CA again
            resumable = exc.retryable and bool(revision.checkpoint)
            revision.state = RevisionState.PENDING.value if resumable else RevisionState.FAILED.value
            cert = self.repository.get_certificate(session, cert_id)
            cert.failure_count += 1
            cert.last_failure_at = now
            cert.last_failure_message = str(exc) + (f" (CA: {exc.problem})" if exc.problem else "")
            cert.rejected = not exc.retryable
            cert.next_attempt_at = next_attempt_after_failure(cert.failure_count, now, retry_after=exc.retry_after)
            kind = EventKind.RENEWAL_FAILED if exc.retryable else EventKind.REJECTED
            self.repository.record_event(
                kind.value, str(exc), certificate_id=cert_id, revision_id=revision_id, node=self.node,
                details={"problem": exc.problem or "", "next_attempt_at": cert.next_attempt_at.isoformat()},
                session=session,
            )
            failures = cert.failure_count
            next_at = cert.next_attempt_at
        log.warning("%s: issuing failed: %s", cert_id, exc, extra={"cert": cert_id})
        # one alert when a failure streak starts and one when backoff reaches once a day (expiring
        # alerts escalate after that); every permanent refusal alerts
        if not exc.retryable or failures in (1, 4):
            details = {"problem": exc.problem or "", "next_attempt_at": next_at.isoformat() if next_at else ""}
            self.alert_event(kind, cert_id, str(exc), dedupe=f"{kind.value}:{cert_id}:{revision_id}:{failures}",
                             details=details)

    def refresh_renewal_info(self, cert_id: str) -> datetime | None:
        """Fetch the ARI window for the current revision and re-plan its renewal time from it."""
        from certkeeper.lifecycle.renewal import renewal_time

        with self.repository.session() as session:
            cert = self.repository.get_certificate(session, cert_id)
            current = self.repository.current_revision(session, cert_id)
            if current is None or not current.cert_pem or not current.chain_pem:
                return None
            issuer_name, cert_pem, chain_pem = cert.issuer, current.cert_pem, current.chain_pem
        issuer = self.issuer(issuer_name)
        if not isinstance(issuer, SupportsRenewalInfo):
            return None
        from certkeeper.pki import parse

        chain = parse.load_certificates(chain_pem.encode(), what="the stored chain")
        window = issuer.renewal_info(cert_pem.encode(), _pem(chain[0]))
        if window is None:
            return None
        with self.repository.session() as session:
            current = self.repository.current_revision(session, cert_id)
            if current is None or current.not_before is None or current.not_after is None:
                return None
            changed = (current.ari_window_start, current.ari_window_end) != (window.start, window.end)
            current.ari_window_start, current.ari_window_end = window.start, window.end
            current.ari_explanation_url = window.explanation_url
            current.ari_next_check_at = window.retry_after
            if changed:
                # a new window is the one time the renewal time is drawn again
                current.renewal_time = renewal_time(current.not_before, current.not_after, ari=window)
            return current.renewal_time

    # -- reading ----------------------------------------------------------------------------------------

    def bundle(self, cert_id: str, revision: int | None = None) -> Bundle:
        """The current (or a given) issued revision with its key, for export and binding."""
        repo = self.repository
        with repo.session() as session:
            repo.get_certificate(session, cert_id)
            if revision is None:
                row = repo.current_revision(session, cert_id)
            else:
                row = next((r for r in repo.get_certificate(session, cert_id).revisions if r.number == revision), None)
            if row is None or row.cert_pem is None or row.state != RevisionState.ISSUED.value:
                raise NotFound(f"certificate {cert_id!r} has no issued revision yet")
            return _bundle_from_row(row, repo.open_key(row))

    # -- import / export ------------------------------------------------------------------------------

    def import_file(
        self, data: bytes, *, what: str, password: bytes | None, cert_id: str | None, issuer: str = "internal"
    ) -> IssueOutcome:
        """Bring an existing PEM or PFX (e.g. today's Exchange certificate) under management."""
        from certkeeper.lifecycle.renewal import renewal_time
        from certkeeper.pki import keys as pki_keys
        from certkeeper.pki import parse

        if _looks_like_pem(data):
            key, leaf, chain = parse.split_bundle(data, what=what)
        else:
            key, leaf, chain = parse.load_pfx(data, password, what=what)
        if key is None:
            raise InputError(f"{what} holds no private key: export it with its key (PFX or PEM with the key)")
        if not parse.public_key_matches(key, leaf):
            raise InputError(f"{what}: the private key does not match the certificate")
        info = parse.cert_info(leaf)
        if not info.names:
            raise InputError(f"{what}: the certificate has no DNS names (subjectAltName) to manage")
        names = hostnames.normalize_names(info.names, allow_internal=True)
        key_type = pki_keys.key_type_of(key)
        if key_type is None:
            raise InputError(f"{what}: unsupported key type {info.key}")
        self.config.issuer_table(issuer)
        cert_id = check_certificate_id(cert_id) if cert_id else certificate_id_for(names)
        key_pem = pki_keys.private_key_pem(key)
        repo = self.repository
        if repo.find_certificate(cert_id) is None:
            repo.upsert_certificate(cert_id, names=names, issuer=issuer, key_type=key_type.value, source="import")
        now = self.clock.now()
        with repo.session() as session:
            cert = repo.get_certificate(session, cert_id)
            number = repo.next_revision_number(session, cert_id)
            renew_before = timedelta(seconds=cert.renew_before_seconds) if cert.renew_before_seconds else None
            row = RevisionRow(
                certificate_id=cert_id, number=number, state=RevisionState.ISSUED.value, origin="imported",
                issuer=cert.issuer, names=list(names), key_type=key_type.value, key_encrypted=repo.seal(key_pem),
                cert_pem=_pem(leaf).decode(), chain_pem=b"".join(_pem(c) for c in chain).decode(),
                serial=info.serial, fingerprint_sha256=info.fingerprint_sha256, thumbprint_sha1=info.thumbprint_sha1,
                not_before=info.not_before, not_after=info.not_after,
                renewal_time=renewal_time(info.not_before, info.not_after, renew_before=renew_before),
                requested_at=now, issued_at=now,
            )
            session.add(row)
            session.flush()
            repo.record_event(
                "imported", f"revision {number} imported from {what}", certificate_id=cert_id,
                revision_id=row.id, node=self.node, details={"serial": info.serial}, session=session,
            )
            renewal_at = row.renewal_time
            assert renewal_at is not None
        return IssueOutcome(
            certificate_id=cert_id, revision=number, names=names, serial=info.serial,
            fingerprint=info.fingerprint_sha256, not_before=info.not_before, not_after=info.not_after,
            renewal_time=renewal_at, issuer=issuer, renewed=number > 1,
        )

    def export(
        self, cert_id: str, *, fmt: str, out: Path, password: bytes | None = None, encryption: str = "aes256"
    ) -> None:
        """Write the current revision to ``out`` atomically, mode 0600."""
        from certkeeper.atomicfile import atomic_write
        from certkeeper.pki.pkcs12 import build as pfx

        bundle = self.bundle(cert_id)
        if fmt == "pem":
            data = bundle.cert_pem + bundle.chain_pem + bundle.key_pem
        elif fmt == "pfx":
            if password is None:
                raise InputError("a PFX needs a password")
            data = pfx.build_pfx(
                bundle.key_pem, bundle.cert_pem, bundle.chain_pem, password=password,
                encryption="legacy" if encryption == "legacy" else "aes256", friendly_name=cert_id.encode(),
            )
        else:
            raise InputError(f"unknown export format {fmt!r} (pem or pfx)")
        try:
            atomic_write(out, data, mode=0o600)
        except OSError as exc:
            raise InputError(f"cannot write {out}: {exc.strerror}") from None
        self.repository.record_event(
            "exported", f"exported as {fmt} to {out}", certificate_id=cert_id, node=self.node,
            details={"format": fmt, "encryption": encryption if fmt == "pfx" else ""},
        )

    def clear_rejection(self, cert_id: str) -> None:
        """An operator's --force: allow automatic retries again after a permanent refusal."""
        with self.repository.session() as session:
            cert = self.repository.get_certificate(session, cert_id)
            cert.rejected, cert.next_attempt_at = False, None

    def revoke(self, cert_id: str, reason: str) -> str:
        """Revoke the current revision at its CA; returns the serial."""
        from certkeeper.errors import ConfigError
        from certkeeper.issuers import SupportsRevoke

        reasons = {"unspecified": 0, "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4,
                   "cessationOfOperation": 5}
        bundle = self.bundle(cert_id)
        with self.repository.session() as session:
            cert = self.repository.get_certificate(session, cert_id)
            issuer_name = cert.issuer
        issuer = self.issuer(issuer_name)
        if not isinstance(issuer, SupportsRevoke):
            raise ConfigError(f"issuer {issuer_name!r} cannot revoke certificates")
        issuer.revoke(bundle.cert_pem, bundle.key_pem, reasons[reason])
        with self.repository.session() as session:
            row = self.repository.current_revision(session, cert_id)
            assert row is not None
            row.revoked_at, row.revocation_reason = self.clock.now(), reason
            self.repository.record_event("revoked", f"revision {row.number} revoked ({reason})",
                                         certificate_id=cert_id, revision_id=row.id, node=self.node, session=session)
        return bundle.serial

    def remove(self, cert_id: str) -> None:
        self.repository.delete_certificate(cert_id)
        self.repository.record_event(
            "removed", f"certificate {cert_id} removed from management", certificate_id=cert_id
        )

    # -- reconcile -----------------------------------------------------------------------------------

    def decide(
        self, now: datetime, cert_ids: list[str] | None = None, *, force: bool = False, only_due: bool = False
    ) -> list[Decision]:
        """What each certificate needs now and why (the same chain for `renew` and the daemon).

        ``only_due`` (the daemon's pass) first narrows to the candidates one SQL query finds, so a
        store of 100,000 certificates with nothing due is decided in a fraction of a second.
        """
        from certkeeper.lifecycle.checks import may_attempt, should_issue
        from certkeeper.status import facts_from_overview

        if only_due and not force:
            candidates = self.repository.due_candidates(now)
            if cert_ids is not None:
                wanted = set(cert_ids)
                candidates = [cert_id for cert_id in candidates if cert_id in wanted]
            if not candidates:
                return []
            cert_ids = candidates
        decisions = []
        for item in self.repository.overview(cert_ids):
            facts = facts_from_overview(item)
            verdict = should_issue(facts, now, force=force)
            if verdict is None:
                when = item.renewal_time
                message = f"renews after {when:%Y-%m-%d %H:%M} UTC" if when else "nothing to do"
                decisions.append(Decision(item.id, "wait", "not_due", message, when, item.not_after))
                continue
            blocked = may_attempt(facts, now, force=force)
            if blocked is not None:
                decisions.append(
                    Decision(item.id, "blocked", blocked.reason, blocked.message, item.renewal_time, item.not_after)
                )
            else:
                decisions.append(
                    Decision(item.id, "issue", verdict.reason, verdict.message, item.renewal_time, item.not_after)
                )
        return decisions

    def reconcile(
        self,
        now: datetime | None = None,
        *,
        cert_ids: list[str] | None = None,
        force: bool = False,
        dry_run: bool = False,
        parallel: int = 4,
        issue: bool = True,
        deploy: bool = True,
        only_due: bool = False,
        progress: Callable[[str], None] = lambda _step: None,
    ) -> ReconcileReport:
        """One pass over every certificate (or ``cert_ids``): decide, issue, deploy, verify, alert.

        ``issue=False`` is for nodes that do not hold the issuer lease (CAS arrays): they only
        deploy. ``dry_run`` decides and changes nothing. Due certificates are issued in parallel
        (bounded by ``parallel``); one failing certificate never stops the others.
        """
        from concurrent.futures import ThreadPoolExecutor

        now = now or self.clock.now()
        if not dry_run and issue:
            # in a CAS array only the issuer writes the config into the store: nodes whose config
            # differs for a while (an upgrade in progress) must not flip the spec back and forth,
            # each flip being a "spec changed" re-issuance
            self.sync_config()
        for cert_id in cert_ids or []:
            if self.repository.find_certificate(cert_id) is None:
                raise NotFound(f"no certificate with id {cert_id!r} (certkeeper list shows them)")
        decisions = self.decide(now, cert_ids, force=force, only_due=only_due)
        report = ReconcileReport(decisions=decisions, issued=[], failed={}, deployed=[], deploy_failed={})
        if dry_run:
            return report
        due = [decision for decision in decisions if decision.action == "issue"] if issue else []

        def run(decision: Decision) -> tuple[str, IssueOutcome | None, str | None]:
            cert_id = decision.certificate_id
            def still_due() -> bool:
                return any(d.action == "issue" for d in self.decide(self.clock.now(), [cert_id], force=force))

            try:
                outcome = self.issue_certificate(
                    cert_id, reason=decision.reason, progress=lambda step: progress(f"{cert_id}: {step}"),
                    still_due=still_due,
                )
                return cert_id, outcome, None
            except CertkeeperError as exc:
                return cert_id, None, str(exc)
            except Exception as exc:
                log.exception("unexpected error while issuing %s", cert_id)
                return cert_id, None, f"unexpected error: {type(exc).__name__}: {exc}"

        if due:
            with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(due)))) as pool:
                for cert_id, outcome, error in pool.map(run, due):
                    if outcome is not None:
                        report.issued.append(outcome)
                    elif error is not None:
                        report.failed[cert_id] = error
        if deploy:
            for cert_id in cert_ids or self.repository.ids_with_bindings():
                try:
                    results = self.deploy(cert_id)
                except Exception as exc:
                    log.exception("deploying %s failed", cert_id)
                    report.deploy_failed[cert_id] = str(exc)
                    continue
                for result in results:
                    if result.skipped:
                        continue
                    if result.ok:
                        report.deployed.append(f"{cert_id}/{result.binding}")
                    else:
                        report.deploy_failed[f"{cert_id}/{result.binding}"] = result.message
        report.alerts_queued += self.queue_expiry_alerts(now)
        return report

    # -- deploy and verify ---------------------------------------------------------------------------

    def bindings_for_node(self, bindings: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """The bindings this node deploys: those for every node, and those naming this node."""
        mine = []
        for index, binding in enumerate(bindings):
            node = binding.get("node") or "all"
            if node == "all" or node == self.node:
                mine.append((_binding_key(binding, index), binding))
        return mine

    def binder(self, cert_id: str, key: str, binding: Mapping[str, Any]) -> Binder:
        from certkeeper.plugins import BINDERS

        kind = str(binding.get("type", ""))
        options = {k: v for k, v in binding.items() if k not in ("type", "name", "node")}
        cls = load_class(BINDERS, kind, "binding")
        binder: Binder = cls.from_options(key, options, self.plugin_context(f"binder:{cert_id}:{key}"))
        return binder

    def deploy(self, cert_id: str, *, force: bool = False) -> list[DeployResult]:
        """Deploy the current revision to this node's bindings, verify, roll back on failure."""
        repo = self.repository
        with repo.session() as session:
            cert = repo.get_certificate(session, cert_id)
            bindings = list(cert.bindings or [])
            current = repo.current_revision(session, cert_id)
            if current is None:
                return []
            revision_id = current.id
        return [
            self._deploy_one(cert_id, revision_id, key, binding, force=force)
            for key, binding in self.bindings_for_node(bindings)
        ]

    def _deployment_row(self, session: Any, revision_id: int, key: str) -> DeploymentRow | None:
        from sqlalchemy import select

        row: DeploymentRow | None = session.scalars(
            select(DeploymentRow).where(
                DeploymentRow.revision_id == revision_id, DeploymentRow.binding == key,
                DeploymentRow.node == self.node,
            )
        ).first()
        return row

    def _previous_served(self, session: Any, cert_id: str, revision_id: int, key: str) -> int | None:
        """The revision number last proven (or deployed) on this binding, other than ``revision_id``."""
        from sqlalchemy import select

        row = session.scalars(
            select(DeploymentRow)
            .where(
                DeploymentRow.certificate_id == cert_id, DeploymentRow.binding == key,
                DeploymentRow.node == self.node, DeploymentRow.revision_id != revision_id,
                DeploymentRow.state.in_(["verified", "deployed", "retired"]),
            )
            .order_by(DeploymentRow.updated_at.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return int(self.repository.revision(session, row.revision_id).number)

    def rollout_order(self) -> list[str]:
        """Nodes in rollout order: the canary first, then ``rollout_order``; others deploy last."""
        settings = self.config.settings.daemon
        order = [settings.canary] if settings.canary else []
        order += [node for node in settings.rollout_order if node not in order]
        return order

    def _rollout_gate(self, session: Any, cert_id: str, revision_id: int, now: datetime) -> str | None:
        """Why this node must wait before deploying ``revision_id``, or None.

        A node deploys a new revision only after every live node before it in the rollout order has
        proven it (verified); if one of them failed, the rollout stops there (the canary gate) and
        the later nodes keep serving the previous certificate.
        """
        from sqlalchemy import select

        from certkeeper.store.schema import NodeRow

        order = self.rollout_order()
        if not order or not self.node:
            return None
        before = order[: order.index(self.node)] if self.node in order else order
        # only nodes that deploy this certificate gate it: a canary with no binding for it never
        # verifies it, and must not hold the other nodes back forever
        bindings = self.repository.get_certificate(session, cert_id).bindings or []
        targets = {str(binding.get("node") or "all") for binding in bindings}
        if "all" not in targets:
            before = [node for node in before if node in targets]
        stale = now - timedelta(seconds=3 * self.config.settings.daemon.lease_ttl_seconds)
        for node in before:
            alive = session.scalars(select(NodeRow).where(NodeRow.name == node, NodeRow.heartbeat_at >= stale)).first()
            if alive is None:
                continue  # a node that is down does not hold the others back
            states = set(session.scalars(
                select(DeploymentRow.state).where(
                    DeploymentRow.certificate_id == cert_id, DeploymentRow.revision_id == revision_id,
                    DeploymentRow.node == node,
                )
            ))
            if "failed" in states:
                return f"rollout stopped: node {node} failed to deploy this revision"
            if not states or not states <= {"verified", "deployed"}:
                return f"waiting for node {node} to deploy and verify this revision first"
        return None

    def _deploy_one(
        self, cert_id: str, revision_id: int, key: str, binding: Mapping[str, Any], *, force: bool
    ) -> DeployResult:
        from certkeeper.lifecycle.backoff import next_attempt_after_failure

        repo = self.repository
        now = self.clock.now()
        with repo.session() as session:
            row = self._deployment_row(session, revision_id, key)
            if row is not None and not force:
                if row.state in ("verified", "deployed"):
                    return DeployResult(key, True, "already deployed", skipped=True,
                                        served_fingerprint=row.served_fingerprint)
                if row.state == "failed" and row.next_attempt_at and now < row.next_attempt_at:
                    return DeployResult(key, False, f"backing off until {row.next_attempt_at:%H:%M} UTC", skipped=True)
            waiting = self._rollout_gate(session, cert_id, revision_id, now)
            if waiting is not None:
                return DeployResult(key, False, waiting, skipped=True)
            previous_number = self._previous_served(session, cert_id, revision_id, key)
            if row is None:
                row = DeploymentRow(
                    certificate_id=cert_id, revision_id=revision_id, binding=key, node=self.node,
                    state="deploying", attempts=0, details={}, updated_at=now,
                )
                session.add(row)
            row.state, row.attempts, row.updated_at = "deploying", row.attempts + 1, now
            attempts = row.attempts
        bundle = self.bundle(cert_id)
        previous = self.bundle(cert_id, previous_number) if previous_number is not None else None
        log.info("%s: deploying revision %s to %s", cert_id, bundle.revision, key, extra={"cert": cert_id})
        verification = None
        error: str | None = None
        binder = self.binder(cert_id, key, binding)
        # Binder contract: a deploy that raises has put the previous state back itself (the files
        # binder restores files and reloads; Exchange re-enables the old thumbprint). A deploy that
        # succeeded but whose result does not verify is rolled back here.
        restored_by_binder = False
        try:
            binder.deploy(bundle, previous)
        except CertkeeperError as exc:  # BindError, VerifyError, a secret that cannot be resolved...
            error, restored_by_binder = str(exc), True
        if error is None:
            try:
                verification = binder.verify(bundle)
                if not verification.ok:
                    error = f"verification failed: {verification.summary()}"
            except CertkeeperError as exc:
                error = f"verification failed: {exc}"
        if error is not None:
            if previous is not None and not restored_by_binder:
                try:
                    binder.deploy(previous, bundle)
                    error += f"; rolled back to revision {previous.revision}"
                except CertkeeperError as exc:
                    log.error("%s: rollback on %s failed: %s", cert_id, key, exc, extra={"cert": cert_id})
                    error += f"; ROLLBACK FAILED: {exc}"
            served = verification.served_fingerprint if verification else None
            with repo.session() as session:
                row = self._deployment_row(session, revision_id, key)
                assert row is not None
                row.state, row.error, row.updated_at = "failed", error, self.clock.now()
                row.served_fingerprint = served
                row.next_attempt_at = next_attempt_after_failure(attempts, self.clock.now())
                mismatch = verification is not None and not verification.ok
                kind = EventKind.VERIFY_MISMATCH if mismatch else EventKind.DEPLOY_FAILED
                repo.record_event(kind.value, f"{key}: {error}", certificate_id=cert_id, revision_id=revision_id,
                                  node=self.node, details={"binding": key}, session=session)
            self.alert_event(
                kind, cert_id, f"{key}: {error}", dedupe=f"{kind.value}:{cert_id}:{revision_id}:{key}:{self.node}",
                             details={"binding": key, "node": self.node, "served": served or ""})
            return DeployResult(key, False, error, served_fingerprint=served)
        assert verification is not None
        with repo.session() as session:
            row = self._deployment_row(session, revision_id, key)
            assert row is not None
            proven = bool(verification.checks)
            row.state = "verified" if proven else "deployed"
            row.served_fingerprint = verification.served_fingerprint if proven else None
            row.verified_at = self.clock.now() if proven else None
            row.deployed_at = self.clock.now()
            row.error, row.next_attempt_at = None, None
            repo.record_event(
                EventKind.DEPLOYED.value,
                f"{key}: revision {bundle.revision} deployed" + (", served certificate verified" if proven else ""),
                certificate_id=cert_id, revision_id=revision_id, node=self.node, details={"binding": key},
                session=session,
            )
        if previous is not None:
            try:
                binder.retire(previous, bundle)
            except CertkeeperError as exc:
                log.warning("%s: could not retire revision %s on %s: %s", cert_id, previous.revision, key, exc)
        return DeployResult(key, True, verification.summary(), served_fingerprint=verification.served_fingerprint)

    def verify_deployments(self, now: datetime | None = None) -> list[tuple[str, str, bool, str]]:
        """Probe every binding of this node for what it serves now; alert on a mismatch."""
        results = []
        for cert_id in self.repository.ids_with_bindings():
            repo = self.repository
            with repo.session() as session:
                cert = repo.get_certificate(session, cert_id)
                current = repo.current_revision(session, cert_id)
                bindings = list(cert.bindings or [])
                if current is None:
                    continue
                revision_id = current.id
            for key, binding in self.bindings_for_node(bindings):
                if not binding.get("verify"):
                    continue
                try:
                    bundle = self.bundle(cert_id)
                    verification = self.binder(cert_id, key, binding).verify(bundle)
                    ok, summary = verification.ok, verification.summary()
                    served = verification.served_fingerprint
                except CertkeeperError as exc:
                    ok, summary, served = False, str(exc), None
                with repo.session() as session:
                    row = self._deployment_row(session, revision_id, key)
                    if row is not None:
                        row.served_fingerprint = served
                        row.updated_at = self.clock.now()
                        if ok:
                            row.verified_at = self.clock.now()
                if not ok:
                    self.alert_event(
                        EventKind.VERIFY_MISMATCH, cert_id, f"{key}: {summary}",
                        dedupe=f"verify_mismatch:{cert_id}:{revision_id}:{key}:{self.node}:{served}",
                        details={"binding": key, "node": self.node, "served": served or ""},
                    )
                results.append((cert_id, key, ok, summary))
        return results

    # -- alerts ------------------------------------------------------------------------------------------

    def notifier_names(self) -> list[str]:
        settings = self.config.settings
        return list(settings.alerts.notifiers) or sorted(settings.notifiers)

    def notifiers(self) -> dict[str, Notifier]:
        from certkeeper.plugins import NOTIFIERS

        built: dict[str, Notifier] = {}
        for name, table in self.config.settings.notifiers.items():
            # one broken [notifiers.X] table must not stop the others; its alerts wait in the outbox
            try:
                cls = load_class(NOTIFIERS, table.type, "notifier")
                built[name] = cls.from_options(name, table.options(), self.plugin_context(f"notifier:{name}"))
            except CertkeeperError as exc:
                log.error("notifier %s cannot be used: %s", name, exc, extra={"notifier": name})
        return built

    def prune_revisions(self, now: datetime, *, dry_run: bool = False) -> list[tuple[str, int]]:
        """Delete revisions past ``[store] revision_retention_days``; returns (certificate, number).

        See :meth:`Repository.prunable_revisions` for what is always kept. Each deletion is
        recorded as an event on its certificate, so ``show`` says where a revision went.
        """
        days = self.config.settings.store.revision_retention_days
        if not days:
            return []
        found = self.repository.prunable_revisions(now - timedelta(days=days))
        pruned = [(cert_id, number) for cert_id, number, _ in found]
        if dry_run or not found:
            return pruned
        by_cert: dict[str, list[int]] = {}
        for cert_id, number in pruned:
            by_cert.setdefault(cert_id, []).append(number)
        # the deletion and its events in one transaction: never one without the other
        with self.repository.session() as session:
            self.repository.delete_revisions(session, [row_id for _, _, row_id in found])
            for cert_id, numbers in by_cert.items():
                listed = ", ".join(str(n) for n in numbers)
                self.repository.record_event(
                    "pruned", f"deleted revisions {listed}: expired or failed more than {days:g} days ago",
                    certificate_id=cert_id, details={"revisions": numbers}, session=session,
                )
        log.info("pruned %d old revisions", len(found))
        return pruned

    def outbox(self) -> Any:
        from certkeeper.outbox import Outbox

        return Outbox(self.repository.sessions, self.clock)

    def alert(self, event: Event, dedupe: str) -> int:
        """Queue ``event`` for every alert notifier, once per ``dedupe`` key; never raises."""
        names = self.notifier_names()
        if not names:
            return 0
        try:
            return int(self.outbox().enqueue(event, names, dedupe))
        except Exception:
            log.exception("could not queue the %s alert for %s", event.kind.value, event.certificate_id)
            return 0

    def alert_event(
        self, kind: EventKind, cert_id: str, message: str, *, dedupe: str, details: Mapping[str, str] | None = None
    ) -> int:
        if not self.notifier_names():
            return 0
        now = self.clock.now()
        names: tuple[str, ...] = ()
        not_after = None
        cert = self.repository.find_certificate(cert_id)
        if cert is not None:
            names = tuple(cert.names)
            item = self.repository.overview([cert_id])
            not_after = item[0].not_after if item else None
        event = Event(
            kind=kind, occurred_at=now, message=message, certificate_id=cert_id, names=names, not_after=not_after,
            days_left=round((not_after - now).total_seconds() / 86400, 1) if not_after else None,
            action=ACTIONS.get(kind, ""), details=dict(details or {}),
        )
        return self.alert(event, dedupe)

    def queue_expiry_alerts(self, now: datetime) -> int:
        """An EXPIRING alert per crossed threshold, only while a due renewal has not succeeded."""
        from certkeeper.lifecycle.alerts import latest_crossed

        alerts = self.config.settings.alerts
        queued = 0
        if not self.notifier_names():
            return 0
        # only certificates past their renewal time can raise an expiring alert
        candidates = self.repository.due_candidates(now)
        if not candidates:
            return 0
        for item in self.repository.overview(candidates):
            if item.not_before is None or item.not_after is None or item.revision is None:
                continue
            if item.renewal_time is not None and now < item.renewal_time:
                continue
            threshold = latest_crossed(
                item.not_before, item.not_after, now, fractions=alerts.expiring_fractions, days=alerts.expiring_days
            )
            if threshold is None:
                continue
            left = (item.not_after - now).total_seconds() / 86400
            message = (
                f"expires {item.not_after:%Y-%m-%d %H:%M} UTC ({left:.1f} days left) and has not been renewed"
                + (f": {item.last_failure_message}" if item.last_failure_message else "")
            )
            queued += self.alert_event(
                EventKind.EXPIRING, item.id, message, dedupe=f"expiring:{item.id}:{item.revision}:{threshold.label}",
                details={"threshold": threshold.label},
            )
        return queued

    def queue_digest(self, now: datetime) -> int:
        """The daily digest: every certificate's health in one message."""
        from certkeeper.lifecycle.health import health
        from certkeeper.status import facts_from_overview

        lines = []
        for item in self.repository.overview():
            state, reason = health(facts_from_overview(item), now)
            left = f"{(item.not_after - now).total_seconds() / 86400:.0f}d" if item.not_after else "-"
            lines.append(f"{item.id}: {state.value} ({left} left) - {reason}")
        event = Event(
            kind=EventKind.DIGEST, occurred_at=now, message="\n".join(lines) or "no certificates under management",
            action="Nothing to do unless a line says Failing, Expiring or Expired.",
            details={"certificates": str(len(lines))},
        )
        return self.alert(event, f"digest:{now:%Y-%m-%d}")

    def deliver_alerts(self, now: datetime | None = None) -> Any:
        return self.outbox().deliver_due(self.notifiers(), now or self.clock.now())


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(cert.public_bytes(Encoding.PEM))


def _looks_like_pem(data: bytes) -> bool:
    return b"-----BEGIN" in data[:4096] or data.lstrip()[:5] == b"-----"


def _bundle_from_row(row: RevisionRow, key_pem: bytes) -> Bundle:
    assert row.cert_pem is not None and row.not_before is not None and row.not_after is not None
    return Bundle(
        certificate_id=row.certificate_id, cert_pem=row.cert_pem.encode(), chain_pem=(row.chain_pem or "").encode(),
        key_pem=key_pem, fingerprint=row.fingerprint_sha256 or "", serial=row.serial or "",
        names=tuple(row.names), not_before=row.not_before, not_after=row.not_after, revision=row.number,
    )
