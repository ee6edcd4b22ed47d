"""The compact cement-mask encoding: exact round trip, hand-computed encodings, corruption."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spine_measure.io.mask_codec import MaskCodecError, decode_mask, encode_mask, mask_area


def test_hand_computed_encoding():
    m = np.zeros((4, 5), bool)
    m[1, 1:4] = True
    m[2, 2] = True
    rec = encode_mask(m)
    # tight box rows 1-2, cols 1-3 -> [row0, col0, height, width]
    assert rec["shape"] == [4, 5]
    assert rec["bbox"] == [1, 1, 2, 3]
    # box pixels row-major: T T T / F T F -> runs (bg first): 0, 3, 1, 1, 1
    assert base64.b64decode(rec["counts"]) == bytes([0, 3, 1, 1, 1])
    assert np.array_equal(decode_mask(rec), m)
    assert mask_area(rec) == 4


def test_empty_mask():
    m = np.zeros((7, 3), bool)
    rec = encode_mask(m)
    assert rec["bbox"] is None and rec["counts"] == ""
    out = decode_mask(rec)
    assert out.shape == (7, 3) and out.dtype == bool and not out.any()
    assert mask_area(rec) == 0


def test_full_mask_uses_multibyte_varint():
    m = np.ones((200, 200), bool)
    rec = encode_mask(m)
    assert rec["bbox"] == [0, 0, 200, 200]
    # one run of 40000 foreground pixels after an empty background run.
    # 40000 = 0b10_0111000_1000000 -> LEB128 bytes 0xC0, 0xB8, 0x02
    assert base64.b64decode(rec["counts"]) == bytes([0x00, 0xC0, 0xB8, 0x02])
    assert np.array_equal(decode_mask(rec), m)
    assert mask_area(rec) == 40000


def test_single_pixel_in_each_corner():
    for r, c in [(0, 0), (0, 9), (5, 0), (5, 9)]:
        m = np.zeros((6, 10), bool)
        m[r, c] = True
        rec = encode_mask(m)
        assert rec["bbox"] == [r, c, 1, 1]
        assert base64.b64decode(rec["counts"]) == bytes([0, 1])
        assert np.array_equal(decode_mask(rec), m)


def test_non_bool_input_means_nonzero():
    m = np.array([[0, 255], [0, 0]], dtype=np.uint8)
    assert np.array_equal(decode_mask(encode_mask(m)), m > 0)


@settings(max_examples=150, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_round_trip_random(mask):
    rec = encode_mask(mask)
    out = decode_mask(rec)
    assert out.shape == mask.shape
    assert np.array_equal(out, mask)
    assert mask_area(rec) == int(mask.sum())
    # canonical: encoding the decoded mask gives the same record
    assert encode_mask(out) == rec


def test_loose_box_decodes_and_reencodes_canonically():
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    # whole-image box: 12 background, 1 foreground, 12 background
    loose = {"encoding": "bbox_rle/1", "shape": [5, 5], "bbox": [0, 0, 5, 5],
             "counts": base64.b64encode(bytes([12, 1, 12])).decode()}
    assert np.array_equal(decode_mask(loose), m)
    assert encode_mask(decode_mask(loose))["bbox"] == [2, 2, 1, 1]


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"shape": [2, 2], "bbox": [0, 0, 2, 2], "counts": base64.b64encode(b"\x00\x03").decode()},
         "add up to 3 pixels; the bbox holds 4"),
        ({"shape": [2, 2], "bbox": [0, 0, 2, 2], "counts": base64.b64encode(b"\x00\x84").decode()},
         "truncated"),
        ({"shape": [2, 2], "bbox": [1, 1, 2, 2], "counts": "AAQ="}, "does not fit"),
        ({"shape": [2, 2], "bbox": [0, 0, 2, 2], "counts": "!!"}, "not valid base64"),
        ({"shape": [2, 2], "bbox": None, "counts": "AAQ="}, "counts but no bbox"),
        ({"shape": [0, 2], "bbox": None, "counts": ""}, "shape must be positive"),
        ({"shape": [2], "bbox": None, "counts": ""}, "shape must be 2 integers"),
        ({"encoding": "png", "shape": [2, 2], "bbox": None, "counts": ""}, "not supported"),
    ],
)
def test_corrupt_records_are_errors(record, needle):
    with pytest.raises(MaskCodecError, match=needle) as info:
        decode_mask(record)
    assert "\n" not in str(info.value)


def test_not_two_dimensional():
    with pytest.raises(MaskCodecError, match=r"2 dimensions.*\(2, 2, 2\)"):
        encode_mask(np.zeros((2, 2, 2), bool))
    with pytest.raises(MaskCodecError, match="NaN"):
        encode_mask(np.array([[np.nan, 1.0]]))
