"""services/edge/streams.py: a key's open streams on one edge process are counted and capped,
and every slot comes back, also when the request's body was never iterated."""

from __future__ import annotations

import gc

import pytest

from services.edge.streams import StreamSlots
from shared.errors import GatewayError


class _Record:
    """Stands for a request's record: what the slot's life is tied to."""


def test_slots_cap_each_key_and_come_back_once() -> None:
    slots = StreamSlots(per_key=2)
    records = [_Record(), _Record()]
    first, second = (slots.take("key_a", r) for r in records)
    with pytest.raises(GatewayError) as refused:
        slots.take("key_a", _Record())
    assert refused.value.status == 429 and refused.value.code == "too_many_concurrent_streams"
    assert slots.take("key_b", _Record()).key_id == "key_b"  # another key has its own room
    first.release()
    first.release()  # twice is once
    assert slots.open("key_a") == 1
    second.release()
    assert slots.open("key_a") == 0


def test_a_slot_whose_request_is_gone_is_given_back() -> None:
    """A streamed response whose body never started (the client left first) never runs the
    code that releases its slot: the slot follows its record instead."""
    slots = StreamSlots(per_key=1)
    record = _Record()
    slots.take("key_a", record)
    del record
    gc.collect()
    assert slots.open("key_a") == 0
    slots.take("key_a", _Record())
