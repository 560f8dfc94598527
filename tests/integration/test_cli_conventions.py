"""Small conventions: shell completion of certificate ids, --json on notify test / db current /
secret list, and a --help that imports none of the optional libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tree_sitter_powershell
from tree_sitter import Language, Parser

from tests.fixtures.core import REPO_ROOT, run_cli


def env_for(home: Path) -> dict[str, str]:
    return {"CERTKEEPER_DATA_DIR": str(home / "data"), "CERTKEEPER_CONFIG": str(home / "certkeeper.toml")}


def complete(env: dict[str, str], line: str) -> list[str]:
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    done = run_cli(env={**env, "_CERTKEEPER_COMPLETE": "bash_complete", "COMP_WORDS": line,
                        "COMP_CWORD": str(cword)})
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_certificate_ids_complete_from_the_store_and_the_config(tmp_path: Path) -> None:
    (tmp_path / "certkeeper.toml").write_text('[[certificates]]\nid = "outlook"\nnames = ["mail.contoso.com"]\n')
    env = env_for(tmp_path)
    issued = run_cli("issue", "owa.contoso.com", "--id", "owa", env=env)
    assert issued.returncode == 0, issued.stderr
    assert complete(env, "certkeeper show ") == ["plain,outlook", "plain,owa"]
    assert complete(env, "certkeeper renew o") == ["plain,outlook", "plain,owa"]
    assert complete(env, "certkeeper renew ow") == ["plain,owa"]
    assert "plain,monitoring" in complete(env, "certkeeper mo")
    # no store, a broken config: nothing, silently
    (tmp_path / "certkeeper.toml").write_text("this is [not toml")
    assert complete(env_for(tmp_path / "elsewhere") | {"CERTKEEPER_CONFIG": str(tmp_path / "certkeeper.toml")},
                    "certkeeper show ") == []


def test_completion_scripts(tmp_path: Path) -> None:
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "#compdef certkeeper"),
                          ("fish", "complete --no-files --command certkeeper")):
        done = run_cli("completion", shell)
        assert done.returncode == 0 and marker in done.stdout, (shell, done.stdout[:200])
    powershell = run_cli("completion", "powershell").stdout
    tree = Parser(Language(tree_sitter_powershell.language())).parse(powershell.encode())
    assert not tree.root_node.has_error
    assert "Register-ArgumentCompleter -Native -CommandName certkeeper" in powershell
    assert "$env:_CERTKEEPER_COMPLETE = 'bash_complete'" in powershell


def test_json_on_db_current_secret_list_and_notify_test(tmp_path: Path) -> None:
    (tmp_path / "certkeeper.toml").write_text(
        '[notifiers.hook]\ntype = "webhook"\nurl = "secret:nowhere"\nsecret = "secret:nowhere"\n')
    env = env_for(tmp_path)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    current = json.loads(run_cli("db", "current", "--json", env=env).stdout)
    assert current["up_to_date"] is True and current["current"] == current["head"]
    assert run_cli("secret", "set", "smtp", env=env, input="hunter2-canary\n").returncode == 0
    listed = run_cli("secret", "list", "--json", env=env)
    [row] = json.loads(listed.stdout)
    assert row["name"] == "smtp" and row["updated_at"] and "hunter2" not in listed.stdout
    tested = run_cli("notify", "test", "--json", env=env)
    assert tested.returncode == 1
    [result] = json.loads(tested.stdout)
    assert result["notifier"] == "hook" and result["type"] == "webhook" and result["ok"] is False
    assert "cannot be read" in result["error"]


def test_help_imports_no_optional_library() -> None:
    code = ("import sys\nfrom certkeeper.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('lexicon', 'apprise', 'standardwebhooks', 'prometheus_client', 'tldextract')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.stdout.strip().splitlines()[-1] == "[]"
