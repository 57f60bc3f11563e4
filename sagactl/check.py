"""`sagactl check`: do the three databases, the stream and the dead-letter list agree?

The rules (each violation names its rule in `check`):
- stock: per product, baseline = stock + quantity of FINALIZED sales + quantity held by sales
  in flight (the stream says which hold stock: inventory debited and has not credited back);
- money: per user, baseline = balance + sum of their payments still charged (one statement in
  payment, so one snapshot);
- payment: every FINALIZED sale has exactly one charge and no refund; every charge or refund
  belongs to an existing sale (whatever its id) of the same user and value; a CANCELED sale
  keeps no charge (once its compensations had time to arrive);
- canceled: no CANCELED sale holds stock (once its compensations had time to arrive); a sale
  expired by its deadline is a CANCELED one like any other (`counts.expired` says how many);
- negative: no stock or balance below zero;
- applied-twice: no event type decided twice for one sale (two distinct events in the stream);
- stuck: no sale PENDING longer than `stuck_after`; names the last event and who acts next;
- dead-letter: the dead-letter list is empty;
- unreachable: a participant did not answer (its rules could not be checked);
- unhealthy: a participant process answered its ping but is not connected and consuming.

On a live system the snapshot is not one instant: a sale with events after the check began,
or PENDING waiting for inventory, may or may not be in the stock read. Such sales widen the
stock equation into a bound (0 <= missing <= their quantity); with no saga in flight it is exact.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import nats.errors

from participants.contract import REASON_DEADLINE, REASON_UNKNOWN_SALE, REFUNDED_PAYMENT, STREAM
from participants.flow import consumer_of, expected_next
from participants.runtime.loader import BUILT_IN
from sagactl.client import SagaClient
from sagactl.errors import Unavailable
from sagactl.snapshot import SaleRecord, Snapshot, read_snapshot
from sagactl.streams.deadletters import DeadLetter, list_dead_letters
from sagactl.streams.histories import SaleHistory, last_seq, read_histories
from sagactl.system.health import healthy, ping_replicas, why_unhealthy

FINALIZED, CANCELED, PENDING = "FINALIZED", "CANCELED", "PENDING"
# Cancels the sale service decides alone: inventory and payment compensate after the fact.
SELF_CANCELED = frozenset({REASON_DEADLINE, REASON_UNKNOWN_SALE})


@dataclass(frozen=True)
class Violation:
    check: str
    subject: str  # what it is about: "product 1", "user 1", "sale 17", "dead letter 3"
    detail: str


@dataclass
class CheckReport:
    violations: list[Violation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "violations": [asdict(v) for v in self.violations],
                "counts": self.counts, "seconds": round(self.seconds, 3)}


async def run_checks(client: SagaClient, stuck_after: float = 30.0) -> CheckReport:
    """Read the participants, the SAGA stream and the dead-letter list; report every violation."""
    started = time.monotonic()
    js = client.nc.jetstream()
    try:
        _, before = await last_seq(js, STREAM)
        snapshot = await read_snapshot(client)
        histories, until = await read_histories(js)
        dead = await list_dead_letters(js)
        pings = await ping_replicas(client.nc, list(BUILT_IN))
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"cannot read the streams: {exc or type(exc).__name__}") from None
    audit = Audit(snapshot, histories, before, dead, time.time(), stuck_after)
    sick = [Violation("unhealthy", f"{r['participant']} replica {r.get('replica', 1)}", why_unhealthy(r))
            for r in pings if not healthy(r)]
    report = CheckReport(audit.violations() + sick, audit.counts(until))
    report.seconds = time.monotonic() - started
    return report


class Audit:
    def __init__(self, snapshot: Snapshot, histories: dict[int, SaleHistory], before: int,
                 dead: list[DeadLetter], now: float, stuck_after: float) -> None:
        self.snapshot = snapshot
        self.histories = histories
        self.before = before  # the stream's last sequence when the databases were read
        self.dead = dead
        self.now = now
        self.stuck_after = stuck_after
        self.sales = snapshot.sales or {}

    def violations(self) -> list[Violation]:
        found = [Violation("unreachable", p, why) for p, why in self.snapshot.unreadable.items()]
        if self.snapshot.stock is not None and self.snapshot.sales is not None:
            found += self.stock()
        if self.snapshot.money is not None:
            found += self.money()
        if self.snapshot.sales is not None and self.snapshot.payments is not None:
            found += self.payments()
        if self.snapshot.sales is not None:
            found += self.canceled() + self.applied_twice() + self.stuck()
        found += [self._dead_letter(letter) for letter in self.dead]
        return found

    def counts(self, until: int) -> dict[str, int]:
        statuses = defaultdict(int)
        for sale in self.sales.values():
            statuses[sale.status.lower()] += 1
        payments = self.snapshot.payments or []
        return {"sales": len(self.sales), **statuses, "payments": sum(p.charged for p in payments),
                "refunds": sum(p.state == "REFUNDED" for p in payments),
                "expired": sum(s.status == CANCELED and s.reason == REASON_DEADLINE for s in self.sales.values()),
                "products": len(self.snapshot.stock or []), "users": len(self.snapshot.money or []),
                "stream_seq": until, "dead_letters": len(self.dead)}

    # -- the rules ------------------------------------------------------------------------
    def _uncertain(self, sale: SaleRecord) -> bool:
        """The stock read may or may not include this sale's debit or credit."""
        history = self.histories.get(sale.id)
        if history is not None and history.last.seq > self.before:
            return True
        if sale.status != PENDING:
            return False
        return history is None or consumer_of(history.last.type) == "inventory"

    def stock(self) -> list[Violation]:
        found = []
        by_product: dict[int, list[SaleRecord]] = defaultdict(list)
        for sale in self.sales.values():
            by_product[sale.product_id].append(sale)
        for product in self.snapshot.stock or []:
            subject = f"product {product.product_id}"
            if product.quantity is None:
                found.append(Violation("stock", subject, f"baseline {product.baseline} but the inventory row is gone"))
                continue
            if product.quantity < 0:
                found.append(Violation("negative", subject, f"stock is {product.quantity}"))
            sold = held = slack = 0
            for sale in by_product.get(product.product_id, []):
                if self._uncertain(sale):
                    slack += sale.quantity
                elif sale.status == FINALIZED:
                    sold += sale.quantity
                elif sale.status != FINALIZED and sale.id in self.histories and self.histories[sale.id].holds_stock:
                    held += sale.quantity
            missing = product.baseline - product.quantity - sold - held
            if not 0 <= missing <= slack:
                within = f" (up to {slack} more may be held by sagas in flight)" if slack else ""
                found.append(Violation("stock", subject, f"baseline {product.baseline} != stock {product.quantity} + "
                                       f"finalized {sold} + held by sagas in flight {held}{within}"))
        return found

    def money(self) -> list[Violation]:
        found = []
        for user in self.snapshot.money or []:
            subject = f"user {user.user_id}"
            if user.balance is None:
                found.append(Violation("money", subject, f"baseline {user.baseline:.2f} but the user row is gone"))
                continue
            if user.balance < 0:
                found.append(Violation("negative", subject, f"balance is {user.balance:.2f}"))
            if user.baseline != user.balance + user.paid:
                found.append(Violation("money", subject, f"baseline {user.baseline:.2f} != balance {user.balance:.2f} "
                                       f"+ payments {user.paid:.2f}"))
        return found

    def payments(self) -> list[Violation]:
        found = []
        charged: dict[int, int] = defaultdict(int)
        for payment in self.snapshot.payments or []:
            subject = f"sale {payment.sale_id}"
            sale = self.sales.get(payment.sale_id)
            if payment.state not in ("CHARGED", "REFUNDED"):
                continue  # refused, or canceled before any charge: no money moved
            charged[payment.sale_id] += payment.charged
            if sale is None:
                found.append(Violation("payment", subject, f"payment {payment.id} ({payment.state} {payment.value:.2f}) "
                                       "is for a sale that does not exist"))
                continue
            if (payment.user_id, payment.value) != (sale.user_id, sale.value):
                found.append(Violation("payment", subject, f"payment {payment.id} is user {payment.user_id}, {payment.value:.2f}; "
                                       f"the sale is user {sale.user_id}, {sale.value:.2f}"))
            if payment.charged and sale.status == CANCELED and not self._settling(sale):
                found.append(Violation("payment", subject, f"CANCELED ({sale.reason}) but payment {payment.id} of "
                                       f"{payment.value:.2f} was never refunded"))
            elif not payment.charged and sale.status == FINALIZED:
                found.append(Violation("payment", subject, f"FINALIZED but payment {payment.id} of {payment.value:.2f} was refunded"))
        refunded = {p.sale_id for p in self.snapshot.payments or [] if p.state == "REFUNDED"}
        for sale in self.sales.values():
            if sale.status == FINALIZED and charged.get(sale.id, 0) != 1:
                found.append(Violation("payment", f"sale {sale.id}", f"FINALIZED with {charged.get(sale.id, 0)} payments"))
            history = self.histories.get(sale.id)
            if history is not None and history.has(REFUNDED_PAYMENT) and sale.id not in refunded:
                found.append(Violation("payment", f"sale {sale.id}", "a REFUNDED_PAYMENT is on the stream but payment "
                                       "holds no refund for it (a refund without a charge)"))
        return found

    def _settling(self, sale: SaleRecord) -> bool:
        """A sale the sale service canceled on its own (deadline, unknown sale) whose compensations
        may still be on their way: its last event is recent, or newer than the databases read."""
        history = self.histories.get(sale.id)
        if history is None or sale.reason not in SELF_CANCELED:
            return False
        return history.last.seq > self.before or self.now - history.last.time <= self.stuck_after

    def canceled(self) -> list[Violation]:
        found = []
        for sale in self.sales.values():
            history = self.histories.get(sale.id)
            if sale.status == CANCELED and history is not None and history.holds_stock and not self._settling(sale):
                found.append(Violation("canceled", f"sale {sale.id}", f"CANCELED ({sale.reason}) but inventory never "
                                       f"credited back its {sale.quantity} unit(s) of product {sale.product_id}"))
        return found

    def applied_twice(self) -> list[Violation]:
        found = []
        for sale_id in self.sales:
            history = self.histories.get(sale_id)
            if history is None:
                continue
            seen: dict[str, list[int]] = defaultdict(list)
            ids: dict[str, set[str]] = defaultdict(set)
            for step in history.steps:
                if step.event_id not in ids[step.type]:
                    ids[step.type].add(step.event_id)
                    seen[step.type].append(step.seq)
            for event_type, seqs in seen.items():
                if len(seqs) > 1:
                    found.append(Violation("applied-twice", f"sale {sale_id}", f"{event_type} decided {len(seqs)} times "
                                           f"(distinct events at stream seq {', '.join(map(str, seqs))})"))
        return found

    def stuck(self) -> list[Violation]:
        found = []
        dead_by_seq = {letter.stream_seq: letter for letter in self.dead}
        # A sale whose CREATED_SALE never reached the stream has no time of its own: it is at
        # least as old as the oldest sale submitted after it.
        oldest_after: dict[int, float] = {}
        floor = float("inf")
        for sale_id in sorted(self.sales, reverse=True):
            history = self.histories.get(sale_id)
            if history is not None:
                floor = min(floor, history.steps[0].time)
            oldest_after[sale_id] = floor
        for sale in self.sales.values():
            if sale.status != PENDING:
                continue
            history = self.histories.get(sale.id)
            age = self.now - (history.steps[0].time if history else oldest_after[sale.id])
            if age <= self.stuck_after:
                continue
            if history is None:
                found.append(Violation("stuck", f"sale {sale.id}", "PENDING and no event of it reached the stream; "
                                       "next: sale should publish CREATED_SALE"))
                continue
            last = history.last
            waiting = expected_next([step.type for step in history.steps])
            actor = waiting[1] if waiting else "nobody (the stream says it ended)"
            detail = (f"PENDING for {age:.0f}s; last event {last.type} (stream seq {last.seq}, from {last.producer}, "
                      f"{self.now - last.time:.0f}s ago); next: {actor} should handle it")
            letter = dead_by_seq.get(last.seq)
            if letter is not None:
                detail += f"; {letter.participant} dead-lettered it (dead letter {letter.seq}: {letter.error})"
            found.append(Violation("stuck", f"sale {sale.id}", detail))
        return found

    def _dead_letter(self, letter: DeadLetter) -> Violation:
        what = letter.event_type + (f" of sale {letter.sale_id}" if letter.sale_id is not None else "")
        return Violation("dead-letter", f"dead letter {letter.seq}", f"{letter.participant} gave up on {what} "
                         f"(stream seq {letter.stream_seq}, {letter.deliveries} deliveries): {letter.error}")
