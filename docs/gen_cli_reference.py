"""Generate the command-line reference from medseg's typer application.

Every command and sub-command of ``medseg`` becomes a section with its usage line, its help text, and a table of its
arguments and options (name, default, help). ``docs/hooks.py`` puts the result in place of the
``<!-- cli-reference -->`` marker of ``cli.md``; run this file to print it.
"""

from __future__ import annotations

from typing import Any

import typer
from gen_config_reference import escape_html

from medseg.cli import app

__all__ = ["cli_reference"]


def _cell(text: str) -> str:
    """Text on one line, safe inside a Markdown table cell."""
    return escape_html(" ".join(text.split())).replace("|", "\\|")


def _default(param: Any) -> str:
    default = param.default
    if getattr(param, "is_flag", False) and isinstance(default, bool):
        return "on" if default else "off"
    if default is None or callable(default) or default == ():
        return ""
    return f"`{default}`"


def _name(param: Any) -> str:
    if param.param_type_name == "argument":
        name = (param.metavar or param.name).upper()
        return f"`{name}`" + (" ..." if param.nargs == -1 else "")
    return ", ".join(f"`{opt}`" for opt in [*param.opts, *getattr(param, "secondary_opts", [])])


def _usage(command: Any, path: str) -> str:
    pieces = [path]
    if any(p.param_type_name == "option" for p in command.params):
        pieces.append("[OPTIONS]")
    for param in command.params:
        if param.param_type_name == "argument":
            name = (param.metavar or param.name).upper() + (" ..." if param.nargs == -1 else "")
            pieces.append(name if param.required else f"[{name}]")
    if hasattr(command, "list_commands"):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _command(command: Any, path: str, context: Any, level: int) -> list[str]:
    """The Markdown of one command and of its sub-commands."""
    anchor = path.replace(" ", "-")
    lines = [f"{'#' * level} `{path}` {{#{anchor}}}", "", "```text", _usage(command, path), "```", ""]
    lines += [escape_html((command.help or "").strip()), ""]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if params:
        lines += ["| argument or option | default | meaning |", "|---|---|---|"]
        lines += [f"| {_name(p)} | {_default(p)} | {_cell(getattr(p, 'help', None) or '')} |" for p in params]
        lines.append("")
    if hasattr(command, "list_commands"):
        for name in command.list_commands(context):
            lines += _command(command.get_command(context, name), f"{path} {name}", context, level + 1)
    return lines


def cli_reference() -> str:
    """Render the reference of every ``medseg`` command.

    Returns:
        Markdown, one section per command (a level-3 heading for `medseg`, level 4 for the verbs, 5 for sub-commands).
    """
    command = typer.main.get_command(app)
    context = command.make_context("medseg", [], resilient_parsing=True)
    lines = _command(command, "medseg", context, 3)
    return "\n".join(lines)


if __name__ == "__main__":
    print(cli_reference())
