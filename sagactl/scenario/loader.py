"""Read a scenario file into the model; every problem is reported with the file and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from participants.contract import ContractError, parse_sale
from sagactl.errors import UsageError
from sagactl.scenario.model import Expectations, SaleExpectation, Scenario, Step, SubmitStep, WaitStep

SALE_STATUSES = ("PENDING", "FINALIZED", "CANCELED")


def shipped_dir() -> Path:
    packaged = Path(__file__).resolve().parent.parent / "scenarios"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent.parent / "scenarios"


def shipped_scenarios() -> dict[str, Path]:
    return {path.stem: path for path in sorted(shipped_dir().glob("*.yaml"))}


def resolve(name_or_path: str) -> Path:
    """A shipped scenario's name (`success`) or a path to a file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UsageError(f"scenario file {name_or_path} does not exist")
        return path
    shipped = shipped_scenarios()
    if name_or_path not in shipped:
        raise UsageError(f"unknown scenario {name_or_path!r}; shipped: {', '.join(shipped)}")
    return shipped[name_or_path]


def load(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with name, steps and expect")
    problems: list[str] = []
    names: set[str] = set()
    steps: list[Step] = []
    for index, raw in enumerate(data.get("steps") or [], start=1):
        step = _step(raw, index, names, problems)
        if step is not None:
            steps.append(step)
    expect = _expectations(data.get("expect") or {}, names, problems)
    unknown = set(data) - {"name", "description", "steps", "expect"}
    if unknown:
        problems.append(f"unknown keys {sorted(unknown)}")
    if problems:
        raise UsageError(f"{path}: " + "; ".join(problems))
    return Scenario(str(data.get("name") or path.stem), str(data.get("description") or ""), tuple(steps), expect, str(path))


def _step(raw: Any, index: int, names: set[str], problems: list[str]) -> Step | None:
    where = f"step {index}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping")
        return None
    if "submit" in raw:
        fields = raw["submit"] or {}
        try:
            sale = parse_sale(fields.get("product_id"), fields.get("user_id"), fields.get("value"), fields.get("quantity"))
        except (ContractError, AttributeError) as exc:
            problems.append(f"{where}: submit: {exc}")
            return None
        name = raw.get("as")
        if name is not None:
            names.add(str(name))
        return SubmitStep(sale, None if name is None else str(name))
    if "wait" in raw:
        target = raw["wait"]
        timeout = float(raw.get("timeout", 10))
        if target in ("all", None):
            return WaitStep(None, timeout)
        wanted = tuple(str(t) for t in (target if isinstance(target, list) else [target]))
        for name in wanted:
            if name not in names:
                problems.append(f"{where}: wait names unknown sale {name!r}")
        return WaitStep(wanted, timeout)
    problems.append(f"{where}: expected one of submit, wait")
    return None


def _expectations(raw: Any, names: set[str], problems: list[str]) -> Expectations:
    sales: dict[str, SaleExpectation] = {}
    for name, wanted in (raw.get("sales") or {}).items():
        if str(name) not in names:
            problems.append(f"expect.sales: unknown sale {name!r}")
            continue
        status, reason = (wanted, None) if isinstance(wanted, str) else (wanted.get("status"), wanted.get("reason"))
        if status not in SALE_STATUSES:
            problems.append(f"expect.sales.{name}: status must be one of {', '.join(SALE_STATUSES)}")
            continue
        sales[str(name)] = SaleExpectation(status, reason)
    tables: dict[str, list[dict[str, Any]]] = {}
    for key, rows in (raw.get("tables") or {}).items():
        if "." not in str(key) or not isinstance(rows, list):
            problems.append(f"expect.tables.{key}: expected participant.table: [rows]")
            continue
        tables[str(key)] = rows
    return Expectations(sales, tables)
