"""Issue from Microsoft Active Directory Certificate Services through certsrv web enrollment.

The protocol is the one the browser pages at ``https://<ca>/certsrv`` speak, as implemented by the
magnuswatn/certsrv client (https://github.com/magnuswatn/certsrv):

1. ``POST certfnsh.asp`` with ``Mode=newreq``, the PEM CSR and ``CertAttrib=CertificateTemplate:<t>``.
   The reply page links ``certnew.cer?ReqID=N&`` when issued, says "Certificate Pending" and
   "Your Request Id is N." when a CA manager must approve, or carries
   ``The disposition message is "..."`` when denied.
2. ``GET certnew.cer?ReqID=N&Enc=b64``: the certificate (``Content-Type: application/pkix-cert``),
   else a page with ``Disposition message:``. A pending request is polled the same way later.
3. ``GET certcarc.asp`` (``var nRenewals=N;``) then ``certnew.p7b?ReqID=CACert&Renewal=N&Enc=b64``:
   the CA chain as PKCS#7.

Names travel only in the CSR's SAN extension. certkeeper never sends ``san:`` request attributes:
a CA honours those only with EDITF_ATTRIBUTESUBJECTALTNAME2, the flag behind ESC6, which makes
every template issue any name to anyone (ESC6, SpecterOps "Certified Pre-Owned",
https://posts.specterops.io/certified-pre-owned-d95910965cd2). For the same reason a CSR
asking for client authentication, a CA certificate or a UPN is refused before it leaves.

Outcomes: issued -> :class:`IssueResult`; awaiting approval -> :class:`IssuancePending` with the
request ID as checkpoint (the next call polls instead of submitting again); denied, wrong template,
refused credentials -> :class:`IssuanceRejected` (retrying cannot help, and retrying a wrong
password can lock the service account); network trouble and 5xx -> :class:`IssuanceError`.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, NoReturn, Self
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from certkeeper import netreason
from certkeeper.config import validate_options
from certkeeper.errors import (
    ConfigError,
    IssuanceError,
    IssuancePending,
    IssuanceRejected,
    IssuedCertificateInvalid,
)
from certkeeper.hostnames import NamePolicy
from certkeeper.issuers.adcs_auth import AuthenticationFailed, SpnegoAuth
from certkeeper.model import IssueRequest, IssueResult
from certkeeper.plugins import PluginContext

logger = logging.getLogger(__name__)

AuthMethod = Literal["negotiate", "ntlm", "basic", "certificate"]

#: certsrv serves certificates with a wrong Content-Type to clients it does not take for a browser
#: (magnuswatn/certsrv); so we say we are one
USER_AGENT = "Mozilla/5.0 (compatible; certkeeper; AD CS web enrollment)"

#: EKUs that turn a web-server certificate into a logon credential (ESC1): never requested
_CLIENT_EKUS = {
    ExtendedKeyUsageOID.CLIENT_AUTH: "client authentication",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "smart card logon",
    ExtendedKeyUsageOID.KERBEROS_PKINIT_KDC: "Kerberos KDC authentication",
    x509.ObjectIdentifier("1.3.6.1.5.2.3.4"): "PKINIT client authentication",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "any purpose",
}
_PENDING_MARKERS = ("certificate pending", "taken under submission", "under submission")


class AdcsOptions(BaseModel):
    """The ``[issuers.X]`` table of ``type = "adcs"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: certsrv web enrollment root, e.g. https://ca01.corp.contoso.com/certsrv
    url: str
    #: certificate template name (the template's short name, not its display name)
    template: str = Field(min_length=1, max_length=128)
    auth: AuthMethod = "negotiate"
    #: DOMAIN\\user or user@domain; for negotiate, leave out to use the service's own account
    username: str | None = None
    #: a secret reference (env:VAR, file:PATH, secret:NAME), resolved when used
    password: str | None = Field(default=None, repr=False)
    password_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    #: CA certificates to trust for the web server's TLS (default: the system's)
    ca_bundle: Path | None = None
    #: the AD CS root certificate, if it should not be taken from certnew.p7b
    root: Path | None = None
    allow_http: bool = False
    connect_timeout_seconds: float = Field(default=10, gt=0, le=300)
    read_timeout_seconds: float = Field(default=60, gt=0, le=600)
    #: how long to wait before asking again about a request awaiting approval
    poll_minutes: float = Field(default=30, gt=0, le=7 * 24 * 60)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https:// URL of the certsrv web enrollment pages")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.strip().rstrip("/")

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        # a CR/LF would smuggle extra request attributes (san:...) into CertAttrib
        if any(ord(char) < 32 for char in value) or ":" in value:
            raise ValueError("must be a plain template name (no control characters or ':')")
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if urlsplit(self.url).scheme == "http" and not self.allow_http:
            raise ValueError("url: plain http sends the CSR and credentials unprotected; "
                             "use https (or set allow_http = true for a lab)")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        has_password = self.password is not None or self.password_file is not None
        if self.auth in ("basic", "ntlm"):
            if not self.username or not has_password:
                raise ValueError(f"auth = {self.auth!r} needs username and password (or password_file)")
        elif self.auth == "negotiate":
            if has_password and not self.username:
                raise ValueError("a password needs a username")
            if self.username and not has_password:
                raise ValueError("username needs password (or password_file); leave both out to "
                                 "authenticate as the service's own account")
        elif self.client_cert is None or self.client_key is None:
            raise ValueError("auth = 'certificate' needs client_cert and client_key")
        return self


