"""Read a scenario file into the model, reporting every problem with its file and line.

Nothing is started before a file has loaded without a problem: `sagactl run` and
`sagactl scenario validate` both call `load`, which raises `ScenarioInvalid` with one line per
problem (`file:line: where: what was expected`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node

from participants.contract import ContractError, parse_money
from participants.runtime.crashpoints import CRASH_POINTS
from sagactl.errors import UsageError
from sagactl.scenario.expectations import read_expectations
from sagactl.scenario.model import (
    BUILT_IN_PARTICIPANTS,
    Crash,
    Expectations,
    KillNatsLeaderStep,
    ParticipantSettings,
    Scenario,
    Setup,
    UserSetup,
)
from sagactl.scenario.scope import Names
from sagactl.scenario.steps import read_steps
from sagactl.scenario.yamlnodes import Problems, Reader, compose

TOP_KEYS = ("name", "description", "cluster", "setup", "participants", "steps", "expect")


class ScenarioInvalid(UsageError):
    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"scenario {path} is invalid ({count}):\n" + "\n".join(problems))


def shipped_dir() -> Path:
    packaged = Path(__file__).resolve().parent.parent / "scenarios"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent.parent / "scenarios"


def shipped_scenarios() -> dict[str, Path]:
    return {path.stem: path for path in sorted(shipped_dir().glob("*.yaml"))}


def resolve(name_or_path: str) -> Path:
    """A shipped scenario's name (`success`) or a path to a file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.is_dir():
            raise UsageError(f"{name_or_path} is a directory, not a scenario file (give a .yaml file in it)")
        if not path.is_file():
            raise UsageError(f"scenario file {name_or_path} does not exist")
        return path
    shipped = shipped_scenarios()
    if name_or_path not in shipped:
        raise UsageError(f"unknown scenario {name_or_path!r}; shipped: {', '.join(shipped)}")
    return shipped[name_or_path]


def load(path: Path) -> Scenario:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read scenario {path}: {exc.strerror}") from None
    return loads(text, str(path), default_name=path.stem)


def loads(text: str, source: str, default_name: str = "scenario") -> Scenario:
    problems = Problems(source)
    root = compose(text, problems)
    scenario = None
    if root is None and not problems:
        problems.add(1, "", "the file is empty; expected a mapping with name, steps and expect")
    elif root is not None:
        scenario = _Builder(Reader(problems), source).scenario(root, default_name)
    if problems or scenario is None:
        raise ScenarioInvalid(source, problems.lines())
    return scenario


