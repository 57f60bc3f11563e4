"""The inventory service's tables and its seed row (product 1, quantity 10)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class Inventory(SQLModel, table=True):
    __tablename__ = "inventories"
    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(unique=True)
    quantity: int


class Reservation(SQLModel, table=True):
    """What inventory did for one sale (rules.py has the states): at most one row per sale."""

    __tablename__ = "reservations"
    sale_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    product_id: int
    quantity: int
    state: str = Field(max_length=16)


class StockBaseline(SQLModel, table=True):
    """The stock a product was given (seed or setup): what conservation checks count from."""

    __tablename__ = "stock_baselines"
    product_id: int = Field(primary_key=True)
    quantity: int


def seed_rows() -> list[SQLModel]:
    # No explicit id: on PostgreSQL an explicit id leaves the id sequence behind, and the next
    # product added by `setup` would collide with it.
    return [Inventory(product_id=1, quantity=10), StockBaseline(product_id=1, quantity=10)]
