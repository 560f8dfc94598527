"""Issuing: one request per certificate at a time, resumed after a crash, checked before it is stored.

The flow for one certificate, under its row lease (:meth:`certkeeper.cluster.Leases.issuing`):

1. resume the pending revision (same spec) with its key and the issuer's checkpoint, or make a new
   key and CSR and store them sealed as a pending revision *before* asking the CA;
2. ask the issuer; it saves checkpoints (an ACME order URL, an AD CS request id) as it goes;
3. accept the answer (:func:`certkeeper.pki.acceptance.accept_issued`) and store it, with its
   renewal time computed once; or record why not (pending approval, a retryable failure that
   backs off, or a refusal that stops automatic retries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certkeeper import hostnames
from certkeeper.errors import CertkeeperError, ConcurrencyError, IssuanceError, IssuancePending
from certkeeper.issuers import Issuer, SupportsRenewalInfo
from certkeeper.lifecycle.backoff import next_attempt_after_failure
from certkeeper.lifecycle.renewal import renewal_time
from certkeeper.model import EventKind, IssueRequest, KeyType
from certkeeper.pki import acceptance, parse
from certkeeper.pki import csr as pki_csr
from certkeeper.pki import keys as pki_keys
from certkeeper.service.alerting import Alerting
from certkeeper.service.context import ServiceContext
from certkeeper.service.specs import Specs
from certkeeper.store import certificates, events, revisions

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _quiet(_step: str) -> None:
    pass


@dataclass(frozen=True)
class IssueOutcome:
    """What ``certkeeper issue``/``renew`` print about a stored revision."""

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


@dataclass(frozen=True)
class _Attempt:
    """One request in flight: the revision row, its key and CSR, and what an earlier try saved."""

    revision_id: int
    number: int
    key_pem: bytes
    private_key: Any
    csr_pem: bytes
    checkpoint: Mapping[str, Any] | None
    replaces: tuple[bytes, bytes] | None
    replaced_revision_id: int | None


def renew_before_of(seconds: int | None) -> timedelta | None:
    return timedelta(seconds=seconds) if seconds else None


class Issuance:
    """Requests certificates from issuers and records every outcome."""

    def __init__(self, context: ServiceContext, specs: Specs, alerting: Alerting) -> None:
        self.context = context
        self.specs = specs
        self.alerting = alerting

    # -- entry points ---------------------------------------------------------------------------

    def issue(
        self,
        raw_names: tuple[str, ...],
        *,
        cert_id: str | None = None,
        issuer: str | None = None,
        key_type: KeyType | None = None,
        progress: Progress = _quiet,
    ) -> IssueOutcome:
        """``certkeeper issue``: put the names under management (see
        :meth:`Specs.target_for_issue` for which certificate is meant) and issue it now."""
        cert_id, names, issuer_name = self.specs.target_for_issue(raw_names, cert_id=cert_id, issuer=issuer)
        self.specs.put_under_management(cert_id, names, issuer_name, key_type)
        outcome = self.issue_certificate(cert_id, progress=progress)
        assert outcome is not None  # only a still_due check returns None
        return outcome

    def issue_certificate(
        self,
        cert_id: str,
        *,
        progress: Progress = _quiet,
        reason: str = "requested",
        still_due: Callable[[], bool] | None = None,
    ) -> IssueOutcome | None:
        """Issue (or resume issuing) ``cert_id`` under its row lease.

        ``still_due`` is asked once the lease is held: a decision taken before may be stale
        (another node renewed in between), and a False answer returns None without asking the CA.

        Raises:
            ConcurrencyError: another live process is issuing it.
            IssuanceError: the attempt failed (recorded; see the subclasses).
        """
        with self.context.leases.issuing(cert_id, self.context.issue_lease_ttl):
            if still_due is not None and not still_due():
                log.info("%s: already renewed by another process", cert_id, extra={"cert": cert_id})
                return None
            return self._issue_locked(cert_id, progress, reason)

    # -- one attempt ----------------------------------------------------------------------------

    def _issue_locked(self, cert_id: str, progress: Progress, reason: str) -> IssueOutcome:
        with self.context.store.session() as session:
            cert = certificates.get(session, cert_id)
            issuer_name, key_type, spec_names = cert.issuer, KeyType(cert.key_type), tuple(cert.names)
        issuer = self.context.issuer(issuer_name)
        names = hostnames.normalize_names(spec_names, policy=issuer.name_policy)
        attempt = self._start(cert_id, issuer_name, key_type, names, progress)

        def save_checkpoint(data: Mapping[str, Any]) -> None:
            with self.context.store.session() as session:
                revisions.save_checkpoint(session, attempt.revision_id, data)

        request = IssueRequest(
            certificate_id=cert_id, names=names, csr_pem=attempt.csr_pem, key_type=key_type,
            replaces_cert_pem=attempt.replaces[0] if attempt.replaces else None,
            replaces_chain_pem=attempt.replaces[1] if attempt.replaces else None,
            checkpoint=attempt.checkpoint, save_checkpoint=save_checkpoint, progress=progress,
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
            # the key generated moments ago is reused (loading an RSA key back validates it, ~30 ms)
            key = attempt.private_key or pki_keys.load_private_key(attempt.key_pem)
            accepted = acceptance.accept_issued(
                result.cert_pem, result.chain_pem, key=key, names=names, anchors_pem=issuer.trust_anchors_pem(),
                now=self.context.clock.now(),
            )
        except IssuancePending as exc:
            save_checkpoint(exc.checkpoint)
            self._record_pending(cert_id, attempt.revision_id, exc)
            raise
        except IssuanceError as exc:
            self._record_failure(cert_id, attempt.revision_id, exc)
            raise
        return self._record_issued(cert_id, attempt, accepted, issuer, issuer_name, dict(result.details))

    def _start(
        self, cert_id: str, issuer_name: str, key_type: KeyType, names: tuple[str, ...], progress: Progress
    ) -> _Attempt:
        """Resume the pending request of the same spec, or store a new one (key sealed) first."""
        store = self.context.store
        with store.session() as session:
            current = revisions.current(session, cert_id)
            replaces = None
            if current is not None and current.cert_pem:
                replaces = (current.cert_pem.encode(), (current.chain_pem or "").encode())
            current_id = current.id if current is not None else None
            pending = revisions.pending(session, cert_id)
            if pending is not None:
                same_spec = (tuple(pending.names), pending.key_type, pending.issuer) == (
                    names, key_type.value, issuer_name
                )
                if same_spec:
                    progress(f"resuming request {pending.number} for {cert_id}")
                    return _Attempt(
                        pending.id, pending.number, revisions.open_key(store.sealer, pending), None,
                        (pending.csr_pem or "").encode(), pending.checkpoint, replaces, current_id,
                    )
                revisions.fail(session, pending.id,
                               "abandoned: the certificate's spec changed while this request was pending")
        progress(f"generating a {key_type.value} key")
        key = pki_keys.generate_private_key(key_type)
        key_pem = pki_keys.private_key_pem(key)
        csr_pem = pki_csr.build_csr(key, names)
        with store.session() as session:
            row = revisions.add_pending(
                session, store.sealer, cert_id, issuer=issuer_name, names=names, key_type=key_type.value,
                key_pem=key_pem, csr_pem=csr_pem, now=self.context.clock.now(), replaces_revision_id=current_id,
            )
            return _Attempt(row.id, row.number, key_pem, key, csr_pem, None, replaces, current_id)

    # -- recording outcomes ---------------------------------------------------------------------

    def _record_issued(
        self,
        cert_id: str,
        attempt: _Attempt,
        accepted: acceptance.Accepted,
        issuer: Issuer,
        issuer_name: str,
        details: Mapping[str, Any],
    ) -> IssueOutcome:
        info, now, node = accepted.info, self.context.clock.now(), self.context.node
        renewed = attempt.replaced_revision_id is not None
        kind = EventKind.RENEWED if renewed else EventKind.ISSUED
        message = f"revision {attempt.number} issued by {issuer_name}, valid until {info.not_after:%Y-%m-%d %H:%M} UTC"
        with self.context.store.session() as session:
            cert = certificates.get(session, cert_id)
            due = renewal_time(info.not_before, info.not_after, renew_before=renew_before_of(cert.renew_before_seconds))
            if not revisions.mark_issued(
                session, attempt.revision_id, cert_pem=accepted.cert_pem,
                chain_pem=accepted.chain_pem, facts=_revision_facts(info, due), now=now,
            ):
                raise _settled_elsewhere(cert_id, attempt.number)
            recovered = certificates.record_success(session, cert_id)
            event_details = {"serial": info.serial, "not_after": info.not_after.isoformat()}
            event_details.update({key: str(value) for key, value in details.items()})
            events.record(session, kind.value, message, at=now, certificate_id=cert_id,
                          revision_id=attempt.revision_id, node=node, details=event_details)
            if recovered:
                events.record(session, EventKind.RECOVERED.value, "issuing works again after earlier failures",
                              at=now, certificate_id=cert_id, revision_id=attempt.revision_id, node=node)
        log.info("%s: revision %s issued, expires %s", cert_id, attempt.number, info.not_after,
                 extra={"cert": cert_id})
        self.alerting.event(kind, cert_id, message, dedupe=f"{kind.value}:{cert_id}:{attempt.revision_id}",
                            details={"serial": info.serial, "issuer": issuer_name})
        if recovered:
            self.alerting.event(EventKind.RECOVERED, cert_id, "issuing works again after earlier failures",
                                dedupe=f"recovered:{cert_id}:{attempt.revision_id}")
        if isinstance(issuer, SupportsRenewalInfo):
            try:
                due = self.refresh_renewal_info(cert_id) or due
            except CertkeeperError as exc:
                log.warning("%s: renewal information not available yet: %s", cert_id, exc)
        return IssueOutcome(
            certificate_id=cert_id, revision=attempt.number, names=tuple(info.names), serial=info.serial,
            fingerprint=info.fingerprint_sha256, not_before=info.not_before, not_after=info.not_after,
            renewal_time=due, issuer=issuer_name, renewed=renewed,
        )

    def _record_pending(self, cert_id: str, revision_id: int, exc: IssuancePending) -> None:
        now = self.context.clock.now()
        with self.context.store.session() as session:
            certificates.set_next_attempt(session, cert_id, exc.retry_after)
            events.record(session, EventKind.PENDING_APPROVAL.value, str(exc), at=now, certificate_id=cert_id,
                          revision_id=revision_id, node=self.context.node)
        self.alerting.event(EventKind.PENDING_APPROVAL, cert_id, str(exc), dedupe=f"pending:{cert_id}:{revision_id}")

    def _record_failure(self, cert_id: str, revision_id: int, exc: IssuanceError) -> None:
        now = self.context.clock.now()
        with self.context.store.session() as session:
            revision = revisions.get(session, revision_id)
            # a retryable failure after the CA accepted the request (an ACME order, an AD CS request
            # id) keeps the revision pending: the next attempt resumes it instead of asking again
            resumable = exc.retryable and bool(revision.checkpoint)
            if not revisions.fail(session, revision_id, str(exc), keep_pending=resumable):
                # this process paused past its lease and another one settled the request meanwhile:
                # its outcome stands, this late failure is not counted against the certificate
                log.warning("%s: %s", cert_id, _settled_elsewhere(cert_id, revision.number), extra={"cert": cert_id})
                return
            count = certificates.get(session, cert_id).failure_count + 1
            next_at = next_attempt_after_failure(count, now, retry_after=exc.retry_after)
            failures = certificates.record_failure(
                session, cert_id, now=now, message=str(exc) + (f" (CA: {exc.problem})" if exc.problem else ""),
                retryable=exc.retryable, next_attempt_at=next_at,
            )
            kind = EventKind.RENEWAL_FAILED if exc.retryable else EventKind.REJECTED
            events.record(
                session, kind.value, str(exc), at=now, certificate_id=cert_id, revision_id=revision_id,
                node=self.context.node,
                details={"problem": exc.problem or "", "next_attempt_at": next_at.isoformat() if exc.retryable else ""},
            )
        log.warning("%s: issuing failed: %s", cert_id, exc, extra={"cert": cert_id})
        # one alert when a failure streak starts and one when backoff reaches once a day (expiring
        # alerts escalate after that); every permanent refusal alerts
        if not exc.retryable or failures in (1, 4):
            details = {"problem": exc.problem or "", "next_attempt_at": next_at.isoformat() if exc.retryable else ""}
            self.alerting.event(kind, cert_id, str(exc), dedupe=f"{kind.value}:{cert_id}:{revision_id}:{failures}",
                                details=details)

    # -- ACME Renewal Information ---------------------------------------------------------------

    def refresh_renewal_info(self, cert_id: str) -> datetime | None:
        """Fetch the ARI window for the current revision and re-plan its renewal time from it.

        The renewal time is drawn again only when the window changed, and always with the
        certificate's own ``renew_before`` policy.
        """
        with self.context.store.session() as session:
            cert = certificates.get(session, cert_id)
            current = revisions.current(session, cert_id)
            if current is None or not current.cert_pem or not current.chain_pem:
                return None
            issuer_name, cert_pem, chain_pem = cert.issuer, current.cert_pem, current.chain_pem
        issuer = self.context.issuer(issuer_name)
        if not isinstance(issuer, SupportsRenewalInfo):
            return None
        chain = parse.load_certificates(chain_pem.encode(), what="the stored chain")
        window = issuer.renewal_info(cert_pem.encode(), acceptance.pem(chain[0]))
        if window is None:
            return None
        with self.context.store.session() as session:
            cert = certificates.get(session, cert_id)
            current = revisions.current(session, cert_id)
            if current is None or current.not_before is None or current.not_after is None:
                return None
            changed = (current.ari_window_start, current.ari_window_end) != (window.start, window.end)
            # a new window is the one time the renewal time is drawn again
            drawn = renewal_time(
                current.not_before, current.not_after, ari=window,
                renew_before=renew_before_of(cert.renew_before_seconds),
            ) if changed else None
            revisions.set_renewal_info(
                session, current.id, window_start=window.start, window_end=window.end,
                explanation_url=window.explanation_url, next_check_at=window.retry_after, renewal_time=drawn,
            )
            return drawn or current.renewal_time


def _revision_facts(info: parse.CertInfo, due: datetime) -> dict[str, Any]:
    return {
        "serial": info.serial, "fingerprint_sha256": info.fingerprint_sha256, "thumbprint_sha1": info.thumbprint_sha1,
        "not_before": info.not_before, "not_after": info.not_after, "renewal_time": due,
    }


def _settled_elsewhere(cert_id: str, number: int) -> ConcurrencyError:
    return ConcurrencyError(
        f"request {number} of {cert_id!r} was settled by another certkeeper process while this one was "
        f"paused past its lease; this process's outcome was not recorded (`certkeeper show {cert_id}` "
        "shows the one that was)"
    )
