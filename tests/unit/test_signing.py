"""Signed button payloads: forgery, tampering and expiry are refused."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugin.signing import BadSignature, Signer

KEY = "k" * 32


def test_round_trip_through_json() -> None:
    s = Signer(KEY)
    ctx = s.pack("ack", "alert:42", {"who": "alice"})
    back = s.unpack(json.loads(json.dumps(ctx)))
    assert (back.action, back.subject, back.data) == ("ack", "alert:42", {"who": "alice"})


def test_go_float_expiry_is_accepted() -> None:
    s = Signer(KEY)
    ctx = s.pack("ack", "x")
    ctx["exp"] = float(ctx["exp"])
    assert s.unpack(ctx).action == "ack"


@pytest.mark.parametrize("field,value", [
    ("action", "silence"), ("subject", "alert:43"), ("data", {"who": "mallory"}),
    ("exp", 4102444800), ("sig", "AAAA"),
])
def test_any_change_breaks_the_signature(field: str, value: object) -> None:
    s = Signer(KEY)
    ctx = s.pack("ack", "alert:42", {"who": "alice"})
    ctx[field] = value
    with pytest.raises(BadSignature):
        s.unpack(ctx)


def test_other_key_and_expiry_and_garbage() -> None:
    ctx = Signer(KEY).pack("ack", "x", ttl=60)
    with pytest.raises(BadSignature, match="does not match"):
        Signer("z" * 32).unpack(ctx)
    with pytest.raises(BadSignature, match="expired"):
        Signer(KEY).unpack(ctx, now=time.time() + 120)
    junk: object
    for junk in (None, "x", [], {"action": 1}, {}):
        with pytest.raises(BadSignature):
            Signer(KEY).unpack(junk)
    with pytest.raises(ValueError):
        Signer("short")


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_random_contexts_never_verify(ctx: dict[str, str]) -> None:
    with pytest.raises(BadSignature):
        Signer(KEY).unpack(ctx)