@dataclass(frozen=True)
class Submission:
    """What certfnsh.asp answered: ``outcome`` is issued, pending, denied or error."""

    outcome: Literal["issued", "pending", "denied", "error"]
    request_id: int | None
    message: str


def page_text(page: str) -> str:
    """The visible text of an HTML page, whitespace collapsed."""
    without_scripts = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", page)
    text = html.unescape(re.sub(r"<[^>]+>", " ", without_scripts))
    return " ".join(text.split())


def disposition_message(page: str) -> str | None:
    """The CA's disposition message on a certfnsh.asp or certnew.cer page, if there is one."""
    quoted = re.search(r'The disposition message is "([^"]+)', page)
    if quoted:
        return html.unescape(quoted.group(1)).strip()
    labelled = re.search(r"Disposition message:(.*)", page, flags=re.DOTALL)
    if labelled:
        lines = [page_text(line) for line in labelled.group(1).splitlines()]
        for line in lines:
            if line:
                return line
    return None


def _error_result(page: str) -> str | None:
    """The error line of certsrv's "Your request failed" page (HRESULT and its text)."""
    text = page_text(page)
    labelled = re.search(r"Result:\s*(.+?)(?:\s+Error:|$)", text)
    if labelled:
        return labelled.group(1).strip()
    hresult = re.search(r"[^.]*0x8009[0-9a-fA-F]{4}[^.]*\.?", text)
    return hresult.group(0).strip() if hresult else None


def parse_submission(page: str) -> Submission:
    """Read the page certfnsh.asp returns (regexes from magnuswatn/certsrv 2.1.1)."""
    issued = re.search(r"certnew\.cer\?ReqID=(\d+)&", page)
    if issued:
        return Submission("issued", int(issued.group(1)), "issued")
    request_id_match = re.search(r"Your Request Id is (\d+)", page)
    request_id = int(request_id_match.group(1)) if request_id_match else None
    if re.search(r"Certificate Pending", page):
        return Submission("pending", request_id, disposition_message(page) or "Taken Under Submission")
    message = disposition_message(page)
    if message:
        return Submission("denied", request_id, message)
    error = _error_result(page)
    if error:
        return Submission("denied", request_id, error)
    return Submission("error", request_id, page_text(page)[:200])


