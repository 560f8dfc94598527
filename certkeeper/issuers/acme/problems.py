"""Translate what the ``acme`` package and ``requests`` raise into certkeeper's errors, once.

ACME problem documents (RFC 8555 §6.7) become :class:`IssuanceRejected` when retrying cannot help
(badCSR, rejectedIdentifier, caa, ...: :data:`PERMANENT`) and :class:`IssuanceError` otherwise. The
CA's ``detail`` travels in ``problem``; messages never carry keys or EAB secrets.
"""

from __future__ import annotations

from datetime import datetime

import requests
from acme import errors as acme_errors
from acme import messages
from josepy import errors as jose_errors

from certkeeper import netreason
from certkeeper.errors import IssuanceError, IssuanceRejected

#: Problem types (RFC 8555 §6.7, RFC 9773 §5) that cannot fix themselves: the CA refuses a name,
#: the CSR, its key or signature, our contact or profile, or wants the operator to act, and asks
#: again give the same answer. Everything else (a validation that failed, ``malformed`` from a
#: step repeated after a crash, rate limits, the CA's own errors) is retried with back-off.
#: ``unauthorized`` is not here: from validation it means "the token was not found yet", which a
#: retry can fix. See :data:`PERMANENT_WITH_UNAUTHORIZED` for where it is about who we are.
PERMANENT = frozenset({
    "badCSR",
    "badPublicKey",
    "badSignatureAlgorithm",
    "caa",
    "rejectedIdentifier",
    "unsupportedIdentifier",
    "externalAccountRequired",
    "invalidContact",
    "unsupportedContact",
    "userActionRequired",
    "invalidProfile",
    "badRevocationReason",
    "alreadyRevoked",
})

#: where ``unauthorized`` is about who we are, which no retry changes: registering an account
#: with External Account Binding (a wrong EAB key), revoking with an account that may not
PERMANENT_WITH_UNAUTHORIZED = PERMANENT | {"unauthorized"}


#: what the protocol layer raises for a failed exchange (anything else is a bug and propagates)
PROTOCOL_ERRORS: tuple[type[BaseException], ...] = (
    messages.Error, acme_errors.Error, jose_errors.Error, requests.exceptions.RequestException, ValueError,
)


def problem_code(error: messages.Error) -> str:
    """The short type (``badNonce``), also for types ``acme`` does not know."""
    return str(error.typ or "").rsplit(":", 1)[-1]


def problem_name(error: messages.Error) -> str | None:
    """The identifier a problem (or its first subproblem) is about."""
    if error.identifier is not None:
        return str(error.identifier.value)
    for sub in error.subproblems or ():
        if sub.identifier is not None:
            return str(sub.identifier.value)
    return None


def problem_text(error: messages.Error) -> str:
    """``type: detail`` plus subproblems, one line."""
    text = f"{problem_code(error)}: {error.detail or error.title or 'no detail'}"
    for sub in error.subproblems or ():
        who = f" ({sub.identifier.value})" if sub.identifier is not None else ""
        text += f"; {problem_code(sub)}{who}: {sub.detail or ''}"
    return text


def is_permanent(error: messages.Error, permanent: frozenset[str] = PERMANENT) -> bool:
    """Whether retrying cannot fix ``error``: its type, or one of its subproblems' (a CA may wrap
    ``rejectedIdentifier`` subproblems in a ``malformed`` document, RFC 8555 §6.7.1)."""
    codes = {problem_code(error)} | {problem_code(sub) for sub in error.subproblems or ()}
    return bool(codes & permanent)


def translate(
    exc: BaseException,
    *,
    what: str = "ACME request",
    name: str | None = None,
    retry_after: datetime | None = None,
    permanent: frozenset[str] = PERMANENT,
) -> IssuanceError:
    """One certkeeper error for ``exc``; raise it with ``raise translate(exc) from exc``.

    A problem whose type is in ``permanent`` becomes :class:`IssuanceRejected` (no automatic
    retry); every other failure is a retryable :class:`IssuanceError`.
    """
    if isinstance(exc, IssuanceError):
        return exc
    if isinstance(exc, messages.Error):
        who = name or problem_name(exc)
        text = problem_text(exc)
        cls = IssuanceRejected if is_permanent(exc, permanent) else IssuanceError
        where = f" for {who}" if who else ""
        return cls(f"{what} failed{where}: {text}", problem=text, name=who, retry_after=retry_after)
    if isinstance(exc, requests.exceptions.RequestException):
        request = getattr(exc, "request", None)
        url = getattr(request, "url", None)
        at = f" at {url.split('?')[0]}" if url else ""
        hint = " (is ca_bundle right?)" if isinstance(exc, requests.exceptions.SSLError) else ""
        return IssuanceError(f"{what}: cannot reach the ACME server{at}: {netreason.reason(exc)}{hint}",
                             name=name, retry_after=retry_after)
    if isinstance(exc, acme_errors.ConflictError):
        return IssuanceError(f"{what}: conflict at {exc}", name=name)
    if isinstance(exc, acme_errors.Error):
        return IssuanceError(f"{what}: {_short(exc)}", name=name, retry_after=retry_after)
    return IssuanceError(f"{what}: {type(exc).__name__}: {_short(exc)}", name=name,
                         retry_after=retry_after)


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."
