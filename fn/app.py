"""Example Lambda function: validates an order with pydantic and answers with orjson."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, Field


class Order(BaseModel):
    order_id: str
    quantity: int = Field(gt=0)
    unit_price_cents: int = Field(ge=0)


def handler(event, context):
    order = Order.model_validate(event)
    body = {"order_id": order.order_id, "total_cents": order.quantity * order.unit_price_cents}
    return {"statusCode": 200, "body": orjson.dumps(body).decode()}
