"""Revision retention: old revisions (and their sealed keys) go; what is current or served stays.

On SQLite and on the PostgreSQL at 127.0.0.1:5432 (skipped with a message without it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from certkeeper.clock import FrozenClock
from certkeeper.config import parse
from certkeeper.service import Service
from certkeeper.store.tables import deployments, events, revisions
from tests.fixtures.core import run_cli
from tests.support import FlakyIssuer

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


_OPENED: list[Service] = []


@pytest.fixture(autouse=True)
def _dispose() -> Iterator[None]:
    yield
    while _OPENED:  # close every pooled connection (before a PostgreSQL schema is dropped)
        _OPENED.pop().close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield {}
        return
    url = request.getfixturevalue("postgres_url")
    try:
        yield {"url": url}
    finally:
        while _OPENED:  # before postgres_url drops the schema
            _OPENED.pop().close()


def _service(tmp_path: Path, clock: FrozenClock, store: dict[str, Any], **retention: float) -> Service:
    config = parse(
        {"store": {**store, **retention},
         "issuers": {"short": {"type": "internal-ca", "validity_days": 9}},
         "certificates": [{"id": "mail", "names": ["mail.contoso.com"], "issuer": "short"},
                          {"id": "owa", "names": ["owa.contoso.com"], "issuer": "short"}]},
        data_dir=tmp_path / "data",
    )
    service = Service.open(config, clock=clock)
    _OPENED.append(service)
    return service


def _revisions(service: Service, cert_id: str) -> list[tuple[int, str]]:
    with service.store.session() as session:
        rows = session.execute(select(revisions).where(revisions.c.certificate_id == cert_id)
                               .order_by(revisions.c.number))
        return [(row.number, row.state) for row in rows]


def _renew_until(service: Service, clock: FrozenClock, cert_id: str, number: int) -> None:
    while max(n for n, _ in _revisions(service, cert_id)) < number:
        clock.advance(timedelta(days=1))
        service.reconcile()


def test_expired_and_failed_revisions_go_current_and_served_stay(tmp_path: Path, store: dict[str, Any]) -> None:
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, store)
    service.reconcile()  # mail 1, owa 1
    # one failed request for mail (the CA was down, nothing accepted): a failed revision with a key
    issuer = FlakyIssuer(service.context.issuer("short"))
    service.context.issuers["short"] = issuer
    issuer.failing = {"mail"}
    clock.advance(timedelta(days=5))  # past the 9-day certificate's renewal time (half-life)
    assert list(service.reconcile().failed) == ["mail"]
    issuer.failing = set()
    clock.advance(timedelta(days=1))  # past the first backoff step
    _renew_until(service, clock, "mail", 5)
    assert _revisions(service, "mail") == [(1, "issued"), (2, "failed"), (3, "issued"), (4, "issued"),
                                           (5, "issued")]
    owa = _revisions(service, "owa")
    assert len(owa) >= 3
    # a node that went away long ago still last served mail revision 3: that revision stays
    with service.store.session() as session:
        three = session.scalar(select(revisions.c.id).where(revisions.c.certificate_id == "mail",
                                                            revisions.c.number == 3))
        one = session.scalar(select(revisions.c.id).where(revisions.c.certificate_id == "mail",
                                                          revisions.c.number == 1))
        for revision_id in (one, three):
            session.execute(deployments.insert().values(certificate_id="mail", revision_id=revision_id,
                                                        binding="gateway", node="cas09", state="verified",
                                                        updated_at=clock.now()))
    # from here on nothing renews (no reconcile): every current revision expires, yet stays, as
    # the only thing `show` can tell about its certificate

    # nothing is old enough yet: 90 days by default
    assert service.inventory.prune(clock.now(), dry_run=True) == []
    clock.advance(timedelta(days=120))
    would = service.inventory.prune(clock.now(), dry_run=True)
    assert ("mail", 1) in would and ("mail", 2) in would and ("mail", 4) in would
    assert ("mail", 3) not in would and ("mail", 5) not in would
    assert ("owa", owa[-1][0]) not in would
    assert _revisions(service, "mail")[0] == (1, "issued")  # a dry run deletes nothing

    pruned = service.inventory.prune(clock.now())
    assert pruned == would
    assert _revisions(service, "mail") == [(3, "issued"), (5, "issued")]
    assert _revisions(service, "owa") == [owa[-1]]
    with service.store.session() as session:
        # the deployment row of the deleted revision went with it; the node's latest one stayed
        assert [(d.revision_id, d.node) for d in session.execute(select(deployments))] == [(three, "cas09")]
        event = session.execute(select(events).where(events.c.kind == "pruned",
                                                     events.c.certificate_id == "mail")).one()
        assert event.details == {"revisions": [1, 2, 4]}
    # the store still works: the current revision opens, exports, and a second pass finds nothing
    assert service.inventory.prune(clock.now()) == []
    assert service.inventory.bundle("mail").names == ("mail.contoso.com",)


def test_zero_keeps_everything(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, {}, revision_retention_days=0)
    service.reconcile()
    _renew_until(service, clock, "mail", 3)
    clock.advance(timedelta(days=3650))
    assert service.inventory.prune(clock.now()) == []
    assert [n for n, _ in _revisions(service, "mail")] == [1, 2, 3]


def test_db_prune_cli(tmp_path: Path) -> None:
    # three revisions issued a year ago (a frozen clock), then the CLI on today's clock
    clock = FrozenClock(datetime.now(UTC) - timedelta(days=365))
    service = _service(tmp_path, clock, {})
    service.reconcile()
    _renew_until(service, clock, "mail", 3)
    (tmp_path / "certkeeper.toml").write_text(
        '[issuers.short]\ntype = "internal-ca"\nvalidity_days = 9\n'
        '[[certificates]]\nid = "mail"\nnames = ["mail.contoso.com"]\nissuer = "short"\n'
    )
    env = {"CERTKEEPER_DATA_DIR": str(tmp_path / "data"), "CERTKEEPER_CONFIG": str(tmp_path / "certkeeper.toml")}
    dry = run_cli("db", "prune", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    for cert_id in ("mail", "owa"):
        assert f"would delete {cert_id} revision 1" in dry.stdout and f"would delete {cert_id} revision 2" in dry.stdout
        assert f"{cert_id} revision 3" not in dry.stdout  # the current one, though expired
    done = run_cli("db", "prune", env=env)
    assert done.returncode == 0 and "4 revisions deleted (retention 90 days)" in done.stdout, done.stdout
    shown = run_cli("show", "mail", env=env)
    assert shown.returncode == 0 and "deleted revisions 1, 2" in shown.stdout, shown.stdout
    again = run_cli("db", "prune", env=env)
    assert again.returncode == 0 and "0 revisions deleted" in again.stdout, again.stdout


def test_the_daemons_daily_job_prunes(tmp_path: Path) -> None:
    from certkeeper.daemon import Daemon

    clock = FrozenClock(datetime.now(UTC) - timedelta(days=365))
    service = _service(tmp_path, clock, {})
    service.reconcile()
    _renew_until(service, clock, "mail", 3)
    daemon = Daemon(service.config, node="cas01")
    _OPENED.append(daemon.service)
    daemon.prune()  # not the issuer: it leaves the shared store alone
    assert [n for n, _ in _revisions(service, "mail")] == [1, 2, 3]
    daemon.state.issuer = True
    daemon.prune()
    assert [n for n, _ in _revisions(service, "mail")] == [3]
