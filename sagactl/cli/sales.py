"""`sagactl submit` and `sagactl state`: start a saga, and see each service's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from sagactl.cli.common import (
    CredsOption,
    IntervalOption,
    JsonOption,
    NatsUrlOption,
    StateDirOption,
    Terminal,
    TlsCaOption,
    WatchOption,
    handle_errors,
    integer,
    nats_urls,
    positive_seconds,
    print_json,
    run_async,
    state_dir,
)
from sagactl.errors import ExitCode, UsageError
from sagactl.system.connection import use_connection_files
from sagactl.system.supervisor import Supervisor

if TYPE_CHECKING:  # the CLI imports pydantic, nats and the views only in the command that runs
    from participants.contract import Sale


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(submit))
    app.command()(handle_errors(state))


def submit(
    product_id: Annotated[str, typer.Option("--product-id", help="Product to buy (integer >= 1).")],
    user_id: Annotated[str, typer.Option("--user-id", help="Buyer (integer >= 1).")],
    value: Annotated[str, typer.Option("--value", help="Total price, a decimal with at most 2 places, e.g. 20.00.")],
    quantity: Annotated[str, typer.Option("--quantity", help="Units (integer >= 1).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for FINALIZED or CANCELED; exit 1 when CANCELED, 4 when the timeout runs out first.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait (above 0).")] = 30.0,
    deadline: Annotated[float | None, typer.Option("--deadline", help="Cancel the sale ('deadline exceeded') if it is still PENDING after this many seconds (default: up --sale-deadline).", show_default=False)] = None,
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    json: JsonOption = False,
    creds: CredsOption = None,
    tls_ca: TlsCaOption = None,
    *,
    term: Terminal,
) -> None:
    """Submit a sale through the sale service and print its id.

    Example: sagactl submit --product-id 1 --user-id 1 --value 20.00 --quantity 2 --wait
    """
    from participants.contract import STATUS_FINALIZED, ContractError, parse_sale

    try:
        sale = parse_sale(integer(product_id, "--product-id"), integer(user_id, "--user-id"), value,
                          integer(quantity, "--quantity"))
    except ContractError as exc:
        raise UsageError(str(exc).replace("product_id", "--product-id").replace("user_id", "--user-id")
                         .replace("quantity", "--quantity").replace("value:", "--value:")) from None
    positive_seconds(timeout, "--timeout")
    if deadline is not None and not 0 < deadline <= 7 * 24 * 3600:
        raise UsageError(f"--deadline must be more than 0 and at most 604800 seconds, not {deadline:g}")
    use_connection_files(creds, tls_ca)
    urls = nats_urls(Supervisor(state_dir(state)), nats_url)
    result = run_async(_submit(urls, sale, wait, timeout, deadline))
    if json:
        print_json(result)
    elif wait:
        reason = f" ({result['reason']})" if result.get("reason") else ""
        term.out.print(f"sale {result['sale_id']}: {result['status']}{reason}")
    else:
        term.out.print(str(result["sale_id"]))
    if wait and result["status"] != STATUS_FINALIZED:
        raise typer.Exit(int(ExitCode.FAILED))


async def _submit(urls: list[str], sale: Sale, wait: bool, timeout: float, deadline: float | None = None) -> dict[str, Any]:
    from participants.contract import STATUS_PENDING
    from sagactl.client import SagaClient

    client = await SagaClient.connect(urls)
    try:
        if wait:
            await client.watch_terminal()
        sale_id = await client.submit(sale, deadline=deadline)
        if not wait:
            return {"sale_id": sale_id, "status": STATUS_PENDING}
        outcome = await client.wait_terminal(sale_id, timeout)
        return {"sale_id": sale_id, "status": outcome.status, "reason": outcome.reason}
    finally:
        await client.close()


def state(state: StateDirOption = None, nats_url: NatsUrlOption = None, json: JsonOption = False,
          watch: WatchOption = False, interval: IntervalOption = 1.0, creds: CredsOption = None, tls_ca: TlsCaOption = None,
          *, term: Terminal) -> None:
    """Print each participant's tables, as each reports its own database.

    Shows the built-ins, every participant this state dir started (`up --with`) and every other
    one that answers discovery on NATS. Exit 1 when one of them does not answer. --watch redraws
    them in place, changed rows highlighted.

    Example: sagactl state --json
    """
    from sagactl.views.tables import render_state, state_that_fits

    use_connection_files(creds, tls_ca)
    supervisor = Supervisor(state_dir(state))
    urls = nats_urls(supervisor, nats_url)
    expected = supervisor.expected_participants()
    out = term.out
    if watch:
        from sagactl.views import live

        def draw(tables: dict[str, Any]) -> Any:  # in a terminal, every table on one screen: its newest rows
            return state_that_fits(tables, out, out.height - 1) if out.is_terminal else render_state(tables)

        return live.watch(lambda: run_async(_state(urls, expected)), draw, interval, json, out)
    tables = run_async(_state(urls, expected))
    if json:
        print_json(tables)
    else:
        out.print(render_state(tables))
    if any(t is None for t in tables.values()):
        raise typer.Exit(int(ExitCode.FAILED))


async def _state(urls: list[str], expected: list[str]) -> dict[str, Any]:
    from sagactl.client import SagaClient

    client = await SagaClient.connect(urls)
    try:
        return await client.state(await client.participant_names(expected))
    finally:
        await client.close()
