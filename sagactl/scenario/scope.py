"""What a scenario file has named so far: sales (`as:`), participants, event types.

The loader reads the file top to bottom, so a step can only refer to a sale submitted or a
participant started above it; the final `expect` sees everything.
"""

from __future__ import annotations

from typing import Any

from yaml.nodes import Node, ScalarNode

from participants.contract import SUBJECTS
from participants.runtime.loader import load_participant
from sagactl.scenario.model import BUILT_IN_PARTICIPANTS, SaleRef
from sagactl.system.references import current_directory_first
from sagactl.scenario.yamlnodes import Reader, kind


class Names:
    def __init__(self, reader: Reader) -> None:
        self.r = reader
        self.sales: dict[str, bool] = {}  # name -> refers to a group
        self.participants: list[str] = list(BUILT_IN_PARTICIPANTS)
        self._pending: dict[str, Node] = {}  # configured under `participants:`, to be started by a step
        self._tables: dict[str, dict[str, list[str]]] = {}  # participant -> its tables -> their columns

    # -- sales ------------------------------------------------------------------------------
    def define_sale(self, node: Node, where: str, group: bool) -> str | None:
        name = self.r.string(node, f"{where} as")
        if name is None:
            return None
        if not name.isidentifier():
            self.r.problems.add(node, f"{where} as", f"expected a name made of letters, digits and _, got {name!r}")
            return None
        if name in self.sales:
            self.r.problems.add(node, f"{where} as", f"sale name {name!r} is already used above")
            return None
        self.sales[name] = group
        return name

    def use_sale(self, node: Node, where: str) -> str | None:
        name = self.r.string(node, where)
        if name is None:
            return None
        if name not in self.sales:
            self.r.problems.add(node, where, f"unknown sale {name!r}; {self._known_sales()}")
            return None
        return name

    def sale_ref(self, key: Any, node: Node, where: str) -> SaleRef | None:
        """A key of `expect.sales` or `expect.events`: a sale name, or a sale id."""
        if isinstance(key, int) and not isinstance(key, bool) and key >= 1:
            return key
        if isinstance(key, str) and key in self.sales:
            return key
        self.r.problems.add(node, where, f"unknown sale {key!r}; expected a sale id or a name: {self._known_sales()}")
        return None

    def is_group(self, ref: SaleRef) -> bool:
        return isinstance(ref, str) and self.sales.get(ref, False)

    def _known_sales(self) -> str:
        return f"named so far: {', '.join(self.sales)}" if self.sales else "no sale is named (with `as:`) above"

    # -- participants -----------------------------------------------------------------------
    def add_participant(self, name: str, node: Node | None = None, where: str = "") -> bool:
        if name in self.participants:
            if node is not None:
                self.r.problems.add(node, where, f"participant {name!r} is already part of the system")
            return False
        self.participants.append(name)
        self._pending.pop(name, None)
        return True

    def pending_participant(self, name: str, node: Node) -> None:
        """Settings for a participant that is neither built in nor given a module: a step must start it."""
        self._pending[name] = node

    def use_participant(self, node: Node, where: str) -> str | None:
        name = self.r.string(node, where)
        if name is None:
            return None
        return name if self.known_participant(name, node, where) else None

    def known_participant(self, name: str, node: Node, where: str) -> bool:
        if name in self.participants:
            return True
        self.r.problems.add(node, where, f"unknown participant {name!r}; expected one of {', '.join(self.participants)}")
        return False

    def participant_reference(self, node: Node, where: str, expected_name: str | None = None) -> tuple[str, str] | None:
        """MODULE:OBJECT naming a Participant, imported to check it: (the reference, its name)."""
        reference = self.r.string(node, where)
        if reference is None:
            return None
        current_directory_first()  # the rule `up --with` and the participant processes follow
        try:
            participant = load_participant(reference)
        except ValueError as exc:
            self.r.problems.add(node, where, f"expected MODULE:OBJECT naming a Participant: {exc}")
            return None
        if expected_name is not None and participant.name != expected_name:
            self.r.problems.add(node, where, f"{reference} is participant {participant.name!r}, not {expected_name!r}")
            return None
        self._tables[participant.name] = _tables_of(participant)
        return reference, participant.name

    def tables_of(self, name: str) -> dict[str, list[str]] | None:
        """The tables `sagactl state` shows for a participant, with their columns (None: not known here)."""
        if name not in self._tables and name in BUILT_IN_PARTICIPANTS:
            self._tables[name] = _tables_of(load_participant(name))
        return self._tables.get(name)

    def check_pending(self) -> None:
        for name, key_node in self._pending.items():
            self.r.problems.add(key_node, f"participants.{name}", f"unknown participant {name!r}: not built in "
                                "(sale, inventory, payment), no `module:` given and no `start:` step starts it")

    # -- events -----------------------------------------------------------------------------
    def event_type(self, node: Node, where: str) -> str | None:
        if not isinstance(node, ScalarNode):
            self.r.problems.add(node, where, f"expected an event type, got {kind(node)}")
            return None
        name = str(node.value)
        if name not in SUBJECTS:
            self.r.problems.add(node, where, f"unknown event type {name!r}; expected one of {', '.join(SUBJECTS)}")
            return None
        return name


def _tables_of(participant: Any) -> dict[str, list[str]]:
    return {str(table.__tablename__): list(table.model_fields) for table in participant.tables}
