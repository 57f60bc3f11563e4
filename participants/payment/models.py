"""The payment service's tables and its seed row (user 1 "userTest", balance 100.00)."""

from __future__ import annotations

from decimal import Decimal

from sqlmodel import Field, SQLModel

from participants.runtime import Money


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    balance: Decimal = Field(sa_type=Money)


class Payment(SQLModel, table=True):
    """What payment did for one sale (rules.py has the states): at most one row per sale."""

    __tablename__ = "payments"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(index=True)
    sale_id: int = Field(unique=True)
    value: Decimal = Field(sa_type=Money)
    state: str = Field(default="CHARGED", max_length=16)


class BalanceBaseline(SQLModel, table=True):
    """The balance a user was given (seed or setup): what conservation checks count from."""

    __tablename__ = "balance_baselines"
    user_id: int = Field(primary_key=True)
    balance: Decimal = Field(sa_type=Money)


def seed_rows() -> list[SQLModel]:
    return [User(id=1, name="userTest", balance=Decimal("100.00")), BalanceBaseline(user_id=1, balance=Decimal("100.00"))]
