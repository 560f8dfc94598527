"""``certkeeper issue`` killed with SIGKILL while the CA validates its answered challenges, then run
again: the rerun serves the token again and waits for the CA instead of answering a second time
(Pebble would answer "malformed: Cannot update challenge with status processing"), so the CA
sees one order and issues one certificate, and the store keeps one.

Pebble runs with its validation sleeps on (``PEBBLE_VA_NOSLEEP`` empty, ``PEBBLE_VA_SLEEPTIME=10``:
each of its three validation attempts per challenge sleeps 0-9 s first). The challenge is dns-01
through a hook script writing to pebble-challtestsrv, so the TXT record outlives the killed
process (a standalone http-01 listener dies with it: the CA may fail that validation, and the
rerun then places a new order). "Challenges answered" is the CLI's ``validation`` progress line,
printed right after the last challenge POST; the CA's side is counted from Pebble's own log.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.core import REPO_ROOT, run_cli
from tests.fixtures.pebble import ChallTestSrv, Pebble, PebbleFactory

pytestmark = pytest.mark.e2e

NAMES = ("mail.slowca.test", "autodiscover.slowca.test")

HOOK = """#!{python}
import json, sys, urllib.request
action, fqdn, value = sys.argv[1:4]
body = {{"host": fqdn, "value": value}} if action == "present" else {{"host": fqdn}}
request = urllib.request.Request("http://127.0.0.1:{port}/" + ("set-txt" if action == "present" else "clear-txt"),
                                 data=json.dumps(body).encode())
urllib.request.urlopen(request, timeout=5).read()
"""


@pytest.fixture(scope="module")
def slow_pebble(pebble_factory: PebbleFactory, challtestsrv: ChallTestSrv) -> Pebble:
    """A Pebble whose validations take a random 0-9 s, as a real CA's may."""
    return pebble_factory.start(dns_server=challtestsrv.dns_address, name="pebble-slow-va",
                                env={"PEBBLE_VA_NOSLEEP": "", "PEBBLE_VA_SLEEPTIME": "10"})


def setup_home(tmp_path: Path, pebble: Pebble, challtestsrv: ChallTestSrv) -> dict[str, str]:
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK.format(python=sys.executable, port=challtestsrv.management_port))
    hook.chmod(0o755)
    (tmp_path / "certkeeper.toml").write_text(f"""
[issuers.pebble]
type = "acme"
directory = "{pebble.directory}"
contact = ["mailto:exchange-admins@slowca.test"]
agree_tos = true
ca_bundle = "{pebble.ca_bundle}"
public_names_only = false
challenge = "dns-01"
[issuers.pebble.dns01]
mode = "exec"
script = "{hook}"
cname_delegation = false
""")
    return {"CERTKEEPER_DATA_DIR": str(tmp_path / "data"), "CERTKEEPER_CONFIG": str(tmp_path / "certkeeper.toml")}


def kill_when_challenges_are_answered(env: dict[str, str]) -> list[str]:
    """Run ``certkeeper issue`` and SIGKILL it as soon as it prints ``validation``; its lines."""
    full_env = dict(os.environ) | env
    full_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env["PYTHONUNBUFFERED"] = "1"  # each progress line reaches the pipe when printed
    process = subprocess.Popen([sys.executable, "-m", "certkeeper", "issue", *NAMES, "--issuer", "pebble"],
                               env=full_env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip() == "validation":
                os.killpg(process.pid, signal.SIGKILL)
                break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert "  validation" in lines, f"the CLI ended before answering its challenges: {lines}"
    assert process.returncode == -signal.SIGKILL
    return lines


def order_ids(pebble: Pebble) -> list[str]:
    return re.findall(r'Added order "([^"]+)"', pebble.log())


def issued_for(pebble: Pebble) -> list[str]:
    """Order ids Pebble issued a certificate for."""
    return re.findall(r"Issued certificate serial \S+ for order (\S+)", pebble.log())


def validations(pebble: Pebble) -> tuple[int, int]:
    """(validations Pebble started, validations it finished) so far."""
    log = pebble.log()
    return (len(re.findall(r"Pulled a task from the Tasks queue", log)),
            len(re.findall(r"authz \S+ set (?:VALID|INVALID) by completed challenge", log)))


def stored(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "data" / "certkeeper.db") as db:
        return list(db.execute("select state, serial from revisions order by number"))


@pytest.mark.parametrize("wait", ["at-once", "after-the-ca-finished"])
def test_killed_while_the_ca_validates_then_rerun(slow_pebble: Pebble, challtestsrv: ChallTestSrv,
                                                 tmp_path: Path, wait: str) -> None:
    env = setup_home(tmp_path, slow_pebble, challtestsrv)
    orders_before, issued_before = len(order_ids(slow_pebble)), len(issued_for(slow_pebble))
    started_before, _ = validations(slow_pebble)

    kill_when_challenges_are_answered(env)
    assert len(order_ids(slow_pebble)) == orders_before + 1
    order_id = order_ids(slow_pebble)[-1]
    if wait == "after-the-ca-finished":
        # a delay as long as the CA needs: both authorizations are valid when the rerun comes
        deadline = time.monotonic() + 120
        while True:
            started, finished = validations(slow_pebble)
            if started >= started_before + len(NAMES) and finished == started:
                break
            assert time.monotonic() < deadline, "Pebble did not finish validating"
            time.sleep(0.2)

    done = run_cli("issue", *NAMES, "--issuer", "pebble", env=env, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "resuming" in output and "Cannot update challenge" not in output
    if wait == "at-once":
        # the CA is still validating (almost always: it would need six sleeps of <= 1 s to be
        # done before the rerun looks); the answered challenge is waited for, not answered again
        assert ("already answered, the CA is validating" in output
                or "order (resuming ready order)" in output), output
    else:
        assert "order (resuming ready order)" in output, output

    # the CA's side: one order (the first run's), one certificate, for that order
    assert order_ids(slow_pebble)[orders_before:] == [order_id]
    assert issued_for(slow_pebble)[issued_before:] == [order_id]
    # our side: one issued revision
    revisions = stored(tmp_path)
    assert [state for state, _serial in revisions] == ["issued"], revisions
    assert not re.search(r"set INVALID", slow_pebble.log().split(f'Added order "{order_id}"', 1)[1])
