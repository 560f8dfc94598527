"""http-01 solvers: a standalone listener, or files under a web server's root (RFC 8555 §8.3)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, cast

from certkeeper.errors import IssuanceError
from certkeeper.listen import dual_stack_server

log = logging.getLogger(__name__)

PREFIX = "/.well-known/acme-challenge/"

#: IIS serves no extensionless static file unless a MIME map says so; this one is scoped to the
#: challenge folder and removed with the tokens.
IIS_WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <staticContent>
      <clear />
      <mimeMap fileExtension="." mimeType="text/plain" />
    </staticContent>
    <handlers>
      <clear />
      <add name="StaticFile" path="*" verb="*" modules="StaticFileModule"
           resourceType="Either" requireAccess="Read" />
    </handlers>
  </system.webServer>
</configuration>
"""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], backlog: int) -> None:
        self.request_queue_size = backlog
        self.tokens: dict[str, bytes] = {}
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        body = None
        if self.path.startswith(PREFIX):
            body = self.server.tokens.get(self.path[len(PREFIX):])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http-01 listener: " + format, *args)


class _Listener:
    """One listener per (address, port), shared by concurrent orders, up while tokens exist."""

    _lock = threading.Lock()
    _running: ClassVar[dict[tuple[str, int], tuple[_Server, threading.Thread]]] = {}

    @classmethod
    def add(cls, address: str, port: int, backlog: int, token: str, body: bytes) -> None:
        with cls._lock:
            entry = cls._running.get((address, port))
            if entry is None:
                try:
                    # a wildcard address (the default 0.0.0.0) listens on IPv6 too: the CA may
                    # validate over either (Let's Encrypt prefers IPv6 when the name has AAAA)
                    server = cast(_Server, dual_stack_server(_Server, address, port, _Handler, backlog=backlog))
                except OSError as exc:
                    raise IssuanceError(
                        f"http-01: cannot listen on {address}:{port}: {exc.strerror}") from exc
                # the poll interval is how long remove()'s shutdown() waits for the loop to notice:
                # 10 ms, only while an order is being validated
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                          name=f"http01-{port}", daemon=True)
                thread.start()
                entry = (server, thread)
                cls._running[(address, port)] = entry
                log.debug("http-01 listener up on %s:%d", address, port)
            entry[0].tokens[token] = body

    @classmethod
    def remove(cls, address: str, port: int, token: str) -> None:
        with cls._lock:
            entry = cls._running.get((address, port))
            if entry is None:
                return
            server, thread = entry
            server.tokens.pop(token, None)
            if server.tokens:
                return
            del cls._running[(address, port)]
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            log.debug("http-01 listener on %s:%d closed", address, port)


class StandaloneHttp01:
    """Serves ``/.well-known/acme-challenge/<token>`` and nothing else, only while needed."""

    challenge_type: ClassVar[str] = "http-01"

    def __init__(self, address: str = "0.0.0.0", port: int = 80, backlog: int = 256) -> None:  # noqa: S104
        self.address = address
        self.port = port
        self.backlog = backlog

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        _Listener.add(self.address, self.port, self.backlog, token, key_authorization.encode())

    def cleanup(self, domain: str, token: str, key_authorization: str) -> None:
        _Listener.remove(self.address, self.port, token)


class WebrootHttp01:
    """Writes ``<webroot>/.well-known/acme-challenge/<token>`` for an existing web server.

    For IIS (``C:\\inetpub\\wwwroot``) it also writes a ``web.config`` in the challenge folder so
    extensionless files are served. It removes the files, and the folders it created, afterwards.
    """

    challenge_type: ClassVar[str] = "http-01"
    _lock = threading.Lock()
    _users: ClassVar[dict[Path, int]] = {}

    def __init__(self, webroot: Path, iis_web_config: bool = True) -> None:
        self.webroot = webroot
        self.iis_web_config = iis_web_config
        self.folder = webroot / ".well-known" / "acme-challenge"

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        if "/" in token or "\\" in token or token in ("", ".", ".."):
            raise IssuanceError(f"http-01: refusing a malformed token for {domain}")
        if not self.webroot.is_dir():
            raise IssuanceError(f"http-01: webroot {self.webroot} is not a folder")
        try:
            with self._lock:
                self.folder.mkdir(parents=True, exist_ok=True)
                if self._users.get(self.folder, 0) == 0:
                    config = self.folder / "web.config"
                    if self.iis_web_config and not config.exists():
                        config.write_text(IIS_WEB_CONFIG, encoding="utf-8")
                self._users[self.folder] = self._users.get(self.folder, 0) + 1
            path = self.folder / token
            path.write_bytes(key_authorization.encode())
            os.chmod(path, 0o644)
        except OSError as exc:
            raise IssuanceError(f"http-01: cannot write under {self.webroot}: {exc.strerror}") from exc

    def cleanup(self, domain: str, token: str, key_authorization: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / token).unlink()
        with self._lock:
            users = self._users.get(self.folder, 1) - 1
            self._users[self.folder] = users
            if users > 0:
                return
            del self._users[self.folder]
            config = self.folder / "web.config"
            ours = config.exists() and config.read_text(encoding="utf-8") == IIS_WEB_CONFIG
            if self.iis_web_config and ours:
                config.unlink()
            for folder in (self.folder, self.folder.parent):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty: never remove what someone else put there
