"""Fakes and helpers shared by the tests: one of each, here.

Fakes stand in only where a test needs a CA that fails on purpose; everything else is real.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from certkeeper.errors import IssuanceError, IssuanceRejected
from certkeeper.hostnames import NamePolicy
from certkeeper.issuers import Issuer
from certkeeper.model import IssueRequest, IssueResult
from certkeeper.service import Service
from certkeeper.store import certificates, events
from certkeeper.store.certificates import Certificate
from certkeeper.store.events import Event as EventRow

T = TypeVar("T")


class FlakyIssuer:
    """An Issuer that fails its first ``failures`` calls, and every call for a certificate in
    ``failing`` (retryable, or ``permanent``), else delegates to a real one; ``calls`` counts
    every attempt that reached it."""

    name_policy = NamePolicy.PRIVATE

    def __init__(self, real: Issuer, failures: int = 0, *, permanent: bool = False) -> None:
        self.name = real.name
        self.real, self.failures, self.permanent, self.calls = real, failures, permanent, 0
        self.failing: set[str] = set()

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: Any) -> FlakyIssuer:
        raise NotImplementedError("built by tests, not from a config")

    def issue(self, request: IssueRequest) -> IssueResult:
        self.calls += 1
        if self.calls <= self.failures or request.certificate_id in self.failing:
            if self.permanent:
                raise IssuanceRejected("the CA refused the names", problem="rejectedIdentifier")
            raise IssuanceError("CA unavailable (connection refused)", problem="serverInternal")
        return self.real.issue(request)

    def trust_anchors_pem(self) -> bytes:
        return self.real.trust_anchors_pem()


_: type[Issuer] = FlakyIssuer


def stand_in(service: Service, name: str, make: Callable[[Issuer], Issuer]) -> Issuer:
    """Use ``make(real issuer)`` for issuer ``name`` in ``service``; returns the stand-in."""
    issuer = make(service.context.issuer(name))
    service.context.issuers[name] = issuer
    return issuer


def certificate_row(service: Service, cert_id: str) -> Certificate | None:
    with service.store.session() as session:
        return certificates.find(session, cert_id)


def recent_events(service: Service, cert_id: str | None = None, limit: int = 50) -> list[EventRow]:
    with service.store.session() as session:
        return events.recent(session, cert_id, limit)


def wait_for(check: Callable[[], T], timeout: float, *, interval: float = 0.05, what: str = "a condition") -> T:
    """Poll ``check`` until it returns something truthy; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
