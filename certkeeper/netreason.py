"""Why a network request failed, in a few words an administrator reads at once.

requests and urllib3 wrap the socket's error in several layers (``HTTPSConnectionPool(host=...,
port=...): Max retries exceeded ... (Caused by NewConnectionError(...))``). :func:`reason` walks
the chain of causes to the error that says what happened: ``connection refused``, ``timed out``,
``the host name does not resolve``, ``its TLS certificate is not trusted (...)``.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl

_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "no route to the host",
    errno.ENETUNREACH: "the network is unreachable",
    errno.ECONNRESET: "the connection was reset",
    errno.ECONNABORTED: "the connection was aborted",
}
_ERRNO_TEXT = re.compile(r"\[Errno (-?\d+)\] ([^'\")]+)")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None),
                       *[arg for arg in current.args if isinstance(arg, BaseException)]):
            if isinstance(nested, BaseException):
                todo.append(nested)
    return seen


def reason(exc: BaseException) -> str:
    """The cause of a failed request in words (never a URL's credentials: only the cause)."""
    chain = _chain(exc)
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"its TLS certificate is not trusted ({item.verify_message or item.reason})"
    for item in chain:
        if isinstance(item, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(item, TimeoutError | socket.timeout):
            return "timed out"
        if isinstance(item, ssl.SSLError):
            return f"TLS failed ({item.reason or item.__class__.__name__})"
        if isinstance(item, OSError) and item.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[item.errno]
    for item in chain:  # some layers keep only the text of the socket's error
        if "timed out" in str(item).lower() or type(item).__name__.endswith("Timeout"):
            return "timed out"
        match = _ERRNO_TEXT.search(str(item))
        if match:
            number = int(match.group(1))
            return _ERRNO_WORDS.get(number, match.group(2).strip().lower())
        if "name or service not known" in str(item).lower() or "nodename nor servname" in str(item).lower():
            return "the host name does not resolve"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
