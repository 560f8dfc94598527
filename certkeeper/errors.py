"""The whole exception tree.

Every error certkeeper raises on purpose is a :class:`CertkeeperError`: the CLI prints its message
on one line and exits 1. Foreign exceptions (cryptography, acme, requests, SQLAlchemy) are
translated once, at the adapter that called the library, with ``raise ... from exc``.

Messages name the thing that is wrong (the hostname, the file, the key path in the config, the CA's
problem) and never contain secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar


class CertkeeperError(Exception):
    """Root of certkeeper's errors; the CLI prints it and exits 1."""

    exit_code: ClassVar[int] = 1


class ConfigError(CertkeeperError):
    """The configuration file or a plugin's options are invalid; the message names the key path."""


class InvalidName(CertkeeperError):
    """A hostname was refused. ``name`` is the offending input, ``rule`` the rule it broke."""

    def __init__(self, name: str, rule: str, message: str) -> None:
        super().__init__(f"{name!r}: {message} [rule: {rule}]")
        self.name = name
        self.rule = rule
        #: the explanation alone, without the name and the rule
        self.detail = message


class InvalidNames(InvalidName):
    """Several hostnames were refused at once; ``errors`` holds one :class:`InvalidName` per bad
    name, in input order. ``name`` and ``rule`` are those of the first, so code that handles a
    single :class:`InvalidName` keeps working; the message lists every bad name with its rule."""

    def __init__(self, errors: Sequence[InvalidName]) -> None:
        if not errors:
            raise ValueError("InvalidNames needs at least one error")
        lines = [f"{len(errors)} names refused:"]
        lines += [f"- {error}" for error in errors]
        CertkeeperError.__init__(self, "\n".join(lines))
        self.name = errors[0].name
        self.rule = errors[0].rule
        self.detail = errors[0].detail
        self.errors = tuple(errors)


class InputError(CertkeeperError):
    """A file or value given by the operator cannot be used (broken PEM, wrong PFX password,
    a key that does not match its certificate, ...)."""


class NotFound(CertkeeperError):
    """A certificate, issuer, notifier or other named object does not exist."""


class StoreError(CertkeeperError):
    """The certificate store cannot be used (unreachable, not migrated, locked)."""


class StoreConflict(StoreError):
    """A write lost a race: another process inserted the same row first (a lease, a config sync)."""


class StoreUnwritable(StoreError):
    """The store's disk is full or read-only, or refused a write; reading may still work."""


class SchemaOutOfDate(StoreError):
    """The database is not at the migration head this version of certkeeper needs."""


class SecretKeyError(CertkeeperError):
    """The encryption key for secrets at rest is missing, malformed, or does not open the store."""


class ConcurrencyError(CertkeeperError):
    """Another process holds the lease or lock needed for this step."""


class IssuanceError(CertkeeperError):
    """Issuing failed; ``retryable`` says whether an automatic retry may help.

    ``problem`` carries the CA's own words (an ACME problem document, the AD CS disposition
    message) for alerts and ``status``.
    """

    retryable: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        problem: str | None = None,
        name: str | None = None,
        retry_after: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.name = name
        self.retry_after = retry_after


class IssuanceRejected(IssuanceError):
    """The CA refused in a way retrying cannot fix (badCSR, rejectedIdentifier, caa, denied);
    automatic retries stop and an operator is alerted."""

    retryable = False


class IssuancePending(IssuanceError):
    """The CA accepted the request but has not issued yet (AD CS manager approval).

    The service keeps the revision pending with ``checkpoint`` and asks again at ``retry_at``.
    """

    def __init__(
        self,
        message: str,
        *,
        checkpoint: Mapping[str, Any],
        retry_at: datetime | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_at)
        self.checkpoint = dict(checkpoint)


class IssuedCertificateInvalid(IssuanceError):
    """The CA returned a certificate that fails our checks (wrong key, wrong names, expired,
    chain does not verify); nothing is stored.

    Not retried automatically: asking again gets the same answer (an AD CS template that builds
    the subject from Active Directory, a CA with an expired intermediate) and would loop, as
    cert-manager found (PR #8610). An operator fixes the cause and runs ``renew --force``.
    """

    retryable = False


class BindError(CertkeeperError):
    """Deploying a certificate to a binding target failed (the message says which step)."""


class VerifyError(BindError):
    """The endpoint does not serve the certificate we deployed."""


class NotifyError(CertkeeperError):
    """Sending an alert failed. ``retry_after`` is set when the endpoint asked us to wait."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
