"""The other clients the benchmarks measure certkeeper against, on the same Pebble, in the same run.

* certbot, installed with pip into its own venv (``$CERTKEEPER_PERF_CERTBOT_VENV``, default
  ``/tmp/certkeeper-perf/certbot-venv``, kept between runs); the benchmark skips with a message if
  it cannot be installed (no network, no package index).
* lego, Debian's package (``apt-get install lego``); skipped with a message if it is not on PATH.
* the bare ``acme`` floor (:mod:`tests.perf.acme_floor`), in this interpreter.

Each run is a subprocess timed from ``Popen`` to its exit, with its own peak RSS read from
``os.wait4`` (per child, unlike ``RUSAGE_CHILDREN``, which keeps the largest child so far).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.core import REPO_ROOT
from tests.fixtures.pebble import Pebble

CERTBOT_VENV = Path(os.environ.get("CERTKEEPER_PERF_CERTBOT_VENV", "/tmp/certkeeper-perf/certbot-venv"))
#: an older certkeeper source tree to measure beside this one, as "before" (see the README,
#: "Performance"): ``git archive <commit> | tar -x -C DIR``, with its migrations/ copied to
#: DIR/certkeeper/migrations so that it finds its own, not this checkout's
BEFORE = Path(os.environ["CERTKEEPER_PERF_BEFORE"]) if os.environ.get("CERTKEEPER_PERF_BEFORE") else None
CONTACT = "perf@contoso.test"
#: GNU time measures a command's own peak RSS (see :func:`run`); without it the figures are upper bounds
TIME = "/usr/bin/time" if Path("/usr/bin/time").is_file() else None


@dataclass
class Samples:
    """Wall seconds and peak RSS (MB) of the runs of one command."""

    walls: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    def line(self, name: str) -> str:
        return (f"  {name:<24} median {self.median:6.3f} s  [{min(self.walls):.3f}-{max(self.walls):.3f}]  "
                f"peak RSS median {statistics.median(self.rss_mb):5.1f} MB (max {max(self.rss_mb):.1f})")


def run(argv: Sequence[str], env: dict[str, str], samples: Samples | None = None, *,
        cwd: Path = REPO_ROOT) -> Samples:
    """Run ``argv`` to completion; add its wall time and peak RSS to ``samples``. Fails on a non-zero exit."""
    samples = samples if samples is not None else Samples()
    with tempfile.TemporaryDirectory() as folder:
        rss_file = Path(folder) / "rss"
        # A child forked from this (large) pytest process starts with its pages: its own peak RSS
        # (wait4, RUSAGE_CHILDREN) would never read below this process's. GNU time, small once
        # exec'd, forks the measured command itself and writes its peak RSS (KB).
        timed = [TIME, "-f", "%M", "-o", str(rss_file), *argv] if TIME else list(argv)
        with open(Path(folder) / "out", "wb") as out, open(Path(folder) / "err", "wb") as err:  # no pipe to fill
            start = time.perf_counter()
            process = subprocess.Popen(timed, env=env, cwd=cwd, stdout=out, stderr=err)
            _pid, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - start
        code = process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        assert code == 0, f"{argv[0]} failed ({code}): {(Path(folder) / 'err').read_text(errors='replace')[-2000:]}"
        rss_kb = int(rss_file.read_text().split()[-1]) if TIME else usage.ru_maxrss
    samples.walls.append(wall)
    samples.rss_mb.append(rss_kb / 1024)
    return samples


def certbot_binary() -> Path:
    """certbot in its own venv: installed on first use, kept for later runs; skip if impossible."""
    binary = CERTBOT_VENV / "bin" / "certbot"
    if binary.exists():
        return binary
    try:
        CERTBOT_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(CERTBOT_VENV)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(CERTBOT_VENV / "bin" / "pip"), "install", "-q", "certbot"], check=True,
                       capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        shutil.rmtree(CERTBOT_VENV, ignore_errors=True)
        pytest.skip(f"certbot could not be installed into {CERTBOT_VENV} ({type(exc).__name__}): "
                    f"{detail.decode(errors='replace')[-300:]}")
    return binary


def certbot_version(binary: Path) -> str:
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    return (done.stdout or done.stderr).strip()


def lego_binary() -> str:
    found = shutil.which("lego")
    if found is None:
        pytest.skip("lego is not installed (Debian: apt-get install lego)")
    return found


def lego_version(binary: str) -> str:
    if shutil.which("dpkg-query"):
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "lego"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            return f"lego {done.stdout.strip()} (Debian package)"
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def certkeeper_env(home: Path, source: Path = REPO_ROOT) -> dict[str, str]:
    """The environment of ``python -m certkeeper`` from ``source`` (run it with ``cwd=source``:
    ``-m`` puts the working folder first on the path)."""
    return dict(os.environ, PYTHONPATH=str(source), CERTKEEPER_DATA_DIR=str(home / "data"),
                CERTKEEPER_CONFIG=str(home / "certkeeper.toml"))


def certkeeper_config(pebble: Pebble, extra: str = "") -> str:
    return f"""
[issuers.pebble]
type = "acme"
directory = "{pebble.directory}"
contact = ["mailto:{CONTACT}"]
agree_tos = true
ca_bundle = "{pebble.ca_bundle}"
public_names_only = false
[issuers.pebble.http01]
address = "127.0.0.1"
port = {pebble.http_port}
{extra}"""


def certkeeper_issue(names: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "certkeeper", "issue", *names, "--issuer", "pebble"]


def certbot_issue(binary: Path, pebble: Pebble, folder: Path, names: Sequence[str]) -> list[str]:
    domains = [arg for name in names for arg in ("-d", name)]
    return [str(binary), "certonly", "--standalone", "--http-01-port", str(pebble.http_port),
            "--http-01-address", "127.0.0.1", "--server", pebble.directory, *domains, "--agree-tos", "-m", CONTACT,
            "--no-eff-email", "--non-interactive", "--config-dir", str(folder / "config"),
            "--work-dir", str(folder / "work"), "--logs-dir", str(folder / "logs"),
            "--key-type", "rsa", "--rsa-key-size", "2048", "-q"]


def certbot_env(pebble: Pebble) -> dict[str, str]:
    return dict(os.environ, REQUESTS_CA_BUNDLE=str(pebble.ca_bundle))


def lego_issue(binary: str, pebble: Pebble, folder: Path, names: Sequence[str]) -> list[str]:
    domains = [arg for name in names for arg in ("--domains", name)]
    return [binary, "--server", pebble.directory, "--email", CONTACT, "--accept-tos", *domains, "--http",
            "--http.port", f"127.0.0.1:{pebble.http_port}", "--path", str(folder), "--key-type", "rsa2048", "run"]


def lego_env(pebble: Pebble) -> dict[str, str]:
    return dict(os.environ, LEGO_CA_CERTIFICATES=str(pebble.ca_bundle))


def floor_issue(pebble: Pebble, state: Path, names: Sequence[str]) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "tests" / "perf" / "acme_floor.py"), pebble.directory,
            str(pebble.ca_bundle), str(pebble.http_port), str(state), "rsa2048", *names]
