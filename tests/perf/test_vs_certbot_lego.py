"""Issue 14, goals 1 and 2: certkeeper against certbot and lego, same Pebble, same run.

Run: ``python -m pytest tests/perf/test_vs_certbot_lego.py -s -p no:cacheprovider`` (certbot is
installed into its own venv on first use, lego is Debian's; see :mod:`tests.perf.tools`).

1. One 2-name certificate from the command line (RSA 2048 keys everywhere, an account registered
   beforehand by a warm-up run of each tool): certkeeper, certbot, lego and the bare ``acme``
   floor take turns, 5 rounds, medians and spread printed with the ratios. Targets: >= 4x faster
   than certbot, >= 16x faster than lego, peak memory <= 60 MB.
2. ``certkeeper list`` over 20 certificates issued from Pebble against ``certbot certificates``
   over 20, alternating, 7 runs each. Target: no slower. (``--help`` and ``list`` of 10,000 are
   in test_cli_perf.py.)

With ``CERTKEEPER_PERF_BEFORE`` naming an older source tree (see tests/perf/tools.py), that
certkeeper takes its turns too, as "before". Figures are printed, never asserted: a run only
fails if a tool fails.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.pebble import Pebble
from tests.perf import tools

ROUNDS = 5
LIST_RUNS = 7


def test_one_issuance_against_certbot_and_lego(pebble: Pebble, tmp_path: Path) -> None:
    certbot = tools.certbot_binary()
    lego = tools.lego_binary()
    homes = {"": (tmp_path / "certkeeper", tools.REPO_ROOT)}
    if tools.BEFORE is not None:
        homes[" (before)"] = (tmp_path / "certkeeper-before", tools.BEFORE)
    state = tmp_path / "floor-account.json"
    runs: dict[str, Callable[[list[str]], tuple[list[str], dict[str, str], Path]]] = {}
    for suffix, (home, source) in homes.items():
        home.mkdir()
        (home / "certkeeper.toml").write_text(tools.certkeeper_config(pebble))
        runs[f"certkeeper issue{suffix}"] = lambda names, home=home, source=source: (
            tools.certkeeper_issue(names), tools.certkeeper_env(home, source), source)
    runs.update({
        "certbot certonly": lambda names: (tools.certbot_issue(certbot, pebble, tmp_path / "certbot", names),
                                           tools.certbot_env(pebble), tmp_path),
        "lego run": lambda names: (tools.lego_issue(lego, pebble, tmp_path / "lego", names), tools.lego_env(pebble),
                                   tmp_path),
        "bare acme floor": lambda names: (tools.floor_issue(pebble, state, names), tools.certbot_env(pebble), tmp_path),
    })
    samples = {name: tools.Samples() for name in runs}
    order = list(runs)
    for round_ in range(ROUNDS + 1):  # round 0 registers each tool's account: not counted
        for index, name in enumerate(order):
            tag = f"r{round_}t{index}"
            argv, env, cwd = runs[name]([f"{tag}.contoso.test", f"autodiscover.{tag}.contoso.test"])
            run = tools.run(argv, env, cwd=cwd)
            if round_:
                samples[name].walls.append(run.walls[0])
                samples[name].rss_mb.append(run.rss_mb[0])
        order = order[1:] + order[:1]  # rotate, so no tool always runs right after another

    ours = samples["certkeeper issue"]
    certbot_ratio = samples["certbot certonly"].median / ours.median
    lego_ratio = samples["lego run"].median / ours.median
    peak = max(ours.rss_mb)
    print(f"\nOne 2-name certificate from the command line, Pebble 2.6 (VA without sleep), RSA 2048, "
          f"{ROUNDS} alternating rounds after a warm-up; python {sys.version.split()[0]}, "
          f"{tools.certbot_version(certbot)}, {tools.lego_version(lego)}:")
    for name, measured in samples.items():
        print(measured.line(name))
    print(f"  certbot / certkeeper = {certbot_ratio:.1f}x (target >= 4x: {'met' if certbot_ratio >= 4 else 'NOT met'})")
    print(f"  lego / certkeeper    = {lego_ratio:.1f}x (target >= 16x: {'met' if lego_ratio >= 16 else 'NOT met'})")
    print(f"  certkeeper / floor   = {ours.median / samples['bare acme floor'].median:.2f}x")
    print(f"  certkeeper peak RSS  = {peak:.1f} MB (target <= 60 MB: {'met' if peak <= 60 else 'NOT met'})")
    if "certkeeper issue (before)" in samples:
        before = samples["certkeeper issue (before)"].median
        print(f"  before: certbot / certkeeper = {samples['certbot certonly'].median / before:.1f}x, "
              f"lego / certkeeper = {samples['lego run'].median / before:.1f}x; after / before = "
              f"{ours.median / before:.2f}")


def test_list_twenty_against_certbot_certificates(pebble: Pebble, tmp_path: Path) -> None:
    certbot = tools.certbot_binary()
    sources = {"certkeeper list": tools.REPO_ROOT}
    if tools.BEFORE is not None:
        sources["certkeeper list (before)"] = tools.BEFORE
    envs = {}
    for index, (name, source) in enumerate(sources.items()):
        home = tmp_path / f"certkeeper{index}"
        home.mkdir()
        # the certkeeper way: twenty certificates in the config, issued by one `renew`
        certificates = "".join(
            f'\n[[certificates]]\nid = "l{index}x{i}"\nnames = ["l{index}x{i}.contoso.test", '
            f'"autodiscover.l{index}x{i}.contoso.test"]\nissuer = "pebble"\n' for i in range(20))
        (home / "certkeeper.toml").write_text(tools.certkeeper_config(pebble, certificates))
        envs[name] = tools.certkeeper_env(home, source)
        tools.run([sys.executable, "-m", "certkeeper", "renew"], envs[name], cwd=source)
    for i in range(20):
        tools.run(tools.certbot_issue(certbot, pebble, tmp_path / "certbot", [f"c{i}.contoso.test",
                                                                             f"autodiscover.c{i}.contoso.test"]),
                  tools.certbot_env(pebble))
    listed = {name: tools.Samples() for name in sources}
    theirs = tools.Samples()
    folder = tmp_path / "certbot"
    listing = [str(certbot), "certificates", "--config-dir", str(folder / "config"), "--work-dir",
               str(folder / "work"), "--logs-dir", str(folder / "logs")]
    for name, source in sources.items():  # warm: bytecode, page cache
        tools.run([sys.executable, "-m", "certkeeper", "list"], envs[name], cwd=source)
    tools.run(listing, tools.certbot_env(pebble))
    for _ in range(LIST_RUNS):
        for name, source in sources.items():
            tools.run([sys.executable, "-m", "certkeeper", "list"], envs[name], listed[name], cwd=source)
        tools.run(listing, tools.certbot_env(pebble), theirs, cwd=tmp_path)
    ours = listed["certkeeper list"]
    ratio = theirs.median / ours.median
    print(f"\nListing 20 certificates issued from Pebble, {LIST_RUNS} alternating runs "
          f"({tools.certbot_version(certbot)}):")
    for name, measured in listed.items():
        print(measured.line(name))
    print(theirs.line("certbot certificates"))
    print(f"  certbot / certkeeper = {ratio:.1f}x (target >= 1x, no slower: {'met' if ratio >= 1 else 'NOT met'}); "
          f"memory {statistics.median(ours.rss_mb):.0f} MB vs {statistics.median(theirs.rss_mb):.0f} MB")
