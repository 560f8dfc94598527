"""The Public Suffix List's compact form in the data folder: same rules as a parse, never a risk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from certkeeper.errors import InvalidName
from certkeeper.hostnames import NamePolicy, normalize_name, suffixes

SAMPLES = ("com", "co.uk", "contoso.co.uk", "kobe.jp", "city.kobe.jp", "www.city.kobe.jp", "ck", "contoso.ck",
           "www.ck", "xn--p1ai", "рф", "github.io", "corp", "com.au", "a.b.c.d.e.kawasaki.jp")


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    suffixes.icann.cache_clear()
    yield
    suffixes.cache_in(None)
    suffixes.icann.cache_clear()


def _loaded(folder: Path | None) -> suffixes.PublicSuffixList:
    suffixes.icann.cache_clear()
    suffixes.cache_in(folder)
    return suffixes.icann()


def _same_as_a_parse(psl: suffixes.PublicSuffixList) -> None:
    parsed = suffixes.PublicSuffixList(only_icann=True, accept_unknown=False)
    assert psl.__dict__ == parsed.__dict__
    for name in SAMPLES:
        assert psl.publicsuffix(name) == parsed.publicsuffix(name), name
        assert psl.publicsuffix(name, accept_unknown=True) == parsed.publicsuffix(name, accept_unknown=True), name


def test_written_once_then_read_back_with_the_same_rules(tmp_path: Path) -> None:
    first = _loaded(tmp_path)
    cache = tmp_path / suffixes.CACHE_NAME
    lines = cache.read_text(encoding="utf-8").split("\n")
    assert lines[0] == suffixes._header() and lines[-1] == "end"
    assert "co.uk" in lines and "*.ck" in lines and "!www.ck" in lines and "xn--p1ai" in lines
    assert "github.io" not in lines  # the private section is not ICANN's
    stamp = cache.stat().st_mtime_ns
    second = _loaded(tmp_path)
    assert cache.stat().st_mtime_ns == stamp  # read, not rewritten
    _same_as_a_parse(first)
    _same_as_a_parse(second)


@pytest.mark.parametrize("content", [
    "",
    "certkeeper-public-suffixes-icann-v1 0.0.1 0000\ncom\nend",  # another list or package version
    "{header}\ncom\nco.uk",  # cut short: no closing line
    "{header}\nend",  # no rules
    "\xff\xfe garbage",
])
def test_a_stale_or_damaged_cache_is_parsed_again_and_replaced(tmp_path: Path, content: str) -> None:
    cache = tmp_path / suffixes.CACHE_NAME
    cache.write_text(content.format(header=suffixes._header()), encoding="utf-8", errors="surrogateescape")
    _same_as_a_parse(_loaded(tmp_path))
    assert cache.read_text(encoding="utf-8").split("\n")[0] == suffixes._header()


def test_not_valid_utf8_is_parsed_again(tmp_path: Path) -> None:
    (tmp_path / suffixes.CACHE_NAME).write_bytes(b"\xff\xfe\x00 not text")
    _same_as_a_parse(_loaded(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_data_folder_still_works(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        _same_as_a_parse(_loaded(tmp_path))
        assert not (tmp_path / suffixes.CACHE_NAME).exists()
    finally:
        tmp_path.chmod(0o700)


def test_a_folder_that_is_gone_still_works(tmp_path: Path) -> None:
    _same_as_a_parse(_loaded(tmp_path / "missing"))


def test_without_a_data_folder_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _same_as_a_parse(_loaded(None))
    assert list(tmp_path.iterdir()) == []


def test_names_are_judged_the_same_through_the_cache(tmp_path: Path) -> None:
    _loaded(tmp_path)
    _loaded(tmp_path)  # the second load reads the file
    assert normalize_name("mail.contoso.co.uk", policy=NamePolicy.PUBLIC) == "mail.contoso.co.uk"
    for refused in ("co.uk", "*.co.uk", "*.contoso.ck", "mail.contoso.corp"):
        with pytest.raises(InvalidName):
            normalize_name(refused, policy=NamePolicy.PUBLIC)
