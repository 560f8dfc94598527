"""The daemon: one per CAS node, in the foreground (systemd, a Windows service, a container).

It refuses to start on a store that is not at the migration head, or when another daemon already
holds the store (SQLite) or this node's name (PostgreSQL). One daemon at a time holds the "issuer"
lease and orders certificates; every daemon deploys and verifies its own node's bindings.
SIGTERM/SIGINT (and CTRL_BREAK on Windows) let the running step finish, then exit 0; the Windows
service's stop calls :meth:`Daemon.stop`, the same stop. Under systemd it reports READY=1,
WATCHDOG=1 from the heartbeat and STOPPING=1 (:mod:`certkeeper.platform.sdnotify`). At start the
data folder is checked, and repaired, to be private (:mod:`certkeeper.platform.protection`). The
coordination rules are :mod:`certkeeper.cluster`'s; this module wires them to signals, jobs and
the metrics endpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certkeeper import __version__
from certkeeper.clock import Clock
from certkeeper.cluster import ISSUER_LEASE, default_node_name, instance_lease_name
from certkeeper.config import Config
from certkeeper.errors import CertkeeperError, ConfigError
from certkeeper.platform.sdnotify import Notifier
from certkeeper.service import Service
from certkeeper.store import certificates
from certkeeper.web.server import StatusSite

if TYPE_CHECKING:
    from certkeeper.web.tls import ServerTls

log = logging.getLogger(__name__)

#: delivered alerts are forgotten after longer than any certificate lives (398 days under the
#: CA/Browser Forum rules): their rows carry the dedupe keys that keep an alert from being sent twice
DELIVERED_ALERTS_KEPT = timedelta(days=400)


@dataclass
class DaemonState:
    """What the daemon knows about its own last passes (the store holds everything else)."""

    issuer: bool = False
    last_reconcile_ts: float = 0.0
    #: certificates (and bindings) that failed in the last pass; -1 when the pass itself failed
    last_reconcile_errors: int = 0
    last_reconcile_ok: bool = False


def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def limit_malloc_arenas() -> None:
    """Cap glibc's per-thread malloc arenas: each scheduler thread would otherwise keep its own
    and the idle daemon's memory grows with every thread that ever ran (M_ARENA_MAX = -8)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(-8, 2)


_frozen = False


def release_memory() -> None:
    """After a pass: collect garbage and hand freed heap pages back to the OS (malloc_trim).

    After the first pass, what is still alive (modules, the service and its plugins, SQLAlchemy's
    caches) is moved out of the collector's sight (``gc.freeze``): every later collection walks
    only what was made since, a few milliseconds instead of ~50 ms of each pass.
    """
    import gc

    global _frozen
    gc.collect()
    if not _frozen:
        gc.freeze()
        _frozen = True
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


