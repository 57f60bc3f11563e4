"""Read a scenario file into the model, reporting every problem with its file and line.

Nothing is started before a file has loaded without a problem: `sagactl run` and
`sagactl scenario validate` both call `load`, which raises `ScenarioInvalid` with one line per
problem (`file:line: where: what was expected`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from participants.contract import SUBJECT_ROOT, ContractError, parse_money, parse_sale
from participants.runtime.crashpoints import CRASH_POINTS
from participants.runtime.loader import load_participant
from sagactl.errors import UsageError
from sagactl.scenario.expectations import read_expectations
from sagactl.scenario.model import (
    BUILT_IN_PARTICIPANTS,
    TERMINAL_STATUSES,
    Crash,
    Expectations,
    ExpectStep,
    KillStep,
    ParticipantSettings,
    PublishStep,
    RestartStep,
    Scenario,
    Setup,
    SleepStep,
    StartNatsStep,
    StartStep,
    Step,
    StopNatsStep,
    SubmitStep,
    UserSetup,
    WaitExitStep,
    WaitStep,
)
from sagactl.scenario.names import Names
from sagactl.scenario.yamlnodes import Problems, Reader, compose, kind, line_of

TOP_KEYS = ("name", "description", "setup", "participants", "steps", "expect")
# Each step is a mapping with one action key and that action's options (or a bare action name).
STEP_OPTIONS: dict[str, tuple[str, ...]] = {
    "submit": ("as", "repeat", "concurrency"),
    "wait": ("status", "timeout"),
    "wait_exit": ("timeout",),
    "kill": ("replica",),
    "restart": (),
    "start": (),
    "stop_nats": (),
    "start_nats": (),
    "publish": (),
    "sleep": (),
    "expect": ("within",),
}
BARE_ACTIONS = ("stop_nats", "start_nats")
SALE_FIELDS = ("product_id", "user_id", "value", "quantity")


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
        steps = self._steps(top["steps"][1]) if "steps" in top else []
        expect = read_expectations(self.r, self.names, top["expect"][1], "expect") if "expect" in top else Expectations()
        self.names.check_pending()
        return Scenario(name or default_name, (description or "").strip(), tuple(steps), expect, setup,
                        participants, self.source)

    # -- setup and participants ---------------------------------------------------------------
    def _setup(self, node: Node) -> Setup:
        keys = self.r.mapping(node, "setup", ("products", "users")) or {}
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
        return Setup(products, users)

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
            keys = self.r.mapping(value_node, where, ("replicas", "faults", "module"))
            if keys is None:
                continue
            replicas = self.r.integer(keys["replicas"][1], f"{where}.replicas", minimum=1) if "replicas" in keys else 1
            module = self._module(keys["module"][1], f"{where}.module", str(name)) if "module" in keys else None
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
            result[str(name)] = ParticipantSettings(replicas or 1, fail_rate, delay_ms, crash, module)
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

    def _module(self, node: Node, where: str, expected_name: str | None = None) -> str | None:
        reference = self.r.string(node, where)
        if reference is None:
            return None
        try:
            participant = load_participant(reference)
        except ValueError as exc:
            self.r.problems.add(node, where, f"expected MODULE:OBJECT naming a Participant: {exc}")
            return None
        if expected_name is not None and participant.name != expected_name:
            self.r.problems.add(node, where, f"{reference} is participant {participant.name!r}, not {expected_name!r}")
            return None
        return reference

    # -- steps ------------------------------------------------------------------------------
    def _steps(self, node: Node) -> list[Step]:
        steps = []
        for index, step_node in enumerate(self.r.sequence(node, "steps") or [], start=1):
            step = self._step(step_node, f"steps[{index}]")
            if step is not None:
                steps.append(step)
        return steps

    def _step(self, node: Node, where: str) -> Step | None:
        line = line_of(node)
        if isinstance(node, ScalarNode) and node.value in BARE_ACTIONS:
            return StopNatsStep(line=line) if node.value == "stop_nats" else StartNatsStep(line=line)
        keys = self.r.mapping(node, where)
        if keys is None:
            return None
        actions = [k for k in keys if k in STEP_OPTIONS]
        if len(actions) != 1:
            found = (f"found {', '.join(map(str, actions))}" if actions
                     else f"found {', '.join(repr(k) for k in keys) or 'nothing'}")
            self.r.problems.add(node, where, f"expected exactly one action of {', '.join(STEP_OPTIONS)}; {found}")
            return None
        action = actions[0]
        for key, (key_node, _) in keys.items():
            if key != action and key not in STEP_OPTIONS[action]:
                allowed = ", ".join(STEP_OPTIONS[action]) or "no options"
                self.r.problems.add(key_node, where, f"unknown key {key!r} for {action}; it takes {allowed}")
        value = keys[action][1]
        options = {k: v[1] for k, v in keys.items() if k != action}
        where = f"{where}.{action}"
        build = getattr(self, f"_step_{action}")
        return build(value, options, where, line)

    def _step_submit(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        fields = self.r.mapping(node, where, SALE_FIELDS, required=SALE_FIELDS)
        repeat = self.r.integer(options["repeat"], f"{where} repeat", minimum=1) if "repeat" in options else 1
        concurrency = self.r.integer(options["concurrency"], f"{where} concurrency", minimum=1) if "concurrency" in options else 1
        name = self.names.define_sale(options["as"], where, group="repeat" in options) if "as" in options else None
        if not fields or len(fields) != len(SALE_FIELDS):
            return None
        raw = {k: (self.r.money_text(v[1], f"{where}.value") if k == "value" else self.r.plain(v[1])) for k, v in fields.items()}
        try:
            sale = parse_sale(raw["product_id"], raw["user_id"], raw["value"], raw["quantity"])
        except ContractError as exc:
            field_name = str(exc).split(":", 1)[0]
            self.r.problems.add(fields.get(field_name, (node, node))[1], where, str(exc))
            return None
        return SubmitStep(sale=sale, name=name, repeat=repeat or 1, concurrency=concurrency or 1,
                          group="repeat" in options, line=line)

    def _step_wait(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        status = self.r.choice(options["status"], f"{where} status", TERMINAL_STATUSES) if "status" in options else None
        timeout = self.r.number(options["timeout"], f"{where} timeout", 0.001) if "timeout" in options else 10.0
        if isinstance(node, ScalarNode) and node.value == "all":
            return WaitStep(names=None, status=status, timeout_s=timeout or 10.0, line=line)
        targets = node.value if isinstance(node, SequenceNode) else [node]
        if not targets or isinstance(node, MappingNode):
            self.r.problems.add(node, where, f"expected all, a sale name or a list of sale names, got {kind(node)}")
            return None
        names = [self.names.use_sale(target, where) for target in targets]
        if None in names:
            return None
        return WaitStep(names=tuple(n for n in names if n), status=status, timeout_s=timeout or 10.0, line=line)

    def _step_wait_exit(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        participant = self.names.use_participant(node, where)
        timeout = self.r.number(options["timeout"], f"{where} timeout", 0.001) if "timeout" in options else 10.0
        return None if participant is None else WaitExitStep(participant=participant, timeout_s=timeout or 10.0, line=line)

    def _step_kill(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        participant = self.names.use_participant(node, where)
        replica = self.r.integer(options["replica"], f"{where} replica", minimum=1) if "replica" in options else None
        return None if participant is None else KillStep(participant=participant, replica=replica, line=line)

    def _step_restart(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        participant = self.names.use_participant(node, where)
        return None if participant is None else RestartStep(participant=participant, line=line)

    def _step_start(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        reference = self._module(node, where)
        if reference is None:
            return None
        name = load_participant(reference).name
        if not self.names.add_participant(name, node, where):
            return None
        return StartStep(name=name, reference=reference, line=line)

    def _step_stop_nats(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        return StopNatsStep(line=line)

    def _step_start_nats(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        return StartNatsStep(line=line)

    def _step_sleep(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        seconds = self.r.number(node, where, 0.0, 600.0)
        return None if seconds is None else SleepStep(seconds=seconds, line=line)

    def _step_expect(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        within = self.r.number(options["within"], f"{where} within", 0.0, 600.0) if "within" in options else 0.0
        return ExpectStep(expect=read_expectations(self.r, self.names, node, where), within_s=within or 0.0, line=line)

    def _step_publish(self, node: Node, options: dict[str, Node], where: str, line: int) -> Step | None:
        keys = self.r.mapping(node, where, ("subject", "body", "copy", "type", "msg_id"))
        if keys is None:
            return None
        msg_id = self.r.string(keys["msg_id"][1], f"{where}.msg_id", allow_numbers=True) if "msg_id" in keys else None
        if "copy" in keys:
            if "subject" in keys or "body" in keys or "type" not in keys:
                self.r.problems.add(node, where, "expected either copy and type, or subject and body")
                return None
            name = self.names.use_sale(keys["copy"][1], f"{where}.copy")
            event_type = self.names.event_type(keys["type"][1], f"{where}.type")
            if name is None or event_type is None:
                return None
            return PublishStep(copy_of=name, copy_type=event_type, msg_id=msg_id, line=line)
        if "subject" not in keys or "body" not in keys or "type" in keys:
            self.r.problems.add(node, where, "expected either subject and body, or copy and type")
            return None
        subject = self.r.string(keys["subject"][1], f"{where}.subject")
        if subject is not None and not subject.startswith(f"{SUBJECT_ROOT}."):
            self.r.problems.add(keys["subject"][1], f"{where}.subject",
                                f"expected a subject of the saga stream ({SUBJECT_ROOT}.…), got {subject!r}")
            subject = None
        body_node = keys["body"][1]
        body = self.r.plain(body_node)
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, dict):
            data = orjson.dumps(body, default=str)
        else:
            self.r.problems.add(body_node, f"{where}.body", f"expected a string or a mapping, got {kind(body_node)}")
            return None
        return None if subject is None else PublishStep(subject=subject, body=data, msg_id=msg_id, line=line)
