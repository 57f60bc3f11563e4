"""How every command reads to a user: plain help, plain placeholders, examples, one-line errors.

Typer's own styles (boxed panels, `<str>`/`<bool>`/`<list[str]>` placeholders) are replaced here,
once, for every command, including the ones added later: a new option gets its placeholder from
its name and type (`--sale-id ID`, `--nats-url URL`, `--timeout SECONDS`, `--count N`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Sequence

import typer
from typer.core import TyperGroup

from sagactl.cli.common import Terminal
from sagactl.errors import ExitCode

# Placeholders by option name, then by type; a flag shows none.
NAMED_PLACEHOLDERS = {
    "nats_url": "URL", "db_url": "NAME=URL", "replicas": "NAME=N", "with_": "MODULE:OBJECT", "reference": "MODULE:OBJECT", "seqs": "SEQ", "remove": "NAME", "files": "FILE",
    "state": "DIR", "state_dir": "DIR", "creds": "FILE", "tls_ca": "FILE", "svg": "FILE",
    "timeout": "SECONDS", "interval": "SECONDS", "duration": "SECONDS", "deadline": "SECONDS",
    "sale_deadline": "SECONDS", "quantity": "N", "value": "AMOUNT", "product": "ID=UNITS", "user": "ID=BALANCE",
}
TYPE_PLACEHOLDERS = {int: "N", float: "NUMBER", str: "TEXT", Path: "PATH"}


def placeholder(param: Any) -> str | None:
    """The word shown after an option (or for an argument) in help and usage lines."""
    name = param.name or ""
    if name in NAMED_PLACEHOLDERS:
        return NAMED_PLACEHOLDERS[name]
    if name.endswith("_id") or name.endswith("_ids") or name == "id":
        return "ID"
    if param.param_type_name == "argument":
        return name.upper()
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if getattr(descriptor, "is_list", False):
        annotation = getattr(annotation, "__args__", (str,))[0]
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "FILE"
    return TYPE_PLACEHOLDERS.get(annotation, "VALUE")  # type: ignore[arg-type]


def _with_example_blocks(text: str | None) -> str | None:
    """Keep example commands as written: click re-wraps every other paragraph to the terminal.

    `Example: CMD` becomes an `Example:` heading over CMD; lines starting with `$ ` (the epilogs
    of the groups and the top level) form one block each run of them.
    """
    if not text or ("Example" not in text and "$ " not in text):
        return text
    lines: list[str] = []
    in_block = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("Example: ", "Examples: ")):
            label, _, command = stripped.partition(": ")
            lines += [f"{label}:", "", "\b", f"  {command}"]
            in_block = True
        elif stripped.startswith("$ "):
            if not in_block:
                lines += ["", "\b"] if lines and lines[-1] else ["\b"]
            lines.append(f"  {stripped[2:]}")
            in_block = True
        else:
            in_block = False
            lines.append(line)
    return "\n".join(lines)


def polish(command: Any) -> None:
    """Placeholders and example blocks for a command and everything under it (idempotent)."""
    if getattr(command, "_sagactl_polished", False):
        return
    command._sagactl_polished = True
    if command.help and not command.short_help:  # the whole first paragraph, wrapped, never cut with "..."
        command.short_help = " ".join(command.help.split("\n\n")[0].split())
    command.help = _with_example_blocks(command.help)
    command.epilog = _with_example_blocks(command.epilog)
    for param in command.params:
        if param.param_type_name == "argument":
            _plain_argument(param)
        elif not getattr(param, "is_flag", False):
            param.metavar = placeholder(param)
            if getattr(param, "min", None) is not None or getattr(param, "max", None) is not None:
                param._get_number_range_help_str = _range_words(param.min, param.max)
    for sub in getattr(command, "commands", {}).values():
        polish(sub)


# Typer checks values with pydantic; its phrases, in sagactl's words.
PYDANTIC_WORDS = (
    (re.compile(r"Input should be a valid number[^']*"), "expected a number"),
    (re.compile(r"Input should be a valid integer[^']*"), "expected a whole number"),
    (re.compile(r"Input should be a valid boolean[^']*"), "expected true or false"),
    (re.compile(r"Input should be greater than or equal to (\S+)"), r"expected at least \1"),
    (re.compile(r"Input should be greater than (\S+)"), r"expected more than \1"),
    (re.compile(r"Input should be less than or equal to (\S+)"), r"expected at most \1"),
    (re.compile(r"Input should be less than (\S+)"), r"expected less than \1"),
    (re.compile(r"Input should be (.+)"), r"expected \1"),
)


def plain_words(message: str) -> str:
    for pattern, words in PYDANTIC_WORDS:
        message = pattern.sub(words, message)
    return message


def _range_words(low: Any, high: Any) -> Any:
    """`at least 1` where click says `x>=1`."""
    words = f"{low} to {high}" if low is not None and high is not None else \
        f"at least {low}" if low is not None else f"at most {high}"
    return lambda: words


def _plain_argument(param: Any) -> None:
    """`SCENARIO` and `[SEQ]...` in the usage line, no `{SCENARIO}` and no `<str>` beside it."""
    word = placeholder(param)
    repeated = "..." if param.nargs != 1 else ""
    shown = (word if param.required else f"[{word}]") + repeated
    param.metavar = word
    # Typer renders arguments through these two methods whatever the metavar: shadow them here.
    param._usage_display_name = lambda: shown
    param.display_type_rich = lambda ctx: None


def usage_line(error: Any) -> str:
    """Click's message in sagactl's words: `missing option --x (see `sagactl cmd --help`)`."""
    message = plain_words(error.format_message().strip().rstrip("."))
    message = message.replace("'--", "--").replace("' ", " ").replace("':", ":")
    if message.endswith("'") and "--" in message:
        message = message[:-1]
    message = message[:1].lower() + message[1:]
    command = error.ctx.command_path if getattr(error, "ctx", None) else "sagactl"
    return f"{message} (see `{command} --help`)"


class SagactlGroup(TyperGroup):
    """The root command: applies `polish` and reports click's usage errors in one line (exit 2)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        from typer._click import exceptions as click_errors

        polish(self)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name or "sagactl", complete_var, False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # `sagactl` or a group alone: its help, exit 0
            typer.echo(exc.ctx.get_help())
            sys.exit(0)
        except click_errors.UsageError as exc:
            _error(usage_line(exc))
            sys.exit(int(ExitCode.USAGE))
        except click_errors.ClickException as exc:
            _error(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:  # (typer 0.29 has no Abort in its vendored click exceptions)
            _error("aborted")
            sys.exit(int(ExitCode.FAILED))
        sys.exit(result if isinstance(result, int) else 0)


def _error(message: str) -> None:
    Terminal.standard().print_error(message)  # click's errors come before any command (and its terminal)