class Daemon:
    """One node's daemon. ``clock`` is for tests that drive the jobs in-process on a FrozenClock
    (the scheduler itself always runs on the wall clock); ``as_service``: this process is the
    Windows service (its account owns the data folder)."""

    def __init__(
        self,
        config: Config,
        *,
        node: str | None = None,
        once: bool = False,
        clock: Clock | None = None,
        as_service: bool = False,
    ) -> None:
        from certkeeper.platform.protection import check_private_dir

        if not config.settings.store.url or config.data_dir.exists():
            check_private_dir(config.data_dir, as_service=as_service)
        self.config = config
        self.settings = config.settings.daemon
        self.node = node or self.settings.node or default_node_name()
        self.once = once
        serving = bool(self.settings.metrics_address) and not once
        if serving:
            self._refuse_an_open_page_beyond_loopback()
        self.stop_event = threading.Event()
        self.notifier = Notifier(None)  # systemd's, read when run() starts
        self.state = DaemonState()
        self.ttl = timedelta(seconds=self.settings.lease_ttl_seconds)
        self._create_schema_in_a_child(config)
        self.service = Service.open(config, create=True, migrate=False, node=self.node, clock=clock)
        # a certificate being issued is leased for the daemon's lease TTL, renewed by the heartbeat:
        # if this process is killed mid-issuance, another node resumes within the TTL (not 15 minutes)
        self.service.context.issue_lease_ttl = self.ttl
        self.leases = self.service.context.leases
        self.shared_store = self.service.store.shared
        self.instance_lease = instance_lease_name(self.node, shared_store=self.shared_store)
        # the status page's token is resolved now, so a missing secret stops the start, not a request
        self.site = StatusSite.from_settings(self.service, self.health) if serving else None
        # HTTPS with a managed certificate: one not issued yet stops the start with a clear line
        self.tls = self._server_tls() if serving and self.settings.tls_certificate else None

    def _server_tls(self) -> ServerTls:
        from certkeeper.web.tls import ServerTls

        assert self.settings.tls_certificate is not None
        ca_file = Path(self.settings.client_ca_file).expanduser() if self.settings.client_ca_file else None
        return ServerTls(self.settings.tls_certificate, self.service.inventory.bundle, client_ca_file=ca_file,
                         client_names=self.settings.client_names)

    def _refuse_an_open_page_beyond_loopback(self) -> None:
        from certkeeper.metrics import parse_address
        from certkeeper.web.access import startup_problem

        address = self.settings.metrics_address or ""
        try:
            host, _port = parse_address(address)
        except ValueError:
            raise ConfigError(f"[daemon] metrics_address {address!r} is not HOST:PORT "
                              "(127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464)") from None
        problem = startup_problem(host, page=self.settings.status_page, token_reference=self.settings.status_token,
                                  client_certificates=bool(self.settings.client_ca_file))
        if problem:
            raise ConfigError(problem)

    @staticmethod
    def _create_schema_in_a_child(config: Config) -> None:
        """Create the tables of an empty store in a short-lived `certkeeper db upgrade` process.

        Alembic would otherwise stay loaded in the long-running daemon (about 15 MB). An existing
        store is never migrated by the daemon (it refuses one that is behind, see Service.open).
        """
        import subprocess

        from certkeeper.platform.protection import make_private_dir
        from certkeeper.store import db

        if not config.settings.store.url:
            make_private_dir(config.data_dir)
        engine = db.make_engine(config.store_url)
        try:
            if db.current_revision(engine) is not None or db.has_tables(engine):
                return
        finally:
            engine.dispose()
        argv = [sys.executable, "-m", "certkeeper"]
        if config.path is not None:
            argv += ["--config", str(config.path)]
        env = dict(os.environ, CERTKEEPER_DATA_DIR=str(config.data_dir))
        done = subprocess.run([*argv, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            # fall back to migrating in this process (Service.open creates an empty store's tables)
            log.warning("creating the store's tables in a child process failed: %s", done.stderr.strip()[-500:])

    # -- leases -----------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Keep this daemon's leases: its instance lock, the issuer lease if held, and the
        leases of the certificates it is issuing right now; record the node's heartbeat."""
        if not self.leases.take(self.instance_lease, self.ttl):
            log.error("lost the daemon lease %s; stopping", self.instance_lease)
            self.stop_event.set()
            return
        self.leases.beat(self.node, version=__version__)
        if self.state.issuer and not self.leases.take(ISSUER_LEASE, self.ttl):
            log.warning("lost the issuer lease to another node")
            self.state.issuer = False
        self.leases.extend_issuing(self.ttl)

    def heartbeat_job(self) -> None:
        """The periodic heartbeat: a store that is briefly unreachable (a PostgreSQL restart) is a
        warning, not a traceback every few seconds; the next beat reconnects."""
        try:
            self.heartbeat()
        except Exception as exc:  # noqa: BLE001 - the job must keep running
            first_line = (str(exc).splitlines() or [""])[0][:200]
            log.warning("heartbeat failed (store unreachable?): %s: %s", type(exc).__name__, first_line)

    # -- jobs: one thing each ---------------------------------------------------------------------

    def reconcile(self) -> None:
        """Take or keep the issuer lease, then one pass (only the issuer orders certificates)."""
        try:
            is_issuer = self.leases.take(ISSUER_LEASE, self.ttl)
            if is_issuer != self.state.issuer:
                holder = None if is_issuer else self.leases.holder_of(ISSUER_LEASE)
                log.info("%s the issuer lease%s", "holding" if is_issuer else "not holding",
                         f" (held by {holder[0]})" if holder else "")
            self.state.issuer = is_issuer
            report = self.service.reconcile(issue=is_issuer, deploy=True, only_due=True)
            self.state.last_reconcile_errors = len(report.failed) + len(report.deploy_failed)
            self.state.last_reconcile_ts = time.time()
            self.state.last_reconcile_ok = report.ok
            log.debug("reconcile pass: %d due, %d issued, %d failed",
                      sum(d.action == "issue" for d in report.decisions), len(report.issued), len(report.failed))
            for decision in report.decisions:
                if decision.action == "blocked":
                    cert_id = decision.certificate_id
                    log.info("%s: %s", cert_id, decision.message, extra={"cert": cert_id})
        except CertkeeperError as exc:
            # the store down, a config problem: one line per pass, not a traceback per job
            log.error("reconcile pass failed: %s", exc)
            self.state.last_reconcile_errors = -1
        except Exception:
            log.exception("reconcile pass failed")
            self.state.last_reconcile_errors = -1
        release_memory()

    def deliver_alerts(self) -> None:
        try:
            self.service.alerting.deliver()
        except CertkeeperError as exc:
            log.error("alert delivery failed: %s", exc)
        except Exception:
            log.exception("alert delivery failed")

    def refresh_renewal_info(self) -> None:
        if not self.state.issuer:
            return
        try:
            with self.service.store.session() as session:
                ids = certificates.ids(session)
        except CertkeeperError as exc:
            log.error("renewal information: %s", exc)
            return
        for cert_id in ids:
            try:
                self.service.issuance.refresh_renewal_info(cert_id)
            except CertkeeperError as exc:
                log.warning("%s: renewal information: %s", cert_id, exc, extra={"cert": cert_id})
            except Exception:
                log.exception("%s: renewal information failed", cert_id)

    def verify(self) -> None:
        try:
            self.service.deployment.verify_all()
        except CertkeeperError as exc:
            log.error("endpoint verification failed: %s", exc)
        except Exception:
            log.exception("endpoint verification failed")

    def digest(self) -> None:
        """The daily digest, queued by the issuer node only (one per array)."""
        if not self.state.issuer:
            return
        try:
            self.service.alerting.queue_digest(self.service.clock.now())
        except Exception:
            log.exception("digest failed")

    def purge_alerts(self) -> None:
        if not self.state.issuer:
            return
        try:
            self.service.alerting.purge_delivered(self.service.clock.now() - DELIVERED_ALERTS_KEPT)
        except Exception:
            log.exception("purging delivered alerts failed")

    def prune(self) -> None:
        if not self.state.issuer:
            return
        try:
            self.service.inventory.prune(self.service.clock.now())
        except Exception:
            log.exception("pruning old revisions failed")

    def health(self) -> dict[str, Any]:
        ok = self.state.last_reconcile_errors != -1
        try:
            self.leases.holder_of(ISSUER_LEASE)
        except Exception:  # noqa: BLE001 - any failure to read the store means unhealthy
            ok = False
        return {
            "ok": ok, "node": self.node, "issuer": self.state.issuer, "version": __version__,
            "last_reconcile": self.state.last_reconcile_ts,
        }

    # -- main loop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop after the running step, as SIGTERM does (the Windows service's stop calls this)."""
        self.stop_event.set()

    def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; ``handle_signals`` False when not on the main thread (the Windows
        service runs the daemon in the SCM's ServiceMain thread and stops it with :meth:`stop`).

        The stop signals are handled from the first moment, so one that arrives while the daemon
        starts stops it cleanly as soon as it runs (not with the default handler's kill)."""
        from certkeeper.platform.signals import stop_signals

        signals = stop_signals() if handle_signals and not self.once else []
        previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        from certkeeper.scheduler import JobSpec, build_scheduler

        limit_malloc_arenas()
        self.notifier = Notifier.from_environment()
        self.leases.acquire_instance(self.instance_lease, self.ttl, shared_store=self.shared_store, node=self.node)
        self.heartbeat()
        log.info("certkeeper %s daemon started as node %s", __version__, self.node, extra={"node": self.node})
        if self.once:
            try:
                self.reconcile()
                self.deliver_alerts()
                return 0 if self.state.last_reconcile_ok else 1
            finally:
                self._release()
        minutes = self.settings.reconcile_minutes
        now = self.service.clock.now()
        jitter = max(1, int(minutes * 60 / 10))
        beat = max(2.0, self.ttl.total_seconds() / 3)
        if self.notifier.watchdog_seconds:
            # sd_watchdog_enabled(3): ping at least every half of the interval systemd gave
            beat = min(beat, self.notifier.watchdog_seconds / 2)
        alerts = min(30.0, minutes * 60)
        digest_hour = self.config.settings.alerts.digest_hour
        # reconcile at once; the other interval jobs first run one interval after start
        jobs = [
            JobSpec("reconcile", self.reconcile, seconds=minutes * 60, jitter=jitter, first_run_at=now),
            JobSpec("alerts", self.deliver_alerts, seconds=alerts),
            JobSpec("renewal-info", self.refresh_renewal_info, seconds=12 * 3600, jitter=1800),
            JobSpec("verify", self.verify, seconds=3600, jitter=120),
            JobSpec("digest", self.digest, cron_hour=digest_hour, jitter=600),
            JobSpec("purge-alerts", self.purge_alerts, cron_hour=digest_hour, jitter=600),
            JobSpec("prune", self.prune, cron_hour=digest_hour, jitter=600),
        ]
        if self.tls is not None:
            # a renewal (here or by the issuing node of an array) is served from the next interval
            jobs.append(JobSpec("https-certificate", self.tls.refresh, seconds=minutes * 60))
        scheduler = build_scheduler(jobs)
        server = None
        if self.settings.metrics_address:
            from certkeeper.metrics import serve

            try:
                server = serve(self.settings.metrics_address, self.service, self.state, self.health, site=self.site,
                               tls=self.tls)
                log.info("metrics and /healthz%s on %s://%s/%s", "" if self.site is None else ", the status page",
                         "http" if self.tls is None else "https", self.settings.metrics_address,
                         " (client certificates required)" if self.tls and self.tls.requires_client_certificate
                         else "")
            except OSError as exc:
                log.error("cannot serve metrics on %s: %s", self.settings.metrics_address, exc)
        # the heartbeat keeps this node's leases alive, so it has its own thread: busy scheduler
        # workers (a slow issuance, probes, a dead SMTP server) must never delay it past the TTL
        beater = threading.Thread(target=self._beat, args=(beat,), name="heartbeat", daemon=True)
        scheduler.start()
        self.notifier.ready(f"node {self.node}")
        beater.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            log.info("stopping: letting the running step finish")
            self.notifier.stopping("letting the running step finish")
            scheduler.shutdown(wait=True)
            beater.join(timeout=beat + 5)
            if server is not None:
                server.shutdown()
            self._release()
            log.info("daemon stopped")
        return 0

    def _beat(self, seconds: float) -> None:
        while not self.stop_event.wait(seconds):
            self.heartbeat_job()
            # the beat ran (its store errors are handled): alive; a hung heartbeat stops the pings
            self.notifier.watchdog()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.stop()

    def _release(self) -> None:
        for lease in (ISSUER_LEASE, self.instance_lease):
            try:
                self.leases.release(lease)
            except Exception:  # noqa: BLE001 - the TTL frees it anyway
                log.warning("could not release lease %s", lease)
