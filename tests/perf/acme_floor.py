"""The floor: what the bare ``acme`` library reaches on the same Pebble, with nothing of certkeeper.

Run as a script (one process = one CLI-like issuance, for goal 1's floor):

    python tests/perf/acme_floor.py DIRECTORY CA_BUNDLE HTTP_PORT STATE_FILE KEY_TYPE NAME...

or imported (:func:`issue_many`, goal 3's "bare acme-library loop"). It does what any careful
client must: an ES256 account registered once (kept in STATE_FILE), one order per certificate,
http-01 answered by a small threaded HTTP server on Pebble's http-01 port, polling from 25 ms
(``acme``'s own ``poll_and_finalize`` sleeps about a second per order by design), a fresh key and
CSR per certificate, and the chain downloaded. No store, no config, no checks.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import josepy
from acme import client, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

TOKENS: dict[str, bytes] = {}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = TOKENS.get(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops connections when many parallel orders validate at once
    request_queue_size = 128
    daemon_threads = True


def serve_http01(port: int) -> _Server:
    server = _Server(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def account(directory_url: str, ca_bundle: str, state: Path) -> client.ClientV2:
    """A client with an ES256 account: loaded from ``state``, else registered and saved there."""
    saved = json.loads(state.read_text()) if state.is_file() else None
    if saved is not None:
        key = josepy.JWK.json_loads(saved["key"])
    else:
        key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=josepy.ES256, verify_ssl=ca_bundle, user_agent="floor")  # type: ignore[arg-type]
    directory = messages.Directory.from_json(net.get(directory_url).json())
    acme = client.ClientV2(directory, net)
    if saved is not None:
        net.account = messages.RegistrationResource(uri=saved["url"], body=messages.Registration())
    else:
        registration = acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        state.write_text(json.dumps({"key": key.json_dumps(), "url": registration.uri}))
    return acme


def _status(resource: Any) -> str:
    return str(resource.status.name)


def _poll(acme: client.ClientV2, url: str, pending: Sequence[str], decode: Any) -> Any:
    delay = 0.025
    while True:
        body = decode(acme._post_as_get(url).json())
        if _status(body) not in pending:
            return body
        time.sleep(delay)
        delay = min(delay * 1.6, 1.0)


def issue(acme: client.ClientV2, names: Sequence[str], key_type: str = "rsa2048") -> str:
    """One certificate for ``names``: key, CSR, order, http-01, finalize, download; the PEM chain."""
    key: Any = rsa.generate_private_key(65537, 2048) if key_type == "rsa2048" else ec.generate_private_key(
        ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
           .sign(key, hashes.SHA256()))
    payload = messages.NewOrder(identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name)
                                             for name in names])
    response = acme._post(acme.directory["newOrder"], payload)
    order_url = response.headers["Location"]
    order = messages.Order.from_json(response.json())
    account_key = acme.net.key
    answered = []
    for url in order.authorizations:
        authorization = messages.Authorization.from_json(acme._post_as_get(url).json())
        challenge = next(c for c in authorization.challenges if c.chall.typ == "http-01")
        TOKENS[challenge.chall.encode("token")] = challenge.chall.key_authorization(account_key).encode()
        acme._post(challenge.uri, challenge.chall.response(account_key))
        answered.append(url)
    for url in answered:
        authorization = _poll(acme, url, ("pending",), messages.Authorization.from_json)
        assert _status(authorization) == "valid", authorization
    _poll(acme, order_url, ("pending",), messages.Order.from_json)
    finalized = acme._post(order.finalize, messages.CertificateRequest(csr=csr))
    order = messages.Order.from_json(finalized.json())
    if _status(order) != "valid":
        order = _poll(acme, order_url, ("processing",), messages.Order.from_json)
    pem = acme._post_as_get(order.certificate).text
    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return str(pem)


def issue_many(acme: client.ClientV2, batches: Sequence[Sequence[str]], workers: int = 20) -> list[str]:
    """Every certificate of ``batches`` at once, ``workers`` in parallel (goal 3's floor loop)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(issue, [acme] * len(batches), batches))


def main(argv: Sequence[str]) -> None:
    directory_url, ca_bundle, port, state, key_type, *names = argv
    serve_http01(int(port))  # a daemon thread: it ends with the process (shutdown() waits up to 0.5 s)
    pem = issue(account(directory_url, ca_bundle, Path(state)), names, key_type)
    assert pem.startswith("-----BEGIN CERTIFICATE-----")


if __name__ == "__main__":
    main(sys.argv[1:])
