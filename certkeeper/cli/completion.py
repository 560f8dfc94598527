"""``certkeeper completion bash|zsh|fish|powershell``: the shell completion script to source.

bash, zsh and fish use click's own completion (https://click.palletsprojects.com/en/stable/shell-completion/);
PowerShell, which click does not support, gets a ``Register-ArgumentCompleter`` block that asks
certkeeper the way click's bash script does (``_CERTKEEPER_COMPLETE=bash_complete``).
Certificate ids complete from the config and the store.
"""

from __future__ import annotations

import click

POWERSHELL = r"""# certkeeper completion for PowerShell: add to $PROFILE
Register-ArgumentCompleter -Native -CommandName certkeeper -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)
    $line = $commandAst.ToString()
    $count = $commandAst.CommandElements.Count
    if ($wordToComplete) { $count = $count - 1 }
    $env:_CERTKEEPER_COMPLETE = 'bash_complete'
    $env:COMP_WORDS = $line
    $env:COMP_CWORD = "$count"
    try {
        certkeeper 2>$null | ForEach-Object {
            $kind, $value = $_ -split ',', 2
            if ($kind -eq 'plain') {
                [System.Management.Automation.CompletionResult]::new($value, $value, 'ParameterValue', $value)
            }
        }
    } finally {
        Remove-Item -Path 'Env:_CERTKEEPER_COMPLETE', 'Env:COMP_WORDS', 'Env:COMP_CWORD' -ErrorAction SilentlyContinue
    }
}
"""


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish", "powershell"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (e.g. `eval "$(certkeeper completion bash)"`)."""
    if shell == "powershell":
        click.echo(POWERSHELL, nl=False)
        return
    from click.shell_completion import get_completion_class

    from certkeeper.cli import cli

    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(cli, {}, "certkeeper", "_CERTKEEPER_COMPLETE").source())
