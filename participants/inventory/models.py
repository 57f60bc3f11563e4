"""The inventory service's table and its seed row (product 1, quantity 10)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class Inventory(SQLModel, table=True):
    __tablename__ = "inventories"
    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(unique=True)
    quantity: int


def seed_rows() -> list[Inventory]:
    return [Inventory(id=1, product_id=1, quantity=10)]
