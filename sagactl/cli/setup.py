"""`sagactl setup`: give products stock and users money on a running system (inventory and payment's `setup`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import typer

from sagactl.cli.common import (
    CredsOption,
    JsonOption,
    NatsUrlOption,
    StateDirOption,
    Terminal,
    TlsCaOption,
    handle_errors,
    integer,
    nats_urls,
    print_json,
    run_async,
    state_dir,
)
from sagactl.errors import UsageError
from sagactl.system.connection import use_connection_files
from sagactl.system.supervisor import Supervisor


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(setup))


def setup(
    product: Annotated[list[str], typer.Option("--product", help="Set a product's stock, ID=UNITS (repeatable); a new id adds the product.")] = [],
    user: Annotated[list[str], typer.Option("--user", help="Set a user's balance, ID=BALANCE (repeatable); a new id adds the user.")] = [],
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    json: JsonOption = False,
    creds: CredsOption = None,
    tls_ca: TlsCaOption = None,
    *,
    term: Terminal,
) -> None:
    """Set products' stock and users' balances on the running system, outside a scenario.

    Inventory and payment apply it in one transaction each; `sagactl check` still holds, as the
    stock and money a sale already took stay accounted for.

    Example: sagactl setup --product 1=100 --product 2=5 --user 1=500.00
    """
    from participants.contract import ContractError, parse_money

    if not product and not user:
        raise UsageError("nothing to set up: give --product ID=UNITS and/or --user ID=BALANCE")
    products = {str(integer(i, "--product ID")): integer(n, "--product UNITS", minimum=0)
                for i, n in (_pair(spec, "--product", "ID=UNITS") for spec in product)}
    users: dict[str, Any] = {}
    for raw_id, raw_balance in (_pair(spec, "--user", "ID=BALANCE") for spec in user):
        try:
            balance: Decimal = parse_money(raw_balance)
        except ContractError as exc:
            raise UsageError(f"--user {raw_id}={raw_balance}: {exc}") from None
        users[str(integer(raw_id, "--user ID"))] = {"balance": f"{balance:.2f}"}
    use_connection_files(creds, tls_ca)
    urls = nats_urls(Supervisor(state_dir(state)), nats_url)
    run_async(_setup(urls, products, users))
    if json:
        print_json({"products": {int(k): v for k, v in products.items()},
                    "users": {int(k): v["balance"] for k, v in users.items()}})
        return
    for product_id, units in products.items():
        term.out.print(f"product {product_id}: {units} units")
    for user_id, fields in users.items():
        term.out.print(f"user {user_id}: balance {fields['balance']}")


def _pair(spec: str, option: str, form: str) -> tuple[str, str]:
    left, sep, right = spec.partition("=")
    if not sep or not left.strip() or not right.strip():
        raise UsageError(f"{option} takes {form}, not {spec!r}")
    return left.strip(), right.strip()


async def _setup(urls: list[str], products: dict[str, int], users: dict[str, Any]) -> None:
    from sagactl.client import SagaClient

    client = await SagaClient.connect(urls)
    try:
        if products:
            await client.request("inventory", "setup", {"products": products})
        if users:
            await client.request("payment", "setup", {"users": users})
    finally:
        await client.close()
