"""Translate what the ``acme`` package and ``requests`` raise into certkeeper's errors, once.

ACME problem documents (RFC 8555 §6.7) become :class:`IssuanceRejected` when retrying cannot help
(badCSR, rejectedIdentifier, caa, unauthorized, ...) and :class:`IssuanceError` otherwise. The
CA's ``detail`` travels in ``problem``; messages never carry keys or EAB secrets.
"""

from __future__ import annotations

from datetime import datetime

import requests
from acme import errors as acme_errors
from acme import messages
from josepy import errors as jose_errors

from certkeeper.errors import IssuanceError, IssuanceRejected

#: problem types that a retry will not fix: an operator must act
REJECTED = frozenset({
    "accountDoesNotExist",
    "badCSR",
    "badPublicKey",
    "badRevocationReason",
    "badSignatureAlgorithm",
    "caa",
    "externalAccountRequired",
    "invalidContact",
    "malformed",
    "rejectedIdentifier",
    "unauthorized",
    "unsupportedContact",
    "unsupportedIdentifier",
    "userActionRequired",
    "alreadyRevoked",
    "alreadyReplaced",
    "invalidProfile",
})


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


def translate(
    exc: BaseException,
    *,
    what: str = "ACME request",
    name: str | None = None,
    retry_after: datetime | None = None,
) -> IssuanceError:
    """One certkeeper error for ``exc``; raise it with ``raise translate(exc) from exc``."""
    if isinstance(exc, IssuanceError):
        return exc
    if isinstance(exc, messages.Error):
        code = problem_code(exc)
        who = name or problem_name(exc)
        text = problem_text(exc)
        cls = IssuanceRejected if code in REJECTED else IssuanceError
        where = f" for {who}" if who else ""
        return cls(f"{what} failed{where}: {text}", problem=text, name=who, retry_after=retry_after)
    if isinstance(exc, requests.exceptions.SSLError):
        return IssuanceError(
            f"{what}: TLS to the ACME server failed (is ca_bundle right?): {_short(exc)}",
            name=name, retry_after=retry_after)
    if isinstance(exc, requests.exceptions.RequestException):
        return IssuanceError(f"{what}: cannot reach the ACME server: {_short(exc)}", name=name,
                             retry_after=retry_after)
    if isinstance(exc, acme_errors.ConflictError):
        return IssuanceError(f"{what}: conflict at {exc}", name=name)
    if isinstance(exc, acme_errors.Error):
        return IssuanceError(f"{what}: {_short(exc)}", name=name, retry_after=retry_after)
    return IssuanceError(f"{what}: {type(exc).__name__}: {_short(exc)}", name=name,
                         retry_after=retry_after)


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."
