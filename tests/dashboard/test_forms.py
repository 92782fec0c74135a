"""The enqueue form generated from a payload schema, and reading it back."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.dashboard._forms import WHOLE, field_errors, form_fields, read_form

from .shop import Shop


class Wrapper(BaseModel):
    inner: dict[str, int]


def _fields(shop: Shop) -> dict[str, Any]:
    return {f.name: f for f in form_fields(shop.charge)}


def test_each_scalar_gets_its_own_input_and_anything_richer_a_json_textarea() -> None:
    fields = _fields(Shop(MemoryBackend()))
    kinds = {name: f.kind for name, f in fields.items()}
    assert kinds == {"order_id": "text", "amount": "number", "currency": "select", "express": "checkbox",
                     "channel": "select", "lines": "json"}
    assert fields["order_id"].required and fields["amount"].required and not fields["currency"].required
    assert fields["order_id"].help == "the order to charge"
    assert fields["order_id"].constraints == "at least 3 characters"
    assert fields["amount"].constraints == "> 0"
    assert fields["currency"].options == [('"EUR"', "EUR"), ('"USD"', "USD")]
    assert fields["currency"].value == '"EUR"'
    assert fields["channel"].nullable and fields["channel"].options == [('"web"', "web"), ('"shop"', "shop")]
    assert fields["lines"].value == "[]"


def test_a_blank_input_is_not_given_so_the_default_applies_or_the_model_says_required() -> None:
    shop = Shop(MemoryBackend())
    fields = form_fields(shop.charge)
    data, errors = read_form(fields, {"order_id": "  ", "amount": "3", "currency": '"USD"', "lines": ""})
    assert errors == {}
    assert data == {"amount": "3", "currency": "USD", "express": False}
    with pytest.raises(cq.PayloadError) as caught:
        shop.charge.validate(data)
    placed, loose = field_errors(fields, caught.value.errors)
    assert placed == {"order_id": "Field required"} and loose == []


def test_nested_errors_land_on_the_top_level_field_with_their_path() -> None:
    shop = Shop(MemoryBackend())
    fields = form_fields(shop.charge)
    data, _ = read_form(fields, {"order_id": "A-1", "amount": "3", "lines": '[{"sku": "a"}, {"quantity": 0}]'})
    with pytest.raises(cq.PayloadError) as caught:
        shop.charge.validate(data)
    placed, _ = field_errors(fields, caught.value.errors)
    assert placed["lines"].startswith("1.sku: Field required; 1.quantity: Input should be greater than or equal")


def test_a_payload_that_is_not_an_object_gets_one_json_field() -> None:
    app = cq.App("t", backend=MemoryBackend())

    @app.job
    def total(payload: list[int]) -> None: ...

    @app.job
    def wrapped(payload: Wrapper) -> None: ...

    [whole] = form_fields(total)
    assert whole.name == WHOLE and whole.kind == "json" and whole.required
    data, errors = read_form([whole], {WHOLE: "[1, 2]"})
    assert (data, errors) == ([1, 2], {})
    with pytest.raises(cq.PayloadError) as caught:
        total.validate([1, "x"])
    assert field_errors([whole], caught.value.errors)[0][WHOLE].startswith("1: Input should be a valid integer")
    assert [f.kind for f in form_fields(wrapped)] == ["json"]

