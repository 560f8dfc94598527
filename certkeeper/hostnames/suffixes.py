"""The ICANN section of the Public Suffix List, parsed once and kept in a compact form.

``publicsuffixlist`` parses its 330 KB list on every start, IDNA-encoding each rule (about 50 ms,
more than the rest of ``certkeeper list``). What that parse produces, the ICANN rules in both
their Unicode and A-label forms, is kept one per line in ``public-suffixes.txt`` in the data
folder, headed by the version of ``publicsuffixlist`` and the SHA-256 of the list it came from: a
new package or a changed list is parsed again and the file rewritten. Read back through the
library's own parser, with nothing left to encode, it takes a few milliseconds and gives the same
rules (checked before the file is written).

The file is only a cache: missing, unreadable, from another list, malformed or unwritable (a
read-only data folder), the list is parsed as before. Without :func:`cache_in` (commands that
open no store) nothing is written.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import publicsuffixlist
from publicsuffixlist import PublicSuffixList

log = logging.getLogger(__name__)

CACHE_NAME = "public-suffixes.txt"
#: first word of the cache's first line (then the package version and the list's SHA-256)
FORMAT = "certkeeper-public-suffixes-icann-v1"

_folder: Path | None = None


def cache_in(folder: Path | None) -> None:
    """Keep the compact form in ``folder`` (the data folder) from now on; None: nowhere."""
    global _folder
    _folder = folder


def _header() -> str:
    """What the cache must start with to hold this package's parse of this list."""
    with open(publicsuffixlist.PSLFILE, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return f"{FORMAT} {getattr(publicsuffixlist, '__version__', '?')} {digest}"


def _parse() -> PublicSuffixList:
    return PublicSuffixList(only_icann=True, accept_unknown=False)


def _from_rules(rules: list[str]) -> PublicSuffixList:
    # the rules are final (lower-case, Unicode and A-label forms both present): nothing to encode
    return PublicSuffixList(source=rules, only_icann=False, accept_encoded_idn=False, accept_unknown=False)


def _read(path: Path, header: str) -> PublicSuffixList | None:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    # header, at least one rule, and the closing line (a file cut short by a full disk has none)
    if len(lines) < 3 or lines[0] != header or lines[-1] != "end":
        return None
    return _from_rules(lines[1:-1])


def _write(path: Path, header: str, suffixes: PublicSuffixList) -> None:
    rules = getattr(suffixes, "_publicsuffix", None)
    if not isinstance(rules, frozenset) or not rules:
        return  # another publicsuffixlist layout: keep parsing, never guess
    text = "\n".join([header, *sorted(rules), "end"])
    if _from_rules(text.split("\n")[1:-1]).__dict__ != suffixes.__dict__:
        return  # what would be read back differs from the parse: do not cache it
    # written in place, no rename: a reader that finds it half-written (no closing line) parses
    # the list instead, and two processes writing at once write the same bytes
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)


@functools.cache
def icann() -> PublicSuffixList:
    """The ICANN rules (unknown TLDs are not suffixes), loaded once per process."""
    folder = _folder
    if folder is None:
        return _parse()
    try:
        header = _header()
    except OSError:
        return _parse()
    path = folder / CACHE_NAME
    cached = _read(path, header)
    if cached is not None:
        return cached
    suffixes = _parse()
    try:
        _write(path, header, suffixes)
    except OSError as exc:  # a read-only or full data folder: parse again next time
        log.debug("cannot keep the public suffixes in %s: %s", path, exc)
    return suffixes
