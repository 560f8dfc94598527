"""The service: the only place that holds both the store and the plugins.

It turns decisions into actions: issue (with crash-safe resume), validate what the CA returned,
store it encrypted, deploy and verify, and record what happened. The CLI and the daemon both call
it, so ``certkeeper renew`` and the daemon make the same decisions.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from certkeeper import names as hostnames
from certkeeper.clock import Clock, SystemClock
from certkeeper.config import Config
from certkeeper.errors import (
    CertkeeperError,
    ConcurrencyError,
    ConfigError,
    InputError,
    IssuanceError,
    IssuancePending,
    IssuedCertificateInvalid,
    NotFound,
)
from certkeeper.issuers import Issuer, SupportsRenewalInfo
from certkeeper.model import Bundle, EventKind, IssueRequest, IssueResult, KeyType, RevisionState
from certkeeper.plugins import ISSUERS, PluginContext, load_class
from certkeeper.store.repository import Repository
from certkeeper.store.schema import RevisionRow

log = logging.getLogger(__name__)

#: how long one issuance may hold a certificate's row lease before another process may take over
ISSUE_LEASE_TTL = timedelta(minutes=15)
#: tolerated clock difference when checking an issued certificate's notBefore
CLOCK_SKEW = timedelta(minutes=10)


@dataclass(frozen=True)
class IssueOutcome:
    certificate_id: str
    revision: int
    names: tuple[str, ...]
    serial: str
    fingerprint: str
    not_before: datetime
    not_after: datetime
    renewal_time: datetime
    issuer: str
    renewed: bool


def default_node_name() -> str:
    return socket.gethostname().split(".")[0].lower() or "node"


def certificate_id_for(names: tuple[str, ...]) -> str:
    """A readable default id: the first name (``*`` spelled ``wildcard``)."""
    first = names[0].replace("*", "wildcard")
    return first[:64]


class Service:
    def __init__(
        self,
        config: Config,
        repository: Repository,
        *,
        clock: Clock | None = None,
        node: str | None = None,
    ) -> None:
        self.config = config
        self.repository = repository
        self.clock = clock or SystemClock()
        self.node = node or config.settings.daemon.node or ""
        self.holder = f"{self.node or default_node_name()}:{os.getpid()}"
        self._issuers: dict[str, Issuer] = {}

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        create: bool = True,
        migrate: bool = True,
        clock: Clock | None = None,
        node: str | None = None,
    ) -> Service:
        """Open the store named by ``config``: create the data dir and key if allowed, migrate."""
        from certkeeper.secrets import load_sealer
        from certkeeper.store import db

        if create and not config.settings.store.url:
            config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        sealer = load_sealer(config.secret_key_file, create=create)
        engine = db.make_engine(config.store_url)
        db.ensure_current(engine, auto_upgrade=migrate)
        clock = clock or SystemClock()
        repository = Repository(db.session_factory(engine), sealer, clock)
        return cls(config, repository, clock=clock, node=node)

    # -- plugins ----------------------------------------------------------------------------------

    def resolve_secret(self, reference: str) -> str:
        """``env:VAR``, ``file:PATH``, ``secret:NAME``; anything else is the literal value."""
        scheme, _, rest = reference.partition(":")
        if scheme == "env" and rest:
            value = os.environ.get(rest)
            if value is None:
                raise ConfigError(f"environment variable {rest} (a secret reference) is not set")
            return value
        if scheme == "file" and rest:
            try:
                return Path(rest).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {rest}: {exc.strerror}") from None
        if scheme == "secret" and rest:
            return self.repository.get_secret(rest)
        return reference

    def plugin_context(self, namespace: str) -> PluginContext:
        return PluginContext(
            clock=self.clock,
            state=self.repository.state_store(namespace),
            data_dir=self.config.data_dir,
            resolve_secret=self.resolve_secret,
        )

    def issuer(self, name: str) -> Issuer:
        if name not in self._issuers:
            kind, options = self.config.issuer_table(name)
            cls = load_class(ISSUERS, kind, "issuer")
            self._issuers[name] = cls.from_options(name, options, self.plugin_context(f"issuer:{name}"))
        return self._issuers[name]

    # -- specs ----------------------------------------------------------------------------------

    def sync_config(self) -> list[str]:
        """Put every ``[[certificates]]`` of the config under management (or update its spec)."""
        ids = []
        for cert in self.config.settings.certificates:
            names = self._plan_names(cert.names, cert.issuer)
            renew_before = int(cert.renew_before_days * 86400) if cert.renew_before_days else None
            bindings = [binding.model_dump(exclude_none=True) for binding in cert.bindings]
            self.repository.upsert_certificate(
                cert.id, names=names, issuer=cert.issuer, key_type=cert.key_type.value, source="config",
                renew_before_seconds=renew_before, bindings=bindings,
            )
            ids.append(cert.id)
        return ids

    def _plan_names(self, raw: tuple[str, ...] | list[str], issuer_name: str) -> tuple[str, ...]:
        issuer = self.issuer(issuer_name)
        return hostnames.normalize_names(raw, allow_internal=issuer.allows_internal_names)

    def default_names(self) -> tuple[str, ...]:
        """Names from ``[outlook_anywhere]`` when ``certkeeper issue`` is given none."""
        oa = self.config.settings.outlook_anywhere
        if oa is None:
            raise ConfigError(
                "no names given: pass them (certkeeper issue mail.contoso.com autodiscover.contoso.com) "
                "or configure [outlook_anywhere] external_host and domains"
            )
        from certkeeper.outlook.planner import plan_names

        return tuple(plan_names(oa.external_host, oa.domains, legacy_host=oa.legacy_host, extra=oa.extra_names))

    # -- issuing ------------------------------------------------------------------------------------

    def issue(
        self,
        raw_names: tuple[str, ...],
        *,
        cert_id: str | None = None,
        issuer: str | None = None,
        key_type: KeyType | None = None,
        progress: Callable[[str], None] = lambda _step: None,
    ) -> IssueOutcome:
        """Put ``raw_names`` under management as ``cert_id`` and issue a certificate now."""
        existing = self.repository.find_certificate(cert_id) if cert_id else None
        issuer_name = issuer or (existing.issuer if existing else "internal")
        names = self._plan_names(raw_names, issuer_name)
        cert_id = cert_id or certificate_id_for(names)
        existing = existing or self.repository.find_certificate(cert_id)
        chosen_key = key_type or (KeyType(existing.key_type) if existing else KeyType.RSA2048)
        self.repository.upsert_certificate(
            cert_id, names=names, issuer=issuer_name, key_type=chosen_key.value,
            source=existing.source if existing else "cli",
            renew_before_seconds=existing.renew_before_seconds if existing else None,
        )
        return self.issue_certificate(cert_id, progress=progress)

    def issue_certificate(
        self, cert_id: str, *, progress: Callable[[str], None] = lambda _step: None, reason: str = "requested"
    ) -> IssueOutcome:
        """Issue (or resume issuing) the certificate ``cert_id`` under its row lease."""
        if not self.repository.acquire_certificate_lease(cert_id, self.holder, ISSUE_LEASE_TTL):
            raise ConcurrencyError(
                f"certificate {cert_id!r} is being issued by another certkeeper process; try again later"
            )
        try:
            return self._issue_locked(cert_id, progress, reason)
        finally:
            self.repository.release_certificate_lease(cert_id, self.holder)

    def _issue_locked(self, cert_id: str, progress: Callable[[str], None], reason: str) -> IssueOutcome:
        from certkeeper.pki import csr as pki_csr
        from certkeeper.pki import keys as pki_keys

        repo = self.repository
        with repo.session() as session:
            cert = repo.get_certificate(session, cert_id)
            issuer_name, key_type = cert.issuer, KeyType(cert.key_type)
            spec_names = tuple(cert.names)
            current = repo.current_revision(session, cert_id)
            replaces = (current.cert_pem.encode(), (current.chain_pem or "").encode()) if current and current.cert_pem else None
            current_id = current.id if current else None
            pending = repo.pending_revision(session, cert_id)
            resume = (
                pending is not None
                and tuple(pending.names) == spec_names
                and pending.key_type == key_type.value
                and pending.issuer == issuer_name
            )
            if pending is not None and not resume:
                pending.state = RevisionState.FAILED.value
                pending.error = "abandoned: the certificate's spec changed while this request was pending"
        issuer = self.issuer(issuer_name)
        names = hostnames.normalize_names(spec_names, allow_internal=issuer.allows_internal_names)

        if resume:
            assert pending is not None
            revision_id, number = pending.id, pending.number
            key_pem = repo.open_key(pending)
            csr_pem = (pending.csr_pem or "").encode()
            checkpoint: Mapping[str, Any] | None = pending.checkpoint
            progress(f"resuming request {number} for {cert_id}")
        else:
            progress(f"generating a {key_type.value} key")
            key = pki_keys.generate_private_key(key_type)
            key_pem = pki_keys.private_key_pem(key)
            csr_pem = pki_csr.build_csr(key, names)
            checkpoint = None
            with repo.session() as session:
                number = repo.next_revision_number(session, cert_id)
                row = RevisionRow(
                    certificate_id=cert_id, number=number, state=RevisionState.PENDING.value, origin="issued",
                    issuer=issuer_name, names=list(names), key_type=key_type.value,
                    key_encrypted=repo.seal(key_pem), csr_pem=csr_pem.decode(), requested_at=self.clock.now(),
                    replaces_revision_id=current_id,
                )
                session.add(row)
                session.flush()
                revision_id = row.id

        def save_checkpoint(data: Mapping[str, Any]) -> None:
            with repo.session() as session:
                repo.revision(session, revision_id).checkpoint = dict(data)

        request = IssueRequest(
            certificate_id=cert_id, names=names, csr_pem=csr_pem, key_type=key_type,
            replaces_cert_pem=replaces[0] if replaces else None,
            replaces_chain_pem=replaces[1] if replaces else None,
            checkpoint=checkpoint, save_checkpoint=save_checkpoint, progress=progress,
        )
        log.info("issuing %s from %s (%s)", cert_id, issuer_name, reason, extra={"cert": cert_id})
        try:
            try:
                result = issuer.issue(request)
            except CertkeeperError:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not look like success
                log.exception("issuer %s failed unexpectedly", issuer_name)
                raise IssuanceError(f"issuer {issuer_name!r} failed unexpectedly: {type(exc).__name__}") from exc
            progress("checking the issued certificate")
            bundle = self._validate(cert_id, result, key_pem, names, issuer)
        except IssuancePending as exc:
            save_checkpoint(exc.checkpoint)
            self._record_pending(cert_id, revision_id, exc)
            raise
        except IssuanceError as exc:
            self._record_failure(cert_id, revision_id, exc)
            raise
        return self._store_issued(cert_id, revision_id, number, result, bundle, issuer, issuer_name, replaced=current_id)

    def _validate(
        self, cert_id: str, result: IssueResult, key_pem: bytes, names: tuple[str, ...], issuer: Issuer
    ) -> Bundle:
        """Before storing: the key is ours, the names are exactly ours, it is valid now, the chain verifies."""
        from certkeeper.pki import chain as pki_chain
        from certkeeper.pki import keys as pki_keys
        from certkeeper.pki import parse

        try:
            certs = parse.load_certificates(result.cert_pem + result.chain_pem, what="the issued certificate")
        except InputError as exc:
            raise IssuedCertificateInvalid(f"the CA returned an unreadable certificate: {exc}") from exc
        leaf, chain = certs[0], certs[1:]
        info = parse.cert_info(leaf)
        key = pki_keys.load_private_key(key_pem)
        if not parse.public_key_matches(key, leaf):
            raise IssuedCertificateInvalid("the CA returned a certificate for another key; nothing stored")
        issued_names, wanted = set(info.names), set(names)
        if issued_names != wanted:
            missing = ", ".join(sorted(wanted - issued_names)) or "none"
            extra = ", ".join(sorted(issued_names - wanted)) or "none"
            raise IssuedCertificateInvalid(
                f"the CA returned a certificate with other names (missing: {missing}; unexpected: {extra}); "
                "nothing stored"
            )
        now = self.clock.now()
        if info.not_after <= now:
            raise IssuedCertificateInvalid(f"the CA returned a certificate that expired at {info.not_after}")
        if info.not_before > now + CLOCK_SKEW:
            raise IssuedCertificateInvalid(
                f"the CA returned a certificate valid only from {info.not_before}: check this host's clock"
            )
        anchors_pem = issuer.trust_anchors_pem()
        roots = parse.load_certificates(anchors_pem, what="the issuer's roots") if anchors_pem.strip() else chain[-1:]
        intermediates = [cert for cert in chain if cert not in roots]
        if roots:
            at = max(now, info.not_before)
            try:
                pki_chain.verify_chain(leaf, intermediates, roots, at=at, name=None)
            except CertkeeperError as exc:
                raise IssuedCertificateInvalid(f"the issued chain does not verify: {exc}") from exc
        return Bundle(
            certificate_id=cert_id, cert_pem=result.cert_pem if len(certs) == 1 else _pem(leaf),
            chain_pem=b"".join(_pem(cert) for cert in chain), key_pem=key_pem,
            fingerprint=info.fingerprint_sha256, serial=info.serial, names=tuple(info.names),
            not_before=info.not_before, not_after=info.not_after,
        )

    def _store_issued(
        self,
        cert_id: str,
        revision_id: int,
        number: int,
        result: IssueResult,
        bundle: Bundle,
        issuer: Issuer,
        issuer_name: str,
        *,
        replaced: int | None,
    ) -> IssueOutcome:
        from certkeeper.lifecycle.renewal import renewal_time
        from certkeeper.pki import parse

        repo = self.repository
        now = self.clock.now()
        leaf = parse.load_certificates(bundle.cert_pem, what="the issued certificate")[0]
        info = parse.cert_info(leaf)
        with repo.session() as session:
            cert = repo.get_certificate(session, cert_id)
            renew_before = timedelta(seconds=cert.renew_before_seconds) if cert.renew_before_seconds else None
            revision = repo.revision(session, revision_id)
            revision.state = RevisionState.ISSUED.value
            revision.cert_pem = bundle.cert_pem.decode()
            revision.chain_pem = bundle.chain_pem.decode()
            revision.serial = info.serial
            revision.fingerprint_sha256 = info.fingerprint_sha256
            revision.thumbprint_sha1 = info.thumbprint_sha1
            revision.not_before, revision.not_after = info.not_before, info.not_after
            revision.renewal_time = renewal_time(info.not_before, info.not_after, renew_before=renew_before)
            revision.issued_at = now
            revision.checkpoint = None
            revision.error = None
            recovered = cert.failure_count > 0
            cert.failure_count, cert.rejected = 0, False
            cert.next_attempt_at = cert.last_failure_message = None
            kind = EventKind.RENEWED if replaced else EventKind.ISSUED
            details = {"serial": info.serial, "not_after": info.not_after.isoformat()}
            details.update({k: str(v) for k, v in result.details.items()})
            repo.record_event(
                kind.value, f"revision {number} issued by {issuer_name}, valid until {info.not_after:%Y-%m-%d %H:%M} UTC",
                certificate_id=cert_id, revision_id=revision_id, node=self.node, details=details, session=session,
            )
            if recovered:
                repo.record_event(
                    EventKind.RECOVERED.value, "issuing works again after earlier failures",
                    certificate_id=cert_id, revision_id=revision_id, node=self.node, session=session,
                )
            renewal_at = revision.renewal_time
        log.info("%s: revision %s issued, expires %s", cert_id, number, info.not_after, extra={"cert": cert_id})
        if isinstance(issuer, SupportsRenewalInfo):
            try:
                self.refresh_renewal_info(cert_id)
            except CertkeeperError as exc:
                log.warning("%s: renewal information not available yet: %s", cert_id, exc)
        return IssueOutcome(
            certificate_id=cert_id, revision=number, names=bundle.names, serial=info.serial,
            fingerprint=info.fingerprint_sha256, not_before=info.not_before, not_after=info.not_after,
            renewal_time=renewal_at, issuer=issuer_name, renewed=replaced is not None,
        )

    def _record_pending(self, cert_id: str, revision_id: int, exc: IssuancePending) -> None:
        with self.repository.session() as session:
            cert = self.repository.get_certificate(session, cert_id)
            cert.next_attempt_at = exc.retry_after
            self.repository.record_event(
                EventKind.PENDING_APPROVAL.value, str(exc), certificate_id=cert_id, revision_id=revision_id,
                node=self.node, session=session,
            )

    def _record_failure(self, cert_id: str, revision_id: int, exc: IssuanceError) -> None:
        from certkeeper.lifecycle.backoff import next_attempt_after_failure

        now = self.clock.now()
        with self.repository.session() as session:
            revision = self.repository.revision(session, revision_id)
            revision.state = RevisionState.FAILED.value
            revision.error = str(exc)
            cert = self.repository.get_certificate(session, cert_id)
            cert.failure_count += 1
            cert.last_failure_at = now
            cert.last_failure_message = str(exc) + (f" (CA: {exc.problem})" if exc.problem else "")
            cert.rejected = not exc.retryable
            cert.next_attempt_at = next_attempt_after_failure(cert.failure_count, now, retry_after=exc.retry_after)
            kind = EventKind.RENEWAL_FAILED if exc.retryable else EventKind.REJECTED
            self.repository.record_event(
                kind.value, str(exc), certificate_id=cert_id, revision_id=revision_id, node=self.node,
                details={"problem": exc.problem or "", "next_attempt_at": cert.next_attempt_at.isoformat()},
                session=session,
            )
        log.warning("%s: issuing failed: %s", cert_id, exc, extra={"cert": cert_id})

    def refresh_renewal_info(self, cert_id: str) -> datetime | None:
        """Fetch the ARI window for the current revision and re-plan its renewal time from it."""
        from certkeeper.lifecycle.renewal import renewal_time

        with self.repository.session() as session:
            cert = self.repository.get_certificate(session, cert_id)
            current = self.repository.current_revision(session, cert_id)
            if current is None or not current.cert_pem or not current.chain_pem:
                return None
            issuer_name, cert_pem, chain_pem = cert.issuer, current.cert_pem, current.chain_pem
        issuer = self.issuer(issuer_name)
        if not isinstance(issuer, SupportsRenewalInfo):
            return None
        from certkeeper.pki import parse

        chain = parse.load_certificates(chain_pem.encode(), what="the stored chain")
        window = issuer.renewal_info(cert_pem.encode(), _pem(chain[0]))
        if window is None:
            return None
        with self.repository.session() as session:
            current = self.repository.current_revision(session, cert_id)
            if current is None or current.not_before is None or current.not_after is None:
                return None
            changed = (current.ari_window_start, current.ari_window_end) != (window.start, window.end)
            current.ari_window_start, current.ari_window_end = window.start, window.end
            current.ari_explanation_url = window.explanation_url
            current.ari_next_check_at = window.retry_after
            if changed:
                # a new window is the one time the renewal time is drawn again
                current.renewal_time = renewal_time(current.not_before, current.not_after, ari=window)
            return current.renewal_time

    # -- reading ----------------------------------------------------------------------------------------

    def bundle(self, cert_id: str, revision: int | None = None) -> Bundle:
        """The current (or a given) issued revision with its key, for export and binding."""
        repo = self.repository
        with repo.session() as session:
            repo.get_certificate(session, cert_id)
            if revision is None:
                row = repo.current_revision(session, cert_id)
            else:
                row = next((r for r in repo.get_certificate(session, cert_id).revisions if r.number == revision), None)
            if row is None or row.cert_pem is None or row.state != RevisionState.ISSUED.value:
                raise NotFound(f"certificate {cert_id!r} has no issued revision yet")
            return _bundle_from_row(row, repo.open_key(row))

    # -- import / export ------------------------------------------------------------------------------

    def import_file(
        self, data: bytes, *, what: str, password: bytes | None, cert_id: str | None, issuer: str = "internal"
    ) -> IssueOutcome:
        """Bring an existing PEM or PFX (e.g. today's Exchange certificate) under management."""
        from certkeeper.lifecycle.renewal import renewal_time
        from certkeeper.pki import keys as pki_keys
        from certkeeper.pki import parse

        if _looks_like_pem(data):
            key, leaf, chain = parse.split_bundle(data, what=what)
        else:
            key, leaf, chain = parse.load_pfx(data, password, what=what)
        if key is None:
            raise InputError(f"{what} holds no private key: export it with its key (PFX or PEM with the key)")
        if not parse.public_key_matches(key, leaf):
            raise InputError(f"{what}: the private key does not match the certificate")
        info = parse.cert_info(leaf)
        if not info.names:
            raise InputError(f"{what}: the certificate has no DNS names (subjectAltName) to manage")
        names = hostnames.normalize_names(info.names, allow_internal=True)
        key_type = pki_keys.key_type_of(key)
        if key_type is None:
            raise InputError(f"{what}: unsupported key type {info.key_description}")
        self.config.issuer_table(issuer)
        cert_id = cert_id or certificate_id_for(names)
        key_pem = pki_keys.private_key_pem(key)
        repo = self.repository
        if repo.find_certificate(cert_id) is None:
            repo.upsert_certificate(cert_id, names=names, issuer=issuer, key_type=key_type.value, source="import")
        now = self.clock.now()
        with repo.session() as session:
            cert = repo.get_certificate(session, cert_id)
            number = repo.next_revision_number(session, cert_id)
            renew_before = timedelta(seconds=cert.renew_before_seconds) if cert.renew_before_seconds else None
            row = RevisionRow(
                certificate_id=cert_id, number=number, state=RevisionState.ISSUED.value, origin="imported",
                issuer=cert.issuer, names=list(names), key_type=key_type.value, key_encrypted=repo.seal(key_pem),
                cert_pem=_pem(leaf).decode(), chain_pem=b"".join(_pem(c) for c in chain).decode(),
                serial=info.serial, fingerprint_sha256=info.fingerprint_sha256, thumbprint_sha1=info.thumbprint_sha1,
                not_before=info.not_before, not_after=info.not_after,
                renewal_time=renewal_time(info.not_before, info.not_after, renew_before=renew_before),
                requested_at=now, issued_at=now,
            )
            session.add(row)
            session.flush()
            repo.record_event(
                "imported", f"revision {number} imported from {what}", certificate_id=cert_id,
                revision_id=row.id, node=self.node, details={"serial": info.serial}, session=session,
            )
            renewal_at = row.renewal_time
            assert renewal_at is not None
        return IssueOutcome(
            certificate_id=cert_id, revision=number, names=names, serial=info.serial,
            fingerprint=info.fingerprint_sha256, not_before=info.not_before, not_after=info.not_after,
            renewal_time=renewal_at, issuer=issuer, renewed=number > 1,
        )

    def export(
        self, cert_id: str, *, fmt: str, out: Path, password: bytes | None = None, encryption: str = "aes256"
    ) -> None:
        """Write the current revision to ``out`` atomically, mode 0600."""
        from certkeeper.fsutil import atomic_write
        from certkeeper.pki import pfx

        bundle = self.bundle(cert_id)
        if fmt == "pem":
            data = bundle.cert_pem + bundle.chain_pem + bundle.key_pem
        elif fmt == "pfx":
            if password is None:
                raise InputError("a PFX needs a password")
            data = pfx.build_pfx(
                bundle.key_pem, bundle.cert_pem, bundle.chain_pem, password=password,
                encryption="legacy" if encryption == "legacy" else "aes256", friendly_name=cert_id.encode(),
            )
        else:
            raise InputError(f"unknown export format {fmt!r} (pem or pfx)")
        try:
            atomic_write(out, data, mode=0o600)
        except OSError as exc:
            raise InputError(f"cannot write {out}: {exc.strerror}") from None
        self.repository.record_event(
            "exported", f"exported as {fmt} to {out}", certificate_id=cert_id, node=self.node,
            details={"format": fmt, "encryption": encryption if fmt == "pfx" else ""},
        )

    def remove(self, cert_id: str) -> None:
        self.repository.delete_certificate(cert_id)
        self.repository.record_event("removed", f"certificate {cert_id} removed from management", certificate_id=cert_id)


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(cert.public_bytes(Encoding.PEM))


def _looks_like_pem(data: bytes) -> bool:
    return b"-----BEGIN" in data[:4096] or data.lstrip()[:5] == b"-----"


def _bundle_from_row(row: RevisionRow, key_pem: bytes) -> Bundle:
    assert row.cert_pem is not None and row.not_before is not None and row.not_after is not None
    return Bundle(
        certificate_id=row.certificate_id, cert_pem=row.cert_pem.encode(), chain_pem=(row.chain_pem or "").encode(),
        key_pem=key_pem, fingerprint=row.fingerprint_sha256 or "", serial=row.serial or "",
        names=tuple(row.names), not_before=row.not_before, not_after=row.not_after, revision=row.number,
    )
