"""Read a scenario's `steps:` into the model: one action per step, checked against what is named above it."""

from __future__ import annotations

import orjson
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from participants.contract import SUBJECT_ROOT, TERMINAL_STATUSES, ContractError, parse_money, parse_sale
from sagactl.scenario.expectations import read_expectations
from sagactl.scenario.model import (
    ExpectStep,
    KillNatsLeaderStep,
    KillStep,
    PauseStep,
    PublishStep,
    ResumeStep,
    RestartStep,
    SleepStep,
    StartNatsStep,
    StartStep,
    ScenarioStep,
    StopNatsStep,
    SubmitStep,
    WaitExitStep,
    WaitStep,
)
from sagactl.scenario.scope import Names
from sagactl.scenario.yamlnodes import Reader, kind, line_of

# Each step is a mapping with one action key and that action's options (or a bare action name).
STEP_OPTIONS: dict[str, tuple[str, ...]] = {
    "submit": ("as", "repeat", "concurrency", "deadline"),
    "wait": ("status", "timeout"),
    "wait_exit": ("timeout",),
    "kill": ("replica",),
    "pause": (),
    "resume": (),
    "restart": (),
    "start": (),
    "stop_nats": (),
    "start_nats": (),
    "kill_nats_leader": (),
    "publish": (),
    "sleep": (),
    "expect": ("within",),
}
BARE_ACTIONS = ("stop_nats", "start_nats", "kill_nats_leader")
SALE_FIELDS = ("product_id", "user_id", "value", "quantity")
DEFAULT_TIMEOUT_S = 10.0


def read_steps(reader: Reader, names: Names, node: Node) -> list[ScenarioStep]:
    steps_reader = _StepReader(reader, names)
    steps = []
    for index, step_node in enumerate(reader.sequence(node, "steps") or [], start=1):
        step = steps_reader.step(step_node, f"steps[{index}]")
        if step is not None:
            steps.append(step)
    return steps


class _StepReader:
    def __init__(self, reader: Reader, names: Names) -> None:
        self.r = reader
        self.names = names

    def step(self, node: Node, where: str) -> ScenarioStep | None:
        line = line_of(node)
        if isinstance(node, ScalarNode) and node.value in BARE_ACTIONS:
            return {"stop_nats": StopNatsStep, "start_nats": StartNatsStep, "kill_nats_leader": KillNatsLeaderStep}[node.value](line=line)
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

    def _step_submit(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        fields = self.r.mapping(node, where, SALE_FIELDS, required=SALE_FIELDS)
        repeat = self.r.integer(options["repeat"], f"{where} repeat", minimum=1) if "repeat" in options else 1
        concurrency = self.r.integer(options["concurrency"], f"{where} concurrency", minimum=1) if "concurrency" in options else 1
        name = self.names.define_sale(options["as"], where, group="repeat" in options) if "as" in options else None
        deadline = self.r.number(options["deadline"], f"{where} deadline", 0.001, 7 * 24 * 3600) if "deadline" in options else None
        if not fields or len(fields) != len(SALE_FIELDS):
            return None
        # Each field checked on its own, so every wrong one is reported (not only the first).
        problems_before = len(self.r.problems.items)
        for key in ("product_id", "user_id", "quantity"):
            if key in fields:
                self.r.integer(fields[key][1], f"{where}.{key}", minimum=1)
        raw = {k: (self.r.money_text(v[1], f"{where}.value") if k == "value" else self.r.plain(v[1])) for k, v in fields.items()}
        if raw.get("value") is not None:
            try:
                parse_money(raw["value"])
            except ContractError as exc:
                self.r.problems.add(fields["value"][1], f"{where}.value", str(exc))
        if len(self.r.problems.items) > problems_before:
            return None
        try:
            sale = parse_sale(raw["product_id"], raw["user_id"], raw["value"], raw["quantity"])
        except ContractError as exc:
            field_name = str(exc).split(":", 1)[0]
            self.r.problems.add(fields.get(field_name, (node, node))[1], where, str(exc))
            return None
        return SubmitStep(sale=sale, name=name, repeat=repeat or 1, concurrency=concurrency or 1,
                          group="repeat" in options, deadline_s=deadline, line=line)

    def _step_wait(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        status = self.r.choice(options["status"], f"{where} status", TERMINAL_STATUSES) if "status" in options else None
        timeout = self.r.number(options["timeout"], f"{where} timeout", 0.001) if "timeout" in options else DEFAULT_TIMEOUT_S
        if isinstance(node, ScalarNode) and node.value == "all":
            return WaitStep(names=None, status=status, timeout_s=timeout or DEFAULT_TIMEOUT_S, line=line)
        targets = node.value if isinstance(node, SequenceNode) else [node]
        if not targets or isinstance(node, MappingNode):
            self.r.problems.add(node, where, f"expected all, a sale name or a list of sale names, got {kind(node)}")
            return None
        names = [self.names.use_sale(target, where) for target in targets]
        if None in names:
            return None
        return WaitStep(names=tuple(n for n in names if n), status=status, timeout_s=timeout or DEFAULT_TIMEOUT_S, line=line)

    def _step_wait_exit(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        participant = self.names.use_participant(node, where)
        timeout = self.r.number(options["timeout"], f"{where} timeout", 0.001) if "timeout" in options else DEFAULT_TIMEOUT_S
        return None if participant is None else WaitExitStep(participant=participant, timeout_s=timeout or DEFAULT_TIMEOUT_S, line=line)

    def _step_kill(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        participant = self.names.use_participant(node, where)
        replica = self.r.integer(options["replica"], f"{where} replica", minimum=1) if "replica" in options else None
        return None if participant is None else KillStep(participant=participant, replica=replica, line=line)

    def _step_pause(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        participant = self.names.use_participant(node, where)
        return None if participant is None else PauseStep(participant=participant, line=line)

    def _step_resume(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        participant = self.names.use_participant(node, where)
        return None if participant is None else ResumeStep(participant=participant, line=line)

    def _step_restart(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        participant = self.names.use_participant(node, where)
        return None if participant is None else RestartStep(participant=participant, line=line)

    def _step_start(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        found = self.names.participant_reference(node, where)
        if found is None:
            return None
        reference, name = found
        if not self.names.add_participant(name, node, where):
            return None
        return StartStep(name=name, reference=reference, line=line)

    def _step_stop_nats(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        return StopNatsStep(line=line)

    def _step_start_nats(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        return StartNatsStep(line=line)

    def _step_kill_nats_leader(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        return KillNatsLeaderStep(line=line)

    def _step_sleep(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        seconds = self.r.number(node, where, 0.0, 600.0)
        return None if seconds is None else SleepStep(seconds=seconds, line=line)

    def _step_expect(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
        within = self.r.number(options["within"], f"{where} within", 0.0, 600.0) if "within" in options else 0.0
        return ExpectStep(expect=read_expectations(self.r, self.names, node, where), within_s=within or 0.0, line=line)

    def _step_publish(self, node: Node, options: dict[str, Node], where: str, line: int) -> ScenarioStep | None:
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
