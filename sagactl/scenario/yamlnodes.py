"""Typed reads from a composed YAML tree, collecting every problem with its line.

PyYAML's `compose` keeps each node's position (`start_mark`), which `safe_load` throws away;
reading the node tree directly lets the loader say "line 12: expected an integer" for each
problem instead of stopping at the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

NULL_TAG = "tag:yaml.org,2002:null"
STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"


def line_of(node: Node) -> int:
    return node.start_mark.line + 1


@dataclass
class Problems:
    """Every problem found in one file, as `file:line: where: what`."""

    path: str
    items: list[tuple[int, str]] = field(default_factory=list)

    def add(self, node: Node | int, where: str, message: str) -> None:
        line = node if isinstance(node, int) else line_of(node)
        self.items.append((line, f"{where}: {message}" if where else message))

    def lines(self) -> list[str]:
        return [f"{self.path}:{line}: {message}" for line, message in sorted(self.items, key=lambda item: item[0])]

    def __bool__(self) -> bool:
        return bool(self.items)


def compose(text: str, problems: Problems) -> Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problems.add(line, "", f"not valid YAML: {exc.problem or exc}")
    except yaml.YAMLError as exc:
        problems.add(1, "", f"not valid YAML: {exc}")
    return None


def kind(node: Node) -> str:
    """What a node is, in the words of an error message."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL_TAG:
        return "nothing"
    return {STR_TAG: "a string", INT_TAG: "an integer", FLOAT_TAG: "a number", BOOL_TAG: "a boolean"}.get(
        node.tag, "a value"
    ) + f" ({node.value!r})"


class Reader:
    """Turn nodes into Python values of the expected type, or record why they are not."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self._constructor = yaml.constructor.SafeConstructor()

    def plain(self, node: Node) -> Any:
        """The node as plain Python data (for free-form values such as expected table rows)."""
        value = self._constructor.construct_object(node, deep=True)
        self._constructor.constructed_objects.clear()
        return value

    def is_null(self, node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == NULL_TAG

    def mapping(
        self, node: Node, where: str, allowed: Iterable[str] | None = None, required: Iterable[str] = ()
    ) -> dict[Any, tuple[Node, Node]] | None:
        """Keys (as plain values) to (key node, value node); unknown, duplicate and missing keys reported."""
        if not isinstance(node, MappingNode):
            self.problems.add(node, where, f"expected a mapping, got {kind(node)}")
            return None
        allowed_keys = list(allowed) if allowed is not None else None
        result: dict[Any, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.plain(key_node) if isinstance(key_node, ScalarNode) else None
            if key is None:
                self.problems.add(key_node, where, "expected a plain key")
                continue
            if key in result:
                self.problems.add(key_node, where, f"key {key!r} given twice")
                continue
            if allowed_keys is not None and key not in allowed_keys:
                self.problems.add(key_node, where, f"unknown key {key!r}; expected one of {', '.join(allowed_keys)}")
                continue
            result[key] = (key_node, value_node)
        for key in required:
            if key not in result:
                self.problems.add(node, where, f"missing key {key!r}")
        return result

    def sequence(self, node: Node, where: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.problems.add(node, where, f"expected a list, got {kind(node)}")
            return None
        return list(node.value)

    def string(self, node: Node, where: str, allow_numbers: bool = False) -> str | None:
        if isinstance(node, ScalarNode) and node.tag != NULL_TAG and (node.tag == STR_TAG or allow_numbers):
            if node.tag in (STR_TAG, INT_TAG, FLOAT_TAG):
                return str(node.value)
        self.problems.add(node, where, f"expected a string, got {kind(node)}")
        return None

    def integer(self, node: Node, where: str, minimum: int | None = None) -> int | None:
        value = self.plain(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, int) or isinstance(value, bool):
            self.problems.add(node, where, f"expected an integer, got {kind(node)}")
            return None
        if minimum is not None and value < minimum:
            self.problems.add(node, where, f"expected an integer >= {minimum}, got {value}")
            return None
        return value

    def number(self, node: Node, where: str, minimum: float = 0.0, maximum: float | None = None) -> float | None:
        value = self.plain(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.problems.add(node, where, f"expected a number, got {kind(node)}")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
            self.problems.add(node, where, f"expected a number {bounds}, got {value:g}")
            return None
        return float(value)

    def boolean(self, node: Node, where: str) -> bool | None:
        value = self.plain(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, bool):
            self.problems.add(node, where, f"expected true or false, got {kind(node)}")
            return None
        return value

    def choice(self, node: Node, where: str, choices: Iterable[str]) -> str | None:
        options = list(choices)
        value = self.string(node, where)
        if value is not None and value not in options:
            self.problems.add(node, where, f"expected one of {', '.join(options)}, got {value!r}")
            return None
        return value

    def money_text(self, node: Node, where: str) -> str | None:
        """A money scalar's text as written: `20.00` stays "20.00" instead of becoming a float."""
        if isinstance(node, ScalarNode) and node.tag in (STR_TAG, INT_TAG, FLOAT_TAG):
            return str(node.value)
        self.problems.add(node, where, f"expected an amount such as 20.00, got {kind(node)}")
        return None