def _is_pending(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _PENDING_MARKERS)


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from certnew.cer (Enc=b64 gives PEM, Enc=bin gives DER)."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def load_pkcs7(data: bytes) -> list[x509.Certificate]:
    """Certificates from certnew.p7b, armoured (any PEM label) or DER."""
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        import base64

        body = b"".join(line for line in stripped.splitlines() if not line.startswith(b"-----"))
        stripped = base64.b64decode(body)
    return pkcs7.load_der_pkcs7_certificates(stripped)


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def build_chain(leaf: x509.Certificate, pool: list[x509.Certificate]
                ) -> tuple[list[x509.Certificate], list[x509.Certificate]] | None:
    """(intermediates leaf-first, roots) linking ``leaf`` to a self-signed root through ``pool``
    by name and signature; None when the leaf's own issuer is not in the pool."""
    intermediates: list[x509.Certificate] = []
    current = leaf
    for _depth in range(8):
        issuer = None
        for candidate in pool:
            if candidate.subject != current.issuer or candidate == current:
                continue
            try:
                current.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuer = candidate
            break
        if issuer is None:
            return (intermediates, []) if current is not leaf else None
        if _self_signed(issuer):
            return intermediates, [issuer]
        intermediates.append(issuer)
        current = issuer
    return intermediates, []


def check_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Refuse a CSR that would make an AD CS certificate a logon credential (ESC1 shapes).

    Raises:
        IssuanceRejected: the CSR is unreadable, badly signed, asks for a CA certificate, a
            client-authentication EKU, or a SAN other than DNS names and IP addresses.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise IssuanceRejected("the CSR is not a readable PEM certificate request") from None
    if not csr.is_signature_valid:
        raise IssuanceRejected("the CSR's signature does not verify")
    for extension in csr.extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            raise IssuanceRejected("the CSR asks for a CA certificate; certkeeper never requests one")
        if isinstance(value, x509.ExtendedKeyUsage):
            bad = sorted(label for oid, label in _CLIENT_EKUS.items() if oid in value)
            if bad:
                raise IssuanceRejected(
                    f"the CSR asks for {', '.join(bad)}; a web server certificate from AD CS must "
                    "not be usable to log on (ESC1)")
        if isinstance(value, x509.SubjectAlternativeName):
            for general_name in value:
                if not isinstance(general_name, x509.DNSName | x509.IPAddress):
                    raise IssuanceRejected(
                        f"the CSR's SAN holds a {type(general_name).__name__}; only DNS names are "
                        "sent to AD CS (a UPN or e-mail SAN would make a logon certificate)")
    return csr


def _dns_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {name.lower().rstrip(".") for name in san.get_values_for_type(x509.DNSName)}


