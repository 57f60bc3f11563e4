"""The inventory service's tables and its seed row (product 1, quantity 10)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class Inventory(SQLModel, table=True):
    __tablename__ = "inventories"
    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(unique=True)
    quantity: int


class StockBaseline(SQLModel, table=True):
    """The stock a product was given (seed or setup): what conservation checks count from."""

    __tablename__ = "stock_baselines"
    product_id: int = Field(primary_key=True)
    quantity: int


def seed_rows() -> list[SQLModel]:
    # No explicit id: on PostgreSQL an explicit id leaves the id sequence behind, and the next
    # product added by `setup` would collide with it.
    return [Inventory(product_id=1, quantity=10), StockBaseline(product_id=1, quantity=10)]