class _Builder:
    def __init__(self, reader: Reader, source: str) -> None:
        self.r = reader
        self.source = source
        self.names = Names(reader)

    def scenario(self, root: Node, default_name: str) -> Scenario | None:
        top = self.r.mapping(root, "", TOP_KEYS, required=("steps",))
        if top is None:
            return None
        name = self.r.string(top["name"][1], "name") if "name" in top else default_name
        description = self.r.string(top["description"][1], "description") if "description" in top else ""
        setup = self._setup(top["setup"][1]) if "setup" in top else Setup()
        participants = self._participants(top["participants"][1]) if "participants" in top else {}
        steps = read_steps(self.r, self.names, top["steps"][1]) if "steps" in top else []
        expect = read_expectations(self.r, self.names, top["expect"][1], "expect") if "expect" in top else Expectations()
        cluster = self.r.integer(top["cluster"][1], "cluster", minimum=2) if "cluster" in top else None
        if cluster is not None and cluster > 5:
            self.r.problems.add(top["cluster"][1], "cluster", "expected 2 to 5 nodes")
        for step in steps:
            if isinstance(step, KillNatsLeaderStep) and cluster is None:
                self.r.problems.add(step.line, "kill_nats_leader", "needs `cluster: N` at the top of the file")
        self.names.check_pending()
        return Scenario(name or default_name, (description or "").strip(), tuple(steps), expect, setup,
                        participants, self.source, cluster)

    # -- setup and participants ---------------------------------------------------------------
    def _setup(self, node: Node) -> Setup:
        keys = self.r.mapping(node, "setup", ("products", "users", "deadline")) or {}
        products: dict[int, int] = {}
        users: dict[int, UserSetup] = {}
        if "products" in keys:
            for key, (key_node, value_node) in (self.r.mapping(keys["products"][1], "setup.products") or {}).items():
                product_id = self._id(key, key_node, "setup.products", "product id")
                quantity = self.r.integer(value_node, f"setup.products.{key}", minimum=0)
                if product_id is not None and quantity is not None:
                    products[product_id] = quantity
        if "users" in keys:
            for key, (key_node, value_node) in (self.r.mapping(keys["users"][1], "setup.users") or {}).items():
                user_id = self._id(key, key_node, "setup.users", "user id")
                user = self._user(value_node, f"setup.users.{key}")
                if user_id is not None and user is not None:
                    users[user_id] = user
        deadline = self.r.number(keys["deadline"][1], "setup.deadline", 0.001, 7 * 24 * 3600) if "deadline" in keys else None
        return Setup(products, users, deadline)

    def _id(self, key: Any, node: Node, where: str, what: str) -> int | None:
        if isinstance(key, int) and not isinstance(key, bool) and key >= 1:
            return key
        self.r.problems.add(node, where, f"expected a {what} (an integer >= 1), got {key!r}")
        return None

    def _user(self, node: Node, where: str) -> UserSetup | None:
        """`1: 100.00` or `1: {balance: 100.00, name: alice}`."""
        balance_node, name = node, None
        if isinstance(node, MappingNode):
            keys = self.r.mapping(node, where, ("balance", "name"), required=("balance",))
            if keys is None or "balance" not in keys:
                return None
            balance_node = keys["balance"][1]
            name = self.r.string(keys["name"][1], f"{where}.name") if "name" in keys else None
        balance = self._money(balance_node, f"{where}.balance" if balance_node is not node else where)
        return None if balance is None else UserSetup(balance, name)

    def _money(self, node: Node, where: str) -> Any:
        text = self.r.money_text(node, where)
        if text is None:
            return None
        try:
            return parse_money(text)
        except ContractError as exc:
            self.r.problems.add(node, where, str(exc))
            return None

    def _participants(self, node: Node) -> dict[str, ParticipantSettings]:
        result: dict[str, ParticipantSettings] = {}
        for name, (key_node, value_node) in (self.r.mapping(node, "participants") or {}).items():
            where = f"participants.{name}"
            keys = self.r.mapping(value_node, where, ("replicas", "faults", "module", "ack_wait"))
            if keys is None:
                continue
            replicas = self.r.integer(keys["replicas"][1], f"{where}.replicas", minimum=1) if "replicas" in keys else 1
            found = self.names.participant_reference(keys["module"][1], f"{where}.module", str(name)) if "module" in keys else None
            module = found[0] if found else None
            fail_rate, delay_ms, crash = 0.0, 0.0, None
            if "faults" in keys:
                faults = self.r.mapping(keys["faults"][1], f"{where}.faults", ("fail", "delay_ms", "crash")) or {}
                if "fail" in faults:
                    fail_rate = self.r.number(faults["fail"][1], f"{where}.faults.fail", 0.0, 1.0) or 0.0
                if "delay_ms" in faults:
                    delay_ms = self.r.number(faults["delay_ms"][1], f"{where}.faults.delay_ms", 0.0, 60_000) or 0.0
                if "crash" in faults:
                    crash = self._crash(faults["crash"][1], f"{where}.faults.crash")
            if module is None and str(name) not in BUILT_IN_PARTICIPANTS:
                self.names.pending_participant(str(name), key_node)
            else:
                self.names.add_participant(str(name))
            ack_wait = self.r.number(keys["ack_wait"][1], f"{where}.ack_wait", 0.5, 3600) if "ack_wait" in keys else None
            result[str(name)] = ParticipantSettings(replicas or 1, fail_rate, delay_ms, crash, module, ack_wait)
        return result

    def _crash(self, node: Node, where: str) -> Crash | None:
        """`after_commit` (the first time) or `after_commit:3` (the third time), as SAGACTL_CRASH_POINT."""
        text = self.r.string(node, where)
        if text is None:
            return None
        point, _, count = text.partition(":")
        if point not in CRASH_POINTS or (count and (not count.isdigit() or int(count) < 1)):
            self.r.problems.add(node, where, f"expected POINT or POINT:N with POINT one of {', '.join(CRASH_POINTS)}"
                                f" and N >= 1, got {text!r}")
            return None
        return Crash(point, int(count or 1))
