"""The service: the only package that holds both the store and the plugins.

:class:`Service` is a thin facade over one module per concern, each reachable as an attribute:

- :attr:`Service.specs` (:mod:`.specs`): the config synced into the store, names, ids;
- :attr:`Service.issuance` (:mod:`.issuance`): request, resume, accept and record certificates;
- :attr:`Service.deployment` (:mod:`.deployment`): deploy, verify, roll back;
- :attr:`Service.inventory` (:mod:`.inventory`): bundles, import, export, revoke, remove, prune;
- :attr:`Service.alerting` (:mod:`.alerting`): alerts into the outbox, and their delivery;
- :meth:`Service.reconcile` (:mod:`.reconcile`): one pass of decisions and actions.

The CLI and the daemon both go through it, so ``certkeeper renew`` and the daemon make the same
decisions.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from certkeeper.clock import Clock, SystemClock
from certkeeper.cluster import Holder, Leases
from certkeeper.config import Config
from certkeeper.errors import StoreUnwritable
from certkeeper.service.context import ServiceContext
from certkeeper.store.unit import Store

if TYPE_CHECKING:
    from certkeeper.sealing import Sealer
    from certkeeper.service.alerting import Alerting
    from certkeeper.service.deployment import Deployment
    from certkeeper.service.inventory import Inventory
    from certkeeper.service.issuance import Issuance
    from certkeeper.service.reconcile import Decision, Reconciler, ReconcileReport
    from certkeeper.service.specs import Specs

__all__ = ["Decision", "ReconcileReport", "Service"]

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    # Decision and ReconcileReport without importing reconcile (and with it the PKI) up front
    if name in ("Decision", "ReconcileReport"):
        from certkeeper.service import reconcile

        return getattr(reconcile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sealer(config: Config, *, create: bool) -> Sealer | Callable[[], Sealer]:
    """The sealer, or, when its key is there to read, a function that loads it on first use:
    commands that seal and open nothing (``list``, ``status``) neither read the key nor import
    the cryptography it needs. A missing key file is created (or refused) now, as before."""
    from certkeeper.config import SECRET_KEY_ENV

    key_file = config.secret_key_file

    def load() -> Sealer:
        from certkeeper.sealing import KeyFile, load_sealer

        return load_sealer(KeyFile.of(config), create=create)

    if os.environ.get(SECRET_KEY_ENV) or key_file.is_file():
        return load
    return load()


class Service:
    """An open store with its plugins; use as a context manager, or call :meth:`close`."""

    def __init__(self, config: Config, store: Store, *, clock: Clock | None = None, node: str | None = None) -> None:
        clock = clock or store.clock
        node = node if node is not None else (config.settings.daemon.node or "")
        holder = Holder.this_process(node)
        self.context = ServiceContext(
            config=config, store=store, clock=clock, node=node, holder=holder, leases=Leases(store, holder)
        )
        self._parts: dict[str, Any] = {}
        self._parts_lock = threading.RLock()

    # -- the parts, each built (and its module imported) on first use: `list` needs the specs
    # only, and never imports what issuing or deploying needs (the PKI, cryptography) -----------

    def _part(self, name: str, build: Callable[[], Any]) -> Any:
        part = self._parts.get(name)
        if part is None:
            with self._parts_lock:
                part = self._parts.get(name)
                if part is None:
                    part = self._parts[name] = build()
        return part

    @property
    def alerting(self) -> Alerting:
        from certkeeper.service.alerting import Alerting

        part: Alerting = self._part("alerting", lambda: Alerting(self.context))
        return part

    @property
    def specs(self) -> Specs:
        from certkeeper.service.specs import Specs

        part: Specs = self._part("specs", lambda: Specs(self.context))
        return part

    @property
    def inventory(self) -> Inventory:
        from certkeeper.service.inventory import Inventory

        part: Inventory = self._part("inventory", lambda: Inventory(self.context))
        return part

    @property
    def issuance(self) -> Issuance:
        from certkeeper.service.issuance import Issuance

        part: Issuance = self._part("issuance", lambda: Issuance(self.context, self.specs, self.alerting))
        return part

    @property
    def deployment(self) -> Deployment:
        from certkeeper.service.deployment import Deployment

        part: Deployment = self._part("deployment", lambda: Deployment(self.context, self.inventory, self.alerting))
        return part

    @property
    def reconciler(self) -> Reconciler:
        from certkeeper.service.reconcile import Reconciler

        part: Reconciler = self._part("reconciler", lambda: Reconciler(
            self.context, self.specs, self.issuance, self.deployment, self.alerting))
        return part

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        create: bool = True,
        migrate: bool = True,
        clock: Clock | None = None,
        node: str | None = None,
        read_only: bool = False,
    ) -> Service:
        """Open the store named by ``config``: create the data folder and key if allowed, migrate.

        ``read_only`` is for commands that only read (``list``, ``show``, ``status``, ``export``):
        when the disk is full or read-only they open the SQLite store read-only instead of failing.
        """
        from certkeeper.platform.protection import make_private_dir
        from certkeeper.store import db

        if create and not config.settings.store.url:
            make_private_dir(config.data_dir)
        if config.data_dir.is_dir():
            from certkeeper.hostnames import suffixes

            suffixes.cache_in(config.data_dir)  # the Public Suffix List, parsed once per list
        sealer = _sealer(config, create=create)
        busy = config.settings.store.busy_timeout_seconds
        engine = db.make_engine(config.store_url, busy_timeout=busy)
        try:
            db.ensure_current(engine, auto_upgrade=migrate)
        except StoreUnwritable as exc:
            if not read_only or config.settings.store.url:
                why = None if config.settings.store.url else db.why_unwritable(config.data_dir)
                raise StoreUnwritable(why or str(exc)) from exc
            # a full or read-only disk: commands that only read still answer (an empty or
            # outdated store cannot be migrated there, and says so through ensure_current)
            engine.dispose()
            engine = db.make_engine(config.store_url, immutable=True)
            db.ensure_current(engine, auto_upgrade=False)
            log.info("the store's disk cannot be written: opened it read-only")
        clock = clock or SystemClock()
        return cls(config, Store(engine, sealer, clock), clock=clock, node=node)

    # -- shortcuts for what most callers need ---------------------------------------------------

    @property
    def config(self) -> Config:
        return self.context.config

    @property
    def store(self) -> Store:
        return self.context.store

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def node(self) -> str:
        return self.context.node

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
        """One pass; see :meth:`certkeeper.service.reconcile.Reconciler.run`."""
        return self.reconciler.run(
            now, cert_ids=cert_ids, force=force, dry_run=dry_run, parallel=parallel, issue=issue, deploy=deploy,
            only_due=only_due, progress=progress,
        )

    def decide(
        self, now: datetime, cert_ids: list[str] | None = None, *, force: bool = False, only_due: bool = False
    ) -> list[Decision]:
        """What each certificate needs now, and why (``renew --dry-run``)."""
        return self.reconciler.decide(now, cert_ids, force=force, only_due=only_due)

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        self.context.store.dispose()

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
