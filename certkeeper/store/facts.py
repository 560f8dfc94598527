"""The gatherer: stored rows turned into the facts the pure lifecycle decisions take."""

from __future__ import annotations

from certkeeper.lifecycle.checks import CertificateFacts, RevisionFacts, SpecFacts
from certkeeper.store.certificates import Overview


def certificate_facts(item: Overview) -> CertificateFacts:
    """The :class:`CertificateFacts` of one :class:`Overview` row (spec, current revision, retry state)."""
    current = None
    if item.revision is not None and item.not_before is not None and item.not_after is not None:
        current = RevisionFacts(
            names=item.revision_names or (), key_type=item.revision_key_type or "", issuer=item.revision_issuer or "",
            not_before=item.not_before, not_after=item.not_after, renewal_time=item.renewal_time,
        )
    return CertificateFacts(
        id=item.id, names=item.names, key_type=item.key_type, issuer=item.issuer, current=current,
        failure_count=item.failure_count, last_failure_at=item.last_failure_at,
        last_failure_message=item.last_failure_message, next_attempt_at=item.next_attempt_at,
        rejected=item.rejected, pending=item.pending, enabled=item.enabled,
        last_failure_spec=SpecFacts(*item.last_failure_spec) if item.last_failure_spec else None,
        awaiting_approval=item.pending_request,
    )
