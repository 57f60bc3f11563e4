"""Prometheus metrics: every participant process serves /metrics, says where, and counts what it
did; `sagactl metrics` merges them. Real nats-server, real participant processes, real scrapes."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from polling import wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_cli import runner, sagactl

from participants.contract import FINALIZED_SALE
from participants.runtime.loader import BUILT_IN
from sagactl.cli.main import app
from sagactl.system.processes import free_port
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor
from sagactl.testing import SagaHarness

METERED = "metered:participant"  # tests/metered.py


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def test_a_participant_counts_every_outcome_and_serves_its_own_metric(saga_harness: SagaHarness) -> None:
    metered = saga_harness.start(METERED, env={"SAGACTL_MAX_DELIVER": "2"})
    url = metered.wait_logged("ready")["metrics_url"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    finalized = saga_harness.event(FINALIZED_SALE, sale_id=1)
    saga_harness.publish(finalized)
    metered.wait_logged("handled", event_id=finalized.event_id)
    saga_harness.publish_again(finalized)  # a copy under a new message id: the inbox makes it a duplicate
    saga_harness.publish(saga_harness.event(FINALIZED_SALE, sale_id=2, quantity=99))  # raises: retried, then parked

    def counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        samples = scrape(url)
        done = value(samples, "sagactl_events_handled_total", outcome="dead_lettered") == 1 and \
            value(samples, "sagactl_events_handled_total", outcome="duplicate") == 1
        return samples if done else None

    samples = wait_for(counted, what="the duplicate and the dead letter to be counted")
    handled = {dict(ls)["outcome"]: v for (n, ls), v in samples.items() if n == "sagactl_events_handled_total"}
    assert handled == {"applied": 1, "duplicate": 1, "retried": 1, "dead_lettered": 1}
    assert value(samples, "sagactl_events_handled_total", participant="metered", type=FINALIZED_SALE) == 4
    assert value(samples, "sagactl_redeliveries_total") == 1  # the poison's second delivery
    assert value(samples, "sagactl_dead_letters_total") == 1
    assert value(samples, "metered_finalized_total") == 1  # the participant's own metric
    assert value(samples, "sagactl_batch_size_sum") == 4 and value(samples, "sagactl_handle_seconds_count") >= 3
    assert value(samples, "sagactl_outbox_backlog") == 0
    assert value(samples, "process_resident_memory_bytes") > 0
    wait_for(lambda: value(scrape(url), "sagactl_inbox_rows") == 1, what="the sampled inbox count")


def test_status_list_and_metrics_show_the_whole_system(system: Supervisor) -> None:
    """On each backend (the inbox is counted with SQL of each)."""
    for value_, quantity in (("20.00", "2"), ("69.99", "10"), ("500.00", "1")):  # finalized, out of stock, refused
        result = sagactl(system, "submit", "--product-id", "1", "--user-id", "1", "--value", value_,
                         "--quantity", quantity, "--wait")
        assert result.exit_code in (0, 1), result.output
    status = sagactl(system, "status", "--json")
    assert status.exit_code == 0, status.output
    urls = {p["name"]: p["metrics_url"] for p in json.loads(status.stdout)["participants"]}
    assert set(urls) == {"sale", "inventory", "payment"} and all(u.startswith("http://127.0.0.1:") for u in urls.values())
    listed = sagactl(system, "participant", "list", "--json")
    assert {p["participant"]: p["metrics_url"] for p in json.loads(listed.stdout)} == urls

    sale = scrape(urls["sale"])
    assert value(sale, "sagactl_sagas_total", status="FINALIZED", reason="") == 1
    assert value(sale, "sagactl_sagas_total", status="CANCELED", reason="out of stock") == 1
    assert value(sale, "sagactl_sagas_total", status="CANCELED", reason="insufficient balance") == 1
    assert value(sale, "sagactl_saga_duration_seconds_count") == 3

    def merged() -> dict[str, Any] | None:
        result = sagactl(system, "metrics", "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        inventory = sum(s["value"] for s in report["samples"] if s["name"] == "sagactl_events_handled_total"
                        and s["labels"]["participant"] == "inventory" and s["labels"]["type"] in ("CREATED_SALE", "FAILED_PAYMENT"))
        return report if inventory == 4 else None  # CREATED_SALE x3, FAILED_PAYMENT x1

    report = wait_for(merged, what="sagactl metrics to see inventory's four events")
    assert {(s["participant"], s["replica"]) for s in report["participants"]} == {("sale", 1), ("inventory", 1), ("payment", 1)}
    assert all("error" not in s for s in report["participants"])
    cpu = {s["labels"]["participant"] for s in report["samples"] if s["name"] == "process_cpu_seconds_total"}
    assert cpu == {"sale", "inventory", "payment"}  # the process metrics are told apart by participant
    table = runner.invoke(app, ["metrics", "--state-dir", str(system.state.root)], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "insufficient balance" in table.stdout and "inventory" in table.stdout
    def inbox_matches() -> bool:  # one inbox row per event inventory applied
        samples = scrape(urls["inventory"])
        return value(samples, "sagactl_inbox_rows") == value(samples, "sagactl_events_handled_total", outcome="applied") >= 4

    wait_for(inbox_matches, what="inventory's sampled inbox rows")
    targets = json.loads(sagactl(system, "metrics", "--targets").stdout)  # Prometheus file_sd
    assert {f"http://{t['targets'][0]}{t['labels']['__metrics_path__']}": t["labels"]["participant"] for t in targets} == \
        {url: name for name, url in urls.items()}


def test_a_fixed_port_off_and_a_bad_port(nats_url: str, state: StateDir) -> None:
    supervisor = Supervisor(state)
    port = free_port()
    try:
        supervisor.up(nats_url, participants={"inventory": BUILT_IN["inventory"], "payment": BUILT_IN["payment"]},
                      extra_env={"inventory": {"SAGACTL_METRICS_PORT": str(port)}, "payment": {"SAGACTL_METRICS": "off"}})
        urls = {p["name"]: p["metrics_url"] for p in json.loads(sagactl(supervisor, "status", "--json").stdout)["participants"]}
        assert urls == {"inventory": f"http://127.0.0.1:{port}/metrics", "payment": None}
        assert value(scrape(urls["inventory"]), "sagactl_outbox_backlog", participant="inventory") == 0
        with pytest.raises(Exception, match="exited"):
            supervisor.up(nats_url, participants={"sale": BUILT_IN["sale"]}, extra_env={"sale": {"SAGACTL_METRICS_PORT": "http"}})
        assert "SAGACTL_METRICS_PORT must be a port number" in state.log_file("sale").read_text()
    finally:
        supervisor.down()
