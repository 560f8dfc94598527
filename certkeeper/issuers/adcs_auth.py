"""HTTP authentication for AD CS web enrollment: NTLM and Negotiate (Kerberos) over pyspnego.

IIS authenticates NTLM and Negotiate per *connection*: the 401 challenge, our answer and the final
request must travel on one TCP connection. :class:`SpnegoAuth` therefore answers a 401 by
re-sending on the connection that received it (the pattern requests-ntlm uses), and binds the
authentication to the server's TLS certificate (channel binding, RFC 5929 ``tls-server-end-point``)
so a CA that enforces Extended Protection for Authentication accepts it; that is the mitigation
for NTLM relay to ``/certsrv`` (ESC8, https://learn.microsoft.com/defender-for-identity/security-assessment-insecure-adcs-certificate-enrollment).

pyspnego picks the platform's mechanism: SSPI on Windows (Kerberos as the service account when no
password is given), GSSAPI where python-gssapi is installed, else its built-in NTLM.
"""

from __future__ import annotations

import base64
import logging
from typing import Any, Literal

import requests
import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from requests.auth import AuthBase
from spnego.channel_bindings import GssChannelBindings

logger = logging.getLogger(__name__)

Protocol = Literal["ntlm", "negotiate"]
_SCHEMES: dict[Protocol, str] = {"ntlm": "NTLM", "negotiate": "Negotiate"}
#: NTLM needs three legs; Kerberos one; a few more for servers that ask again
_MAX_LEGS = 5


class AuthenticationFailed(Exception):
    """The local security package refused to produce a token (bad input, no Kerberos ticket)."""


def tls_server_end_point(cert_der: bytes) -> bytes:
    """RFC 5929 §4.1 channel-binding data: the server certificate's hash, with the certificate's
    own signature hash except that MD5 and SHA-1 become SHA-256."""
    cert = x509.load_der_x509_certificate(cert_der)
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert_der)
    return b"tls-server-end-point:" + digest.finalize()


def _peer_certificate(response: requests.Response) -> bytes | None:
    """The DER certificate of the TLS peer that sent ``response``, while its connection is open."""
    raw: Any = response.raw
    for path in (("connection", "sock"), ("_fp", "fp", "raw", "_sock")):
        target: Any = raw
        for attribute in path:
            target = getattr(target, attribute, None)
            if target is None:
                break
        getpeercert = getattr(target, "getpeercert", None)
        if getpeercert is not None:
            try:
                der = getpeercert(binary_form=True)
            except (OSError, ValueError):
                return None
            return der if isinstance(der, bytes) else None
    return None


def _challenge(response: requests.Response, scheme: str) -> bytes | Literal[False] | None:
    """The token in ``WWW-Authenticate: <scheme> <token>``; None if the scheme is offered bare;
    False if the server does not offer the scheme at all."""
    header = response.headers.get("WWW-Authenticate", "")
    for part in header.split(","):
        words = part.strip().split(None, 1)
        if words and words[0].lower() == scheme.lower():
            if len(words) == 1:
                return None
            try:
                return base64.b64decode(words[1].strip())
            except ValueError:
                return None
    return False


class SpnegoAuth(AuthBase):
    """requests authentication for ``WWW-Authenticate: NTLM`` or ``Negotiate``.

    Args:
        username: ``DOMAIN\\user`` or ``user@realm``; None to use the process's own credentials
            (Kerberos ticket cache, or the Windows logon of the service account).
        password: None with ``username`` None.
        protocol: ``ntlm`` or ``negotiate`` (Kerberos, falling back to NTLM inside SPNEGO).
        hostname: the CA web server's host name, for the Kerberos service principal ``HTTP/host``.
    """

    def __init__(self, username: str | None, password: str | None, *, protocol: Protocol,
                 hostname: str) -> None:
        self._username = username
        self._password = password
        self.protocol = protocol
        self.scheme = _SCHEMES[protocol]
        self.hostname = hostname

    def __repr__(self) -> str:  # never show the password
        return f"SpnegoAuth(username={self._username!r}, protocol={self.protocol!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.register_hook("response", self._on_response)  # type: ignore[no-untyped-call]
        return request

    def _context(self, response: requests.Response) -> Any:
        peer = _peer_certificate(response)
        bindings = (GssChannelBindings(application_data=tls_server_end_point(peer))
                    if peer is not None else None)
        try:
            return spnego.client(self._username, self._password, hostname=self.hostname,
                                 service="HTTP", protocol=self.protocol, channel_bindings=bindings)
        except spnego.exceptions.SpnegoError as exc:
            raise AuthenticationFailed(f"{self.scheme}: cannot start authentication: {exc}") from exc

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401 or _challenge(response, self.scheme) is False:
            return response
        sent_authorization = str(response.request.headers.get("Authorization", ""))
        if sent_authorization.startswith(self.scheme):
            return response  # a request we already authenticated was refused: let the caller see it
        context = self._context(response)
        history = [response]
        incoming: bytes | None = None
        current = response
        for _leg in range(_MAX_LEGS):
            try:
                outgoing = context.step(incoming)
            except spnego.exceptions.SpnegoError as exc:
                raise AuthenticationFailed(f"{self.scheme}: authentication failed: {exc}") from exc
            if outgoing is None:
                break
            # Drain and return the connection to the pool, so the next send reuses it (the
            # handshake is bound to this connection).
            _ = current.content
            current.raw.release_conn()
            retry = current.request.copy()
            retry.headers["Authorization"] = f"{self.scheme} {base64.b64encode(outgoing).decode()}"
            logger.debug("%s authentication leg to %s", self.scheme, retry.url)
            connection: Any = response.connection
            sent: requests.Response = connection.send(retry, **kwargs)
            if current is not response:
                history.append(current)
            current = sent
            if current.status_code != 401:
                break
            incoming_or_flag = _challenge(current, self.scheme)
            if not isinstance(incoming_or_flag, bytes) or context.complete:
                break  # refused: a bare challenge again means the credentials were not accepted
            incoming = incoming_or_flag
        # Kerberos mutual authentication: the last 200 may carry the server's token
        final_token = _challenge(current, self.scheme)
        if current.status_code != 401 and isinstance(final_token, bytes) and not context.complete:
            try:
                context.step(final_token)
            except spnego.exceptions.SpnegoError as exc:
                raise AuthenticationFailed(f"{self.scheme}: server failed mutual authentication") from exc
        current.history = history + list(current.history)
        return current
