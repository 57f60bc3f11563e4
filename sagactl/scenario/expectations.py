"""Read an `expect:` block (at the end of a scenario or as a step) into `Expectations`."""

from __future__ import annotations

from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from participants.contract import SALE_STATUSES
from sagactl.scenario.model import (
    Expectations,
    SaleExpectation,
    SaleRef,
    TableRows,
    TableValues,
)
from sagactl.scenario.scope import Names
from sagactl.scenario.yamlnodes import Reader, kind, line_of

EXPECT_KEYS = ("sales", "tables", "events", "invariants", "dead_letters")


def read_expectations(r: Reader, names: Names, node: Node, where: str) -> Expectations:
    keys = r.mapping(node, where, EXPECT_KEYS)
    if not keys:
        if keys is not None:
            r.problems.add(node, where, f"expected at least one of {', '.join(EXPECT_KEYS)}")
        return Expectations(line=line_of(node))
    lines: dict[tuple[str, str], int] = {}
    sales: dict[SaleRef, SaleExpectation] = {}
    for key, (key_node, value_node) in (r.mapping(keys["sales"][1], f"{where}.sales") if "sales" in keys else {}).items():
        ref = names.sale_ref(key, key_node, f"{where}.sales")
        wanted = _sale(r, names, ref, value_node, f"{where}.sales.{key}") if ref is not None else None
        if ref is not None and wanted is not None:
            sales[ref] = wanted
            lines["sales", str(ref)] = line_of(key_node)
    tables: dict[str, TableRows | TableValues] = {}
    for key, (key_node, value_node) in (r.mapping(keys["tables"][1], f"{where}.tables") if "tables" in keys else {}).items():
        table = _table(r, names, str(key), key_node, value_node, f"{where}.tables")
        if table is not None:
            tables[str(key)] = table
            lines["tables", str(key)] = line_of(key_node)
    events: dict[SaleRef, tuple[str, ...]] = {}
    for key, (key_node, value_node) in (r.mapping(keys["events"][1], f"{where}.events") if "events" in keys else {}).items():
        ref = names.sale_ref(key, key_node, f"{where}.events")
        items = r.sequence(value_node, f"{where}.events.{key}")
        types = [names.event_type(item, f"{where}.events.{key}") for item in items or []]
        if ref is not None and items is not None and None not in types:
            events[ref] = tuple(t for t in types if t)
            lines["events", str(ref)] = line_of(key_node)
    dead_letters: dict[str, int] = {}
    if "dead_letters" in keys:
        for key, (key_node, value_node) in (r.mapping(keys["dead_letters"][1], f"{where}.dead_letters") or {}).items():
            count = r.integer(value_node, f"{where}.dead_letters.{key}", minimum=0)
            if names.known_participant(str(key), key_node, f"{where}.dead_letters") and count is not None:
                dead_letters[str(key)] = count
                lines["dead_letters", str(key)] = line_of(key_node)
    invariants = bool(r.boolean(keys["invariants"][1], f"{where}.invariants")) if "invariants" in keys else False
    if invariants:
        lines["invariants", ""] = line_of(keys["invariants"][0])
    return Expectations(sales, tables, events, dead_letters, invariants, line=line_of(node), lines=lines)


def _sale(r: Reader, names: Names, ref: SaleRef, node: Node, where: str) -> SaleExpectation | None:
    """`FINALIZED`, `{status: CANCELED, reason: out of stock}`, or for a group `{FINALIZED: 10, CANCELED: 40}`."""
    if isinstance(node, ScalarNode):
        status = r.choice(node, where, SALE_STATUSES)
        return None if status is None else SaleExpectation(status=status)
    if not isinstance(node, MappingNode):
        r.problems.add(node, where, f"expected a status, {{status, reason}} or counts per status, got {kind(node)}")
        return None
    keys = r.mapping(node, where) or {}
    if keys and set(keys) <= set(SALE_STATUSES):
        if not names.is_group(ref):
            r.problems.add(node, where, f"counts per status are for a group of sales (submitted with repeat); "
                           f"{ref!r} is one sale: expected a status")
            return None
        counts = {str(k): r.integer(v[1], f"{where}.{k}", minimum=0) for k, v in keys.items()}
        return None if None in counts.values() else SaleExpectation(counts={k: int(v or 0) for k, v in counts.items()})
    keys = r.mapping(node, where, ("status", "reason"), required=("status",))
    if not keys or "status" not in keys:
        return None
    status = r.choice(keys["status"][1], f"{where}.status", SALE_STATUSES)
    reason = r.string(keys["reason"][1], f"{where}.reason") if "reason" in keys else None
    return None if status is None else SaleExpectation(status=status, reason=reason)


def _table(r: Reader, names: Names, key: str, key_node: Node, node: Node, where: str) -> TableRows | TableValues | None:
    participant, dot, table = key.partition(".")
    if not dot or not participant or not table:
        r.problems.add(key_node, where, f"expected PARTICIPANT.TABLE (such as inventory.inventories), got {key!r}")
        return None
    if not names.known_participant(participant, key_node, where):
        return None
    columns = (names.tables_of(participant) or {}).get(table)
    if names.tables_of(participant) is not None and columns is None:  # what `run` would find only at the end
        known = ", ".join(f"{participant}.{t}" for t in names.tables_of(participant) or {})
        r.problems.add(key_node, where, f"unknown table {key!r}; {participant} has {known or 'no tables'}")
        return None
    where = f"{where}.{key}"
    if isinstance(node, SequenceNode):
        rows: list[dict[str, Any]] = []
        for item in node.value:
            if not isinstance(item, MappingNode):
                r.problems.add(item, where, f"expected a row (a mapping of column: value), got {kind(item)}")
                continue
            rows.append(r.plain(item))
            _check_columns(r, item, where, rows[-1], columns)
        return TableRows(tuple(rows)) if len(rows) == len(node.value) else None
    keys = r.mapping(node, where, ("where", "values", "count"))
    if keys is None:
        return None
    if "values" not in keys and "count" not in keys:
        r.problems.add(node, where, "expected a list of rows, or a mapping with values and/or count (and where)")
        return None
    matched = _columns(r, keys["where"][1], f"{where}.where") if "where" in keys else {}
    values = _columns(r, keys["values"][1], f"{where}.values") if "values" in keys else {}
    count = r.integer(keys["count"][1], f"{where}.count", minimum=0) if "count" in keys else None
    for part, found in (("where", matched), ("values", values)):
        if found and part in keys:
            _check_columns(r, keys[part][1], f"{where}.{part}", found, columns)
    if matched is None or values is None or ("count" in keys and count is None):
        return None
    return TableValues(matched, values, count)


def _check_columns(r: Reader, node: Node, where: str, row: dict[str, Any], columns: list[str] | None) -> None:
    unknown = [name for name in row if columns is not None and name not in columns]
    if unknown:
        r.problems.add(node, where, f"unknown column {unknown[0]!r}; the table has {', '.join(columns or [])}")


def _columns(r: Reader, node: Node, where: str) -> dict[str, Any] | None:
    if not isinstance(node, MappingNode):
        r.problems.add(node, where, f"expected a mapping of column: value, got {kind(node)}")
        return None
    return {str(k): v for k, v in r.plain(node).items()}
