"""Whether to issue a certificate now, and whether an attempt is allowed: chains of pure checks.

Shaped after cert-manager's trigger policies (``pkg/controller/certificates/trigger/policies``,
https://github.com/cert-manager/cert-manager): each check looks at
stored facts and ``now`` and returns a :class:`Verdict` with a reason, or None; the first verdict
wins. The same chains serve ``certkeeper renew`` (with ``--dry-run`` printing the verdicts) and the
daemon.

- :func:`should_issue` says *why* a new certificate is needed (never issued, spec changed, key
  mismatch, expired, renewal due, forced), or None when the current one is fine.
- :func:`may_attempt` says what *blocks* an attempt (disabled, rejected by the CA, backing off after
  failures), or None when the service may go ahead.

The service issues when ``should_issue(...)`` is not None and ``may_attempt(...)`` is None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from certkeeper.lifecycle._time import format_span, format_time, require_aware
from certkeeper.lifecycle.renewal import renewal_time


class Reason(StrEnum):
    """The ``reason`` of a :class:`Verdict`; stable strings for logs, ``--json`` and metrics."""

    # should_issue
    NEVER_ISSUED = "never_issued"
    REQUEST_PENDING = "request_pending"
    SPEC_CHANGED = "spec_changed"
    KEY_MISMATCH = "key_mismatch"
    EXPIRED = "expired"
    RENEWAL_DUE = "renewal_due"
    FORCED = "forced"
    # no verdict: the current certificate is fine
    NOT_DUE = "not_due"
    # may_attempt (blocking)
    DISABLED = "disabled"
    REJECTED = "rejected"
    BACKING_OFF = "backing_off"
    AWAITING_APPROVAL = "awaiting_approval"


@dataclass(frozen=True)
class Verdict:
    """A check's answer: a stable ``reason`` (see :class:`Reason`) and a sentence for people."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class SpecFacts:
    """What a certificate is asked to be: the parts whose change calls for a new certificate."""

    names: tuple[str, ...]
    key_type: str
    issuer: str


@dataclass(frozen=True)
class RevisionFacts:
    """The current issued revision of a certificate, as stored.

    ``renewal_time`` is the value computed by :func:`~certkeeper.lifecycle.renewal.renewal_time`
    when the revision was issued; None (an older or imported revision) falls back to the default
    policy (1/3 or 1/2 of the lifetime before expiry). ``key_matches`` is False when the stored
    private key does not belong to the certificate.
    """

    names: tuple[str, ...]
    key_type: str
    issuer: str
    not_before: datetime
    not_after: datetime
    renewal_time: datetime | None
    key_matches: bool = True

    @property
    def spec(self) -> SpecFacts:
        return SpecFacts(self.names, self.key_type, self.issuer)

    @property
    def due_at(self) -> datetime:
        """The stored renewal time, or the default policy's when none was stored."""
        if self.renewal_time is not None:
            return self.renewal_time
        return renewal_time(self.not_before, self.not_after)


@dataclass(frozen=True)
class CertificateFacts:
    """A certificate under management: its spec, its current revision and its retry state.

    ``names``/``key_type``/``issuer`` are the spec as configured now; ``current`` is the latest
    issued revision (None if none was ever issued). The failure fields mirror the certificate row:
    ``failure_count`` consecutive failures, the last one's time and message, the stored
    ``next_attempt_at`` (see :mod:`certkeeper.lifecycle.backoff`), and ``rejected`` when the CA
    refused in a way retrying cannot fix. ``pending`` means a request is in flight (an ACME order
    placed, an AD CS request awaiting approval).

    ``last_failure_spec`` is the spec the last *failed* attempt asked for (from the latest failed
    revision). A spec that differs from it is retried at once, whatever the backoff or rejection
    says (cert-manager does the same: "a config change retries at once"). It is compared with the
    failed attempt and not with ``current`` on purpose: otherwise a new spec that keeps failing
    would still differ from ``current`` after each failure and never back off. When it is None the
    backoff and the rejection always apply.
    """

    id: str
    names: tuple[str, ...]
    key_type: str
    issuer: str
    current: RevisionFacts | None
    failure_count: int = 0
    last_failure_at: datetime | None = None
    last_failure_message: str | None = None
    next_attempt_at: datetime | None = None
    rejected: bool = False
    pending: bool = False
    enabled: bool = True
    last_failure_spec: SpecFacts | None = None
    #: the CA's request id while a request waits for a CA manager's approval (AD CS)
    awaiting_approval: str | None = None

    @property
    def spec(self) -> SpecFacts:
        return SpecFacts(self.names, self.key_type, self.issuer)


Check = Callable[[CertificateFacts, datetime], Verdict | None]


def spec_differences(wanted: SpecFacts, actual: SpecFacts) -> list[str]:
    """What differs between two specs, one short phrase each; empty when they match.

    Names compare as a set, case-insensitively and ignoring a trailing dot (DNS names are
    case-insensitive and order in the SAN list carries no meaning).
    """
    differences: list[str] = []
    wanted_names, actual_names = _name_set(wanted.names), _name_set(actual.names)
    if added := sorted(wanted_names - actual_names):
        differences.append(f"names added: {', '.join(added)}")
    if removed := sorted(actual_names - wanted_names):
        differences.append(f"names removed: {', '.join(removed)}")
    if wanted.key_type != actual.key_type:
        differences.append(f"key type {actual.key_type} -> {wanted.key_type}")
    if wanted.issuer != actual.issuer:
        differences.append(f"issuer {actual.issuer} -> {wanted.issuer}")
    return differences


def _name_set(names: tuple[str, ...]) -> set[str]:
    return {name.lower().rstrip(".") for name in names}


# --- should_issue: why a new certificate is needed ---------------------------------------------


