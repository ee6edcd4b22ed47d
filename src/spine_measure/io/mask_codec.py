"""Compact, exact text encoding of binary masks (the cement mask of an annotation file).

A mask of an image with ``rows x cols`` pixels is stored as

``{"encoding": "bbox_rle/1", "shape": [rows, cols], "bbox": [row0, col0, height, width],
"counts": "<base64>"}``

* ``bbox`` is the tightest box holding every foreground pixel (``null`` for an empty mask);
  pixels outside it are background.
* Inside the box the pixels are read in row-major (C) order and cut into runs that
  alternate background, foreground, background, ... starting with background (so the first
  run has length 0 when the box starts with a foreground pixel). The run lengths
  :math:`n_0, n_1, \\dots` satisfy :math:`\\sum_k n_k = height \\cdot width`.
* Each run length is written as an unsigned LEB128 varint (7 bits per byte, low bits first,
  high bit set on every byte but the last); the byte string is base64 (RFC 4648, with
  padding). An empty mask has ``counts == ""``.

The encoding is canonical: :func:`encode_mask` of :func:`decode_mask` of any valid record gives
the same record (tight box, no zero-length runs except a leading one), so two equal masks
always have equal encodings. :func:`decode_mask` is tolerant (a loose box or zero-length runs
decode correctly) but checks every count, so a truncated or edited string is an error, never
a silently wrong mask.

Examples
--------
>>> import numpy as np
>>> m = np.zeros((4, 5), bool); m[1, 1:4] = True; m[2, 2] = True
>>> rec = encode_mask(m)
>>> rec["bbox"], rec["counts"]
([1, 1, 2, 3], 'AAMBAQE=')
>>> bool((decode_mask(rec) == m).all())
True
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np

from spine_measure.errors import SpineMeasureError

__all__ = ["ENCODING", "MaskCodecError", "decode_mask", "encode_mask", "mask_area"]

ENCODING = "bbox_rle/1"
"""Name written in the ``encoding`` field of every encoded mask."""


class MaskCodecError(SpineMeasureError, ValueError):
    """An encoded mask that cannot be decoded, or an array that is not a 2-D mask."""


def _varints(values: np.ndarray) -> bytes:
    """LEB128-encode non-negative integers."""
    out = bytearray()
    for v in values.tolist():
        while True:
            byte = v & 0x7F
            v >>= 7
            if v:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return bytes(out)


def _read_varints(data: bytes) -> list[int]:
    values: list[int] = []
    value = 0
    shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                raise MaskCodecError("mask counts: run length does not fit in 64 bits")
        else:
            values.append(value)
            value = 0
            shift = 0
    if shift:
        raise MaskCodecError("mask counts: truncated (last run length is incomplete)")
    return values


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Encode a 2-D boolean mask as a JSON-ready dict (bounding box + run lengths, base64).

    Parameters
    ----------
    mask : array_like, shape (rows, cols)
        Boolean mask, or integers/floats where non-zero means foreground.

    Returns
    -------
    dict
        ``{"encoding", "shape", "bbox", "counts"}`` as described in the module docstring.

    Raises
    ------
    MaskCodecError
        ``mask`` is not two-dimensional, or holds NaN.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise MaskCodecError(f'Argument "mask" must have 2 dimensions (rows, cols); '
                             f"got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise MaskCodecError('Argument "mask" holds NaN; expected a boolean mask')
    arr = arr.astype(bool, copy=False)
    shape = [int(arr.shape[0]), int(arr.shape[1])]
    rows = np.flatnonzero(arr.any(axis=1))
    if rows.size == 0:
        return {"encoding": ENCODING, "shape": shape, "bbox": None, "counts": ""}
    cols = np.flatnonzero(arr.any(axis=0))
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    flat = arr[r0:r1, c0:c1].ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds)
    if flat[0]:  # runs start with background by definition
        runs = np.concatenate(([0], runs))
    counts = base64.b64encode(_varints(runs)).decode("ascii")
    return {"encoding": ENCODING, "shape": shape, "bbox": [r0, c0, r1 - r0, c1 - c0],
            "counts": counts}


def _int_list(value: Any, n: int, what: str) -> list[int]:
    if (not isinstance(value, list | tuple) or len(value) != n
            or not all(isinstance(v, int | np.integer) and not isinstance(v, bool)
                       for v in value)):
        raise MaskCodecError(f"mask {what} must be {n} integers; got {value!r}")
    return [int(v) for v in value]


def decode_mask(record: Mapping[str, Any]) -> np.ndarray:
    """Decode a dict made by :func:`encode_mask` into a boolean array of its ``shape``.

    Raises
    ------
    MaskCodecError
        Unknown encoding, box outside the image, invalid base64, or run lengths that do not
        add up to the box area. The message names the field.
    """
    if not isinstance(record, Mapping):
        raise MaskCodecError(f"mask must be an object; got {type(record).__name__}")
    enc = record.get("encoding", ENCODING)
    if enc != ENCODING:
        raise MaskCodecError(f'mask encoding "{enc}" is not supported (expected "{ENCODING}")')
    rows, cols = _int_list(record.get("shape"), 2, "shape")
    if rows < 1 or cols < 1:
        raise MaskCodecError(f"mask shape must be positive; got {[rows, cols]}")
    out = np.zeros((rows, cols), dtype=bool)
    bbox = record.get("bbox")
    counts = record.get("counts", "")
    if not isinstance(counts, str):
        raise MaskCodecError(f"mask counts must be a base64 string; got {type(counts).__name__}")
    if bbox is None:
        if counts:
            raise MaskCodecError("mask has counts but no bbox")
        return out
    r0, c0, h, w = _int_list(bbox, 4, "bbox")
    if r0 < 0 or c0 < 0 or h < 1 or w < 1 or r0 + h > rows or c0 + w > cols:
        raise MaskCodecError(f"mask bbox {[r0, c0, h, w]} (row0, col0, height, width) does not "
                             f"fit in shape {[rows, cols]}")
    try:
        raw = base64.b64decode(counts.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MaskCodecError(f"mask counts are not valid base64 ({exc})") from None
    runs = _read_varints(raw)
    total = sum(runs)
    if total != h * w:
        raise MaskCodecError(f"mask counts add up to {total} pixels; the bbox holds {h * w}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    out[r0:r0 + h, c0:c0 + w] = np.repeat(values, runs).reshape(h, w)
    return out


def mask_area(record: Mapping[str, Any]) -> int:
    """Number of foreground pixels of an encoded mask, without decoding the array."""
    if record.get("bbox") is None:
        return 0
    runs = _read_varints(base64.b64decode(str(record["counts"]).encode("ascii"), validate=True))
    return int(sum(runs[1::2]))