class AdcsIssuer:
    """Issues from an AD CS enterprise CA through its certsrv web enrollment pages (build it with
    :meth:`from_options`). Each :meth:`issue` call opens its own HTTP session (NTLM and Negotiate
    are bound to connections) and closes it."""

    #: an enterprise CA issues internal names (server.corp.local) that public CAs cannot
    name_policy = NamePolicy.PRIVATE

    def __init__(self, name: str, options: AdcsOptions, context: PluginContext) -> None:
        self.name = name
        self.options = options
        self.context = context
        self._roots: list[x509.Certificate] = []

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        """Validate ``options`` (errors name ``issuers.<name>.<key>``)."""
        where = f"issuers.{name}"
        parsed: AdcsOptions = validate_options(AdcsOptions, options, where=where)
        for key in ("ca_bundle", "root", "client_cert", "client_key", "password_file"):
            path = getattr(parsed, key)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{where}.{key}: file {path} does not exist")
        return cls(name, parsed, context)

    @property
    def url(self) -> str:
        return self.options.url

    # -- HTTP --------------------------------------------------------------------------------

    def _password(self) -> str | None:
        options = self.options
        if options.password_file is not None:
            try:
                return options.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"issuers.{self.name}.password_file: cannot read "
                                  f"{options.password_file}: {exc.strerror}") from None
        if options.password is not None:
            return self.context.resolve_secret(options.password)
        return None

    @contextmanager
    def _session(self) -> Iterator[requests.Session]:
        options = self.options
        session = requests.Session()
        # Trust and credentials come from this table only: no $REQUESTS_CA_BUNDLE, no ~/.netrc
        # (which would add Basic credentials to a client-certificate session), no proxy variables.
        session.trust_env = False
        session.headers["User-Agent"] = USER_AGENT
        if options.auth == "basic":
            session.auth = (options.username or "", self._password() or "")
        elif options.auth in ("ntlm", "negotiate"):
            session.auth = SpnegoAuth(options.username, self._password(), protocol=options.auth,
                                      hostname=urlsplit(options.url).hostname or "")
        else:
            session.cert = (str(options.client_cert), str(options.client_key))
        try:
            yield session
        finally:
            session.close()

    @property
    def _verify(self) -> str | bool:
        # Passed on every call, never left to requests' defaults (certifi, $REQUESTS_CA_BUNDLE).
        if self.options.ca_bundle is not None:
            return str(self.options.ca_bundle)
        import ssl

        default = ssl.get_default_verify_paths().cafile
        return default if default else True

    def _call(self, session: requests.Session, method: str, page: str, *,
              params: Mapping[str, str] | None = None,
              data: Mapping[str, str] | None = None) -> requests.Response:
        url = f"{self.options.url}/{page}"
        timeout = (self.options.connect_timeout_seconds, self.options.read_timeout_seconds)
        try:
            response = session.request(method, url, params=params, data=data, timeout=timeout,
                                       verify=self._verify)
        except AuthenticationFailed as exc:
            raise IssuanceRejected(f"AD CS at {self.url}: {exc}", problem=str(exc)) from exc
        except requests.exceptions.SSLError as exc:
            raise IssuanceError(
                f"cannot reach AD CS at {self.url}: {netreason.reason(exc)}; if the web server's certificate "
                f"comes from an internal CA, set issuers.{self.name}.ca_bundle") from exc
        except requests.RequestException as exc:
            raise IssuanceError(f"cannot reach AD CS at {self.url}: {netreason.reason(exc)}") from exc
        logger.debug("AD CS %s %s -> HTTP %s (%s)", method, url, response.status_code,
                     response.headers.get("Content-Type", ""))
        self._check_status(response, page)
        return response

    def _check_status(self, response: requests.Response, page: str) -> None:
        status = response.status_code
        if status < 400:
            return
        where = f"AD CS at {self.url} ({page})"
        if status == 401:
            who = self.options.username or "the service account"
            raise IssuanceRejected(
                f"{where} refused the credentials of {who} ({self.options.auth}, HTTP 401); not "
                "retried automatically, so a wrong password cannot lock the account",
                problem="HTTP 401 Unauthorized")
        if status == 403:
            raise IssuanceRejected(f"{where}: access denied (HTTP 403); check the account's rights "
                                   "or the client certificate", problem="HTTP 403 Forbidden")
        if status >= 500 or status in (408, 429):
            raise IssuanceError(f"{where}: server error HTTP {status}", problem=f"HTTP {status}")
        raise IssuanceRejected(f"{where}: HTTP {status}; is url the certsrv web enrollment root?",
                               problem=f"HTTP {status}")

    # -- protocol steps ------------------------------------------------------------------------

    def _submit(self, session: requests.Session, request: IssueRequest) -> Submission:
        request.progress(f"submitting the CSR to AD CS at {self.url} (template {self.options.template})")
        form = {
            "Mode": "newreq",
            "CertRequest": request.csr_pem.decode("ascii"),
            # the template only: names travel in the CSR, never as san: attributes (ESC6)
            "CertAttrib": f"CertificateTemplate:{self.options.template}\r\n",
            "FriendlyType": "Saved-Request Certificate",
            "TargetStoreFlags": "0",
            "SaveCert": "yes",
        }
        response = self._call(session, "POST", "certfnsh.asp", data=form)
        submission = parse_submission(response.text)
        logger.info("AD CS %s answered %s for request %s", self.url, submission.outcome,
                    submission.request_id, extra={"cert": request.certificate_id})
        return submission

    def _retrieve(self, session: requests.Session, request_id: int) -> x509.Certificate | Submission:
        response = self._call(session, "GET", "certnew.cer",
                              params={"ReqID": str(request_id), "Enc": "b64"})
        if response.headers.get("Content-Type", "").split(";")[0].strip() == "application/pkix-cert":
            try:
                return load_certificate(response.content)
            except ValueError as exc:
                raise IssuanceError(f"AD CS at {self.url}: certnew.cer for request {request_id} is "
                                    "not a readable certificate") from exc
        message = disposition_message(response.text) or _error_result(response.text)
        if message is None:
            if "certificate pending" in response.text.lower():
                return Submission("pending", request_id, "Taken Under Submission")
            raise IssuanceError(f"AD CS at {self.url}: unexpected answer for request {request_id}: "
                                f"{page_text(response.text)[:200]!r}")
        if _is_pending(message):
            return Submission("pending", request_id, message)
        return Submission("denied", request_id, message)

    def _chain(self, session: requests.Session, leaf: x509.Certificate, request_id: int
               ) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
        """The leaf's intermediates and root from certnew.p7b; newest CA renewal first."""
        renewals = self._renewals(session)
        for renewal in range(renewals, max(-1, renewals - 4), -1):
            pool = self._fetch_p7b(session, renewal)
            chain = build_chain(leaf, pool)
            if chain is not None:
                return chain
        raise IssuedCertificateInvalid(
            f"AD CS at {self.url}: the CA chain (certnew.p7b) does not contain the issuer "
            f"{leaf.issuer.rfc4514_string()} of request {request_id}'s certificate")

    def _renewals(self, session: requests.Session) -> int:
        page = self._call(session, "GET", "certcarc.asp").text
        match = re.search(r"var nRenewals=(\d+);", page)
        return int(match.group(1)) if match else 0

    def _fetch_p7b(self, session: requests.Session, renewal: int) -> list[x509.Certificate]:
        response = self._call(session, "GET", "certnew.p7b",
                              params={"ReqID": "CACert", "Renewal": str(renewal), "Enc": "b64"})
        try:
            return load_pkcs7(response.content)
        except ValueError as exc:
            raise IssuanceError(f"AD CS at {self.url}: certnew.p7b (renewal {renewal}) is not a "
                                "readable PKCS#7 chain") from exc

    # -- Issuer --------------------------------------------------------------------------------

    def issue(self, request: IssueRequest) -> IssueResult:
        """Submit the CSR (or poll the request a previous call left pending) and return the chain.

        Raises:
            IssuancePending: a CA manager must approve; ``checkpoint`` holds the request ID.
            IssuanceRejected: denied (``problem`` is the CA's disposition message), unsupported
                template, credentials refused, or a CSR certkeeper will not send.
            IssuedCertificateInvalid: the CA returned a certificate for another key or an
                unverifiable chain.
            IssuanceError: the CA could not be reached or failed (retryable).
        """
        csr = check_csr(request.csr_pem)
        checkpoint = dict(request.checkpoint or {})
        if checkpoint.get("request_id") is not None and checkpoint.get("url", self.url) != self.url:
            logger.warning("AD CS checkpoint is for %s, not %s: submitting again", checkpoint.get("url"),
                           self.url, extra={"cert": request.certificate_id})
            checkpoint = {}
        with self._session() as session:
            if checkpoint.get("request_id") is None:
                submission = self._submit(session, request)
                if submission.request_id is not None and submission.outcome in ("issued", "pending"):
                    # saved before fetching, so a failure below polls this request next time
                    # instead of submitting a duplicate
                    checkpoint = {"request_id": submission.request_id, "url": self.url,
                                  "template": self.options.template,
                                  "submitted_at": self.context.clock.now().isoformat()}
                    request.save_checkpoint(checkpoint)
                if submission.outcome != "issued":
                    self._not_issued(request, submission, checkpoint)
                request_id = int(checkpoint["request_id"])
            else:
                request_id = int(checkpoint["request_id"])
                request.progress(f"asking AD CS at {self.url} about request {request_id}")
            retrieved = self._retrieve(session, request_id)
            if isinstance(retrieved, Submission):
                self._not_issued(request, retrieved, checkpoint)
            leaf = retrieved
            intermediates, roots = self._chain(session, leaf, request_id)
        if leaf.public_key() != csr.public_key():
            raise IssuedCertificateInvalid(
                f"AD CS request {request_id} returned a certificate for another key than the CSR's")
        if roots:
            self._roots = roots
        details: dict[str, Any] = {"request_id": request_id, "template": self.options.template,
                                   "ca_url": self.url}
        warning = self._names_warning(request, leaf)
        if warning:
            logger.warning("%s", warning, extra={"cert": request.certificate_id})
            details["warning"] = warning
        logger.info("AD CS issued request %s (serial %x)", request_id, leaf.serial_number,
                    extra={"cert": request.certificate_id})
        return IssueResult(
            cert_pem=leaf.public_bytes(Encoding.PEM),
            chain_pem=b"".join(cert.public_bytes(Encoding.PEM) for cert in intermediates),
            details=details,
        )

    def _not_issued(self, request: IssueRequest, submission: Submission,
                    checkpoint: Mapping[str, Any]) -> NoReturn:
        """Raise what a pending, denied or unreadable answer means for the caller."""
        number = f"request {submission.request_id}" if submission.request_id is not None else "the request"
        if submission.outcome == "pending":
            if not checkpoint:
                raise IssuanceError(f"AD CS at {self.url} put the request on hold but gave no "
                                    "request ID to ask about it later", problem=submission.message)
            retry_at = self.context.clock.now() + timedelta(minutes=self.options.poll_minutes)
            request.progress(f"AD CS {number} awaits a CA manager's approval")
            raise IssuancePending(
                f"AD CS at {self.url}: {number} awaits a CA manager's approval "
                f"({submission.message}); certkeeper asks again after {retry_at:%Y-%m-%d %H:%M} UTC",
                checkpoint=checkpoint, retry_at=retry_at)
        if submission.outcome == "denied":
            if checkpoint:
                request.save_checkpoint({})  # a later attempt submits afresh
            raise IssuanceRejected(f"AD CS at {self.url} denied {number}: {submission.message}",
                                   problem=submission.message)
        raise IssuanceError(f"AD CS at {self.url}: unexpected answer to the submission: "
                            f"{submission.message!r}", problem=submission.message)

    def _names_warning(self, request: IssueRequest, leaf: x509.Certificate) -> str | None:
        requested = {name.lower().rstrip(".") for name in request.names}
        issued = _dns_names(leaf)
        if issued == requested:
            return None
        missing = sorted(requested - issued)
        extra = sorted(issued - requested)
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"not requested {', '.join(extra)}")
        return (f"AD CS template {self.options.template!r} ignored the CSR's names ({'; '.join(parts)}); "
                "it probably builds the subject from Active Directory. Use a template whose subject "
                "name is 'Supply in the request'.")

    def trust_anchors_pem(self) -> bytes:
        """The AD CS root: the ``root`` file, else the self-signed certificate of the CA chain
        (certnew.p7b), else the ``ca_bundle`` file; empty if none can be had."""
        if self.options.root is not None:
            return self.options.root.read_bytes()
        if not self._roots:
            try:
                with self._session() as session:
                    pool = self._fetch_p7b(session, self._renewals(session))
                self._roots = [cert for cert in pool if _self_signed(cert)]
            except (IssuanceError, ConfigError) as exc:
                logger.warning("cannot fetch the AD CS chain from %s: %s", self.url, exc)
        if self._roots:
            return b"".join(cert.public_bytes(Encoding.PEM) for cert in self._roots)
        if self.options.ca_bundle is not None:
            return self.options.ca_bundle.read_bytes()
        return b""