def never_issued(facts: CertificateFacts, now: datetime) -> Verdict | None:
    if facts.current is None:
        return Verdict(Reason.NEVER_ISSUED, "No certificate has been issued yet.")
    return None


def request_pending(facts: CertificateFacts, now: datetime) -> Verdict | None:
    # a request left in flight (a crash, a store write that failed) is finished or failed, never
    # left pending until an operator forces a renewal
    if facts.pending and facts.current is not None:
        return Verdict(Reason.REQUEST_PENDING, "A request is still in flight; it is resumed.")
    return None


def spec_changed(facts: CertificateFacts, now: datetime) -> Verdict | None:
    if facts.current is None:
        return None
    differences = spec_differences(facts.spec, facts.current.spec)
    if differences:
        return Verdict(
            Reason.SPEC_CHANGED,
            f"The configuration differs from the current certificate: {'; '.join(differences)}.",
        )
    return None


def key_mismatch(facts: CertificateFacts, now: datetime) -> Verdict | None:
    if facts.current is not None and not facts.current.key_matches:
        return Verdict(Reason.KEY_MISMATCH, "The stored private key does not match the current certificate.")
    return None


def expired(facts: CertificateFacts, now: datetime) -> Verdict | None:
    # X.509 notAfter is inclusive (RFC 5280 §4.1.2.5): the certificate is valid through that second.
    if facts.current is not None and now > facts.current.not_after:
        not_after = facts.current.not_after
        return Verdict(
            Reason.EXPIRED,
            f"The certificate expired at {format_time(not_after)} ({format_span(now - not_after)} ago).",
        )
    return None


def renewal_due(facts: CertificateFacts, now: datetime) -> Verdict | None:
    if facts.current is None:
        return None
    due_at = facts.current.due_at
    if now >= due_at:
        left = facts.current.not_after - now
        return Verdict(
            Reason.RENEWAL_DUE,
            f"Renewal has been due since {format_time(due_at)}; {format_span(left)} of validity left.",
        )
    return None


#: The should-issue chain, in precedence order; :func:`should_issue` adds ``forced`` last.
ISSUE_CHECKS: tuple[Check, ...] = (never_issued, spec_changed, key_mismatch, expired, request_pending, renewal_due)


def should_issue(facts: CertificateFacts, now: datetime, *, force: bool = False) -> Verdict | None:
    """Why a new certificate should be issued now, or None when the current one is fine.

    The first of ``never_issued``, ``spec_changed``, ``key_mismatch``, ``expired``,
    ``request_pending`` and ``renewal_due`` that applies wins; with ``force`` and none of them,
    the verdict is ``forced``.
    This does not look at failures: :func:`may_attempt` decides whether an attempt is allowed.
    """
    require_aware(now=now)
    for check in ISSUE_CHECKS:
        verdict = check(facts, now)
        if verdict is not None:
            return verdict
    if force:
        return Verdict(Reason.FORCED, "Renewal was forced by an operator.")
    return None


# --- may_attempt: what blocks an attempt ---------------------------------------------------------


def changed_since_failure(facts: CertificateFacts) -> bool:
    """True when the spec differs from the one the last failed attempt asked for."""
    failed = facts.last_failure_spec
    return failed is not None and bool(spec_differences(facts.spec, failed))


def may_attempt(facts: CertificateFacts, now: datetime, *, force: bool = False) -> Verdict | None:
    """What blocks an issuance attempt now, or None when the service may go ahead.

    In order:

    - ``disabled``: automatic issuance is turned off for this certificate; ``force`` does not
      bypass it (enable the certificate first).
    - ``rejected``: the CA refused in a way retrying cannot fix (badCSR, caa, rejectedIdentifier):
      no automatic retry until an operator forces one.
    - ``awaiting_approval``: the CA holds the request for a CA manager (AD CS); the service asks
      again at ``next_attempt_at`` and ``force`` asks now.
    - ``backing_off``: ``now`` is before the stored ``next_attempt_at``.

    ``force`` bypasses ``rejected`` and ``backing_off`` (Let's Encrypt: "have a way for
    administrators to request early retries"). So does a spec that differs from the last failed
    attempt's (see :attr:`CertificateFacts.last_failure_spec`): one prompt attempt per new spec.
    """
    require_aware(now=now, next_attempt_at=facts.next_attempt_at)
    if not facts.enabled:
        return Verdict(Reason.DISABLED, "Automatic issuance is disabled for this certificate.")
    if force or changed_since_failure(facts):
        return None
    if facts.rejected:
        problem = f": {facts.last_failure_message}" if facts.last_failure_message else ""
        return Verdict(
            Reason.REJECTED,
            f"The CA refused the last request permanently{problem}. No automatic retry: fix the cause, "
            f"then run `certkeeper renew {facts.id} --force`.",
        )
    waiting = facts.next_attempt_at is not None and now < facts.next_attempt_at
    if facts.awaiting_approval is not None and facts.failure_count == 0 and waiting:
        when = f" The CA is asked again at {format_time(facts.next_attempt_at)}." if facts.next_attempt_at else ""
        return Verdict(
            Reason.AWAITING_APPROVAL,
            f"Request {facts.awaiting_approval} awaits approval by a CA manager.{when} "
            f"`certkeeper renew {facts.id} --force` asks now.",
        )
    if facts.next_attempt_at is not None and now < facts.next_attempt_at:
        last = f" Last failure: {facts.last_failure_message}" if facts.last_failure_message else ""
        return Verdict(
            Reason.BACKING_OFF,
            f"Backing off from issuance due to {facts.failure_count} previously failed issuance(s). "
            f"Issuance will next be attempted at {format_time(facts.next_attempt_at)}.{last}",
        )
    return None
