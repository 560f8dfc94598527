"""When to renew a certificate: a pure function of its validity, its policy and ARI.

The order of precedence follows certbot's ``should_autorenew`` and Let's Encrypt's integration
guide (certbot's ``storage.py``, https://github.com/certbot/certbot; "Integration Guide",
https://letsencrypt.org/docs/integration-guide/):

1. an ACME Renewal Information window (RFC 9773), when the CA gave a usable one;
2. the certificate's own ``renew_before`` (renew that long before expiry);
3. the default: when a third of the lifetime remains, or half of it for lifetimes of ten days or
   less (certbot 4.0, lego, Let's Encrypt's "backstop to ARI").
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from certkeeper.lifecycle._time import require_aware, whole_seconds
from certkeeper.model import RenewalWindow

#: Lifetimes up to this long renew at half their life instead of at two thirds.
SHORT_LIFETIME = timedelta(days=10)


def random_point(start: datetime, end: datetime) -> datetime:
    """A point picked uniformly at random in ``[start, end)``, from the OS's CSPRNG.

    RFC 9773 §4.2 asks clients to pick "a uniform random time within the suggested window" so that
    a CA's clients do not all come back at the same instant. An empty window returns ``start``.
    """
    span_us = (end - start) // timedelta(microseconds=1)
    if span_us <= 0:
        return start
    return start + timedelta(microseconds=secrets.randbelow(span_us))


def usable_window(not_before: datetime, ari: RenewalWindow | None) -> RenewalWindow | None:
    """``ari`` if it can drive renewal of the certificate that starts at ``not_before``, else None.

    A window that starts at or before the certificate's ``not_before`` is ignored: it was meant for
    the certificate this one replaced, and following it would renew again at once (cert-manager's
    guard against "an immediate re-renewal loop", https://github.com/cert-manager/cert-manager). A window whose end is
    before its start is malformed.
    """
    if ari is None:
        return None
    require_aware(ari_start=ari.start, ari_end=ari.end)
    if ari.start <= not_before or ari.end < ari.start:
        return None
    return ari


def renewal_time(
    not_before: datetime,
    not_after: datetime,
    *,
    renew_before: timedelta | None = None,
    ari: RenewalWindow | None = None,
    pick: Callable[[datetime, datetime], datetime] = random_point,
) -> datetime:
    """The instant from which a certificate valid ``not_before``..``not_after`` should be renewed.

    With a usable ARI window (see :func:`usable_window`) the answer is a point picked by ``pick``
    in ``[ari.start, ari.end)``; with ``renew_before`` it is ``not_after - renew_before``, never
    earlier than ``not_before``; otherwise it is ``not_after - lifetime/3``, or
    ``not_after - lifetime/2`` when the lifetime is ten days or less. The result is truncated to
    whole seconds. A certificate whose ``not_after`` is not after its ``not_before`` is due at
    ``not_before``.

    Because an ARI answer contains random jitter, the service calls this **once per revision** (when
    the certificate is issued, and again only when a *new* ARI window arrives) and stores the
    result; the jitter is never redrawn on each pass, or a certificate inside its window could be
    skipped forever (cert-manager's renewal-time handling, https://github.com/cert-manager/cert-manager).
    Tests pass a deterministic ``pick``.

    Raises:
        ValueError: a naive datetime, or a ``renew_before`` that is not positive.
    """
    require_aware(not_before=not_before, not_after=not_after)
    if renew_before is not None and renew_before <= timedelta(0):
        raise ValueError(f"renew_before must be positive, got {renew_before}")
    lifetime = not_after - not_before
    if lifetime <= timedelta(0):
        return whole_seconds(not_before)

    window = usable_window(not_before, ari)
    if window is not None:
        return whole_seconds(pick(window.start, window.end))
    if renew_before is not None:
        return whole_seconds(max(not_after - renew_before, not_before))
    fraction_left = 2 if lifetime <= SHORT_LIFETIME else 3
    return whole_seconds(not_after - lifetime / fraction_left)
