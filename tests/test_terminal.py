"""Each command gets its consoles handed in (`Terminal`): no module of sagactl holds one."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
from pathlib import Path

import pytest
import typer
from rich.console import Console

import sagactl
import sagactl.cli
from sagactl.cli import scenario
from sagactl.cli.common import Terminal, handle_errors
from sagactl.errors import ExitCode, UsageError


def captured() -> tuple[Terminal, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Terminal(out=Console(file=out, width=100), err=Console(file=err, width=100)), out, err


def test_a_command_prints_on_the_terminal_it_is_given() -> None:
    term, out, err = captured()
    scenario.validate.__wrapped__([Path("success")], term=term)  # type: ignore[attr-defined]
    assert out.getvalue().startswith("success: valid: scenario success, ")
    assert err.getvalue() == ""


def test_handle_errors_hides_term_from_typer_and_reports_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    def command(count: int = 1, *, term: Terminal) -> None:
        raise UsageError(f"bad count {count}")

    wrapped = handle_errors(command)
    assert list(inspect.signature(wrapped).parameters) == ["count"]
    with pytest.raises(typer.Exit) as exit_:
        wrapped(count=3)
    assert exit_.value.exit_code == int(ExitCode.USAGE)
    assert capsys.readouterr() == ("", "sagactl: error: bad count 3\n")


def test_a_command_without_term_is_refused_when_it_is_registered() -> None:
    with pytest.raises(TypeError, match="keyword-only parameter `term`"):
        handle_errors(lambda count=1: None)


def test_no_module_of_sagactl_holds_a_console() -> None:
    holding = []
    for module_info in pkgutil.walk_packages(sagactl.__path__, "sagactl."):
        if module_info.name.startswith("sagactl.testing"):
            continue  # the pytest plugin: imports pytest, and holds no console either
        module = importlib.import_module(module_info.name)
        holding += [f"{module_info.name}.{name}" for name, value in vars(module).items() if isinstance(value, Console)]
    assert holding == []


def test_the_views_do_not_import_the_cli() -> None:
    views = Path(sagactl.cli.__file__).parent.parent / "views"
    importing = [path.name for path in views.glob("*.py") if "sagactl.cli" in path.read_text()]
    assert importing == []
