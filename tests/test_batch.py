"""WriteBatch: encoding round trip, exact sizes, argument checks, corrupt input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockdev.errors import ArgumentTypeError, CorruptionError, InvalidArgumentError
from lsm.batch import HEADER_SIZE, WriteBatch
from lsm.dbformat import MAX_SEQUENCE

keys = st.binary(max_size=300)
ops = st.lists(st.one_of(
    st.tuples(st.just("put"), keys, st.binary(max_size=300)),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("delete_range"), keys, keys),
), max_size=30)


def build(oplist: list) -> WriteBatch:
    wb = WriteBatch()
    for op in oplist:
        if op[0] == "delete_range":
            a, b = sorted(op[1:])
            wb.delete_range(a, b)
        else:
            getattr(wb, op[0])(*op[1:])
    return wb


@settings(max_examples=150, deadline=None)
@given(ops, st.integers(0, MAX_SEQUENCE - 100))
def test_round_trip(oplist: list, seq: int) -> None:
    wb = build(oplist)
    wb._check()
    data = wb.encode(seq)
    assert len(data) == wb.byte_size
    first, items = WriteBatch.decode(data)
    assert first == seq
    assert items == wb.items()
    assert WriteBatch.from_items(items).encode(seq) == data


@settings(max_examples=150, deadline=None)
@given(ops, st.data())
def test_truncation_and_trailing_garbage_detected(oplist: list, data: st.DataObject) -> None:
    wb = build(oplist)
    enc = wb.encode(5)
    cut = data.draw(st.integers(0, len(enc) - 1))
    with pytest.raises(CorruptionError) as ei:
        WriteBatch.decode(enc[:cut], "000007.log", 1000)
    assert ei.value.file == "000007.log"
    assert 1000 <= ei.value.offset <= 1000 + len(enc)
    with pytest.raises(CorruptionError):
        WriteBatch.decode(enc + b"\x01", "x", 0)


def test_worked_example() -> None:
    wb = WriteBatch()
    wb.put(b"k1", b"v")
    wb.delete(b"k2")
    wb.delete_range(b"a", b"b")
    enc = wb.encode(0x10)
    assert enc.hex() == ("1000000000000000" "03000000"
                         "01" "02" "6b31" "01" "76"
                         "00" "02" "6b32"
                         "02" "01" "61" "01" "62")
    assert WriteBatch.decode(enc) == (0x10, [(1, b"k1", b"v"), (0, b"k2", b""),
                                             (2, b"a", b"b")])


def test_long_lengths_use_multibyte_varints() -> None:
    wb = WriteBatch()
    wb.put(b"k" * 200, b"v" * 20000)
    enc = wb.encode(1)
    assert enc[HEADER_SIZE:HEADER_SIZE + 3] == bytes([1, 0xC8, 0x01])
    assert len(enc) == wb.byte_size
    assert WriteBatch.decode(enc)[1] == [(1, b"k" * 200, b"v" * 20000)]


@pytest.mark.parametrize("payload,where", [
    (b"\x00" * 11, 0),                                              # short header
    (struct.pack("<QI", 1, 1) + b"\x03\x01a", HEADER_SIZE),         # bad kind
    (struct.pack("<QI", 1, 2) + b"\x00\x01a", HEADER_SIZE + 3),     # missing record
    (struct.pack("<QI", 1, 1) + b"\x01\x05ab", HEADER_SIZE),        # key past end
    (struct.pack("<QI", 1, 1) + b"\x01\x01a\x09b", HEADER_SIZE),    # value past end
    (struct.pack("<QI", 1, 1) + b"\x00\xff\xff\xff\xff\xff\x01", HEADER_SIZE + 1),  # varint
    (struct.pack("<QI", MAX_SEQUENCE, 2) + b"\x00\x00\x00\x00", 0),  # sequence overflow
])
def test_corrupt_inputs(payload: bytes, where: int) -> None:
    with pytest.raises(CorruptionError) as ei:
        WriteBatch.decode(payload, "f.log", 0)
    assert ei.value.offset == where
    assert ei.value.file == "f.log"


def test_argument_checks() -> None:
    wb = WriteBatch(max_key_size=4, max_value_size=3)
    with pytest.raises(ArgumentTypeError, match="key"):
        wb.put("k", b"v")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="value"):
        wb.put(b"k", "v")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="start"):
        wb.delete_range(1, b"x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="max_key_size"):
        wb.put(b"12345", b"")
    with pytest.raises(InvalidArgumentError, match="max_value_size"):
        wb.put(b"k", b"1234")
    with pytest.raises(InvalidArgumentError):
        wb.delete_range(b"b", b"a")
    wb.delete_range(b"a", b"a")   # empty range: nothing recorded
    wb.put(bytearray(b"k"), memoryview(b"v"))
    assert wb.items() == [(1, b"k", b"v")]
    assert wb.count == 1 == len(wb)
    with pytest.raises(InvalidArgumentError):
        wb.encode(-1)
    with pytest.raises(InvalidArgumentError):
        build([("put", b"a", b""), ("put", b"b", b"")]).encode(MAX_SEQUENCE)
    with pytest.raises(ArgumentTypeError):
        WriteBatch.decode("text")  # type: ignore[arg-type]


def test_append_and_clear() -> None:
    a = build([("put", b"a", b"1")])
    b = build([("delete", b"b"), ("delete_range", b"c", b"d")])
    a.append(b)
    a._check()
    assert [k for _, k, _ in a.items()] == [b"a", b"b", b"c"]
    assert len(a.encode(9)) == a.byte_size
    a.clear()
    assert a.count == 0 and a.byte_size == HEADER_SIZE
    assert a.encode(3) == struct.pack("<QI", 3, 0)
