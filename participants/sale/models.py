"""The sale service's table: the seed's `sales`, plus the reason a sale was canceled."""

from __future__ import annotations

import enum
from decimal import Decimal

from sqlmodel import Field, SQLModel

from participants.runtime import Money


class SaleStatus(enum.IntEnum):
    PENDING = 1
    FINALIZED = 2
    CANCELED = 3


class SaleRow(SQLModel, table=True):
    __tablename__ = "sales"
    id: int | None = Field(default=None, primary_key=True)
    product_id: int
    user_id: int
    value: Decimal = Field(sa_type=Money)
    quantity: int
    status: SaleStatus = Field(default=SaleStatus.PENDING, index=True)
    reason: str | None = Field(default=None, max_length=255)
    # When a PENDING sale is canceled "deadline exceeded" (seconds since the epoch); None: never.
    deadline_at: float | None = Field(default=None, index=True)


class SubmitKey(SQLModel, table=True):
    """A client's key for one submit: the same key submitted again returns the sale it created,
    so a client that lost the reply can retry without buying twice."""

    __tablename__ = "submit_keys"
    request_id: str = Field(primary_key=True, max_length=64)
    sale_id: int
