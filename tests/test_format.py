"""The byte layout of docs/format.md, checked against segments/format.py.

Pure encode/decode: no store is opened here. Byte surgery on frames follows
LevelDB's log_test.cc (IncrementByte, FixChecksum).
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tidelog.segments import crc
from tidelog.segments import format as fmt
from tidelog.segments.format import (
    FrameError,
    Record,
    SegmentHeader,
    decode_records,
    decode_segment_header,
    encode_record,
    encode_segment_header,
    parse_segment_name,
    segment_name,
)

FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "format.md"

WORKED_EXAMPLE = bytes.fromhex(
    "1f000000 fa21ebf1"  # length 31, CRC32C of bytes 8..38
    "0500000000000000"  # offset 5
    "0068e5cf8b010000"  # timestamp 1700000000000
    "0000020000000000"  # flags 0, reserved, key length 2, headers length 0
    "6b31"  # "k1"
    "68656c6c6f"  # "hello"
)


def documented_example() -> bytes:
    """The hex dump under "### Worked example" in docs/format.md, as bytes."""
    text = FORMAT_MD.read_text()
    section = text.split("### Worked example", 1)[1]
    block = section.split("```", 2)[1]
    out = bytearray()
    for line in block.splitlines():
        match = re.match(r"^([0-9a-f]{4})  (.*)$", line)
        if match is None:
            continue
        assert int(match.group(1), 16) == len(out), f"address column wrong in {line!r}"
        for token in match.group(2).split():
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                break  # the description starts
            out.append(int(token, 16))
    return bytes(out)


def fix_checksum(frame: bytearray, position: int = 0) -> None:
    """Recompute the CRC of the record at `position` after a field was changed."""
    (length,) = struct.unpack_from("<I", frame, position)
    body = bytes(frame[position + 8 : position + 8 + length])
    struct.pack_into("<I", frame, position + 4, crc.crcmod_crc32c(body))


# -- the worked example -----------------------------------------------------------


def test_worked_example_encodes_to_the_documented_bytes() -> None:
    encoded = encode_record(5, 1_700_000_000_000, 0, b"k1", b"", b"hello")
    assert len(encoded) == 39
    assert encoded == WORKED_EXAMPLE
    assert documented_example() == encoded


def test_worked_example_crc_is_crc32c_of_bytes_8_to_38() -> None:
    (stored,) = struct.unpack_from("<I", WORKED_EXAMPLE, 4)
    assert stored == crc.crcmod_crc32c(WORKED_EXAMPLE[8:39])
    assert stored == 0xF1EB21FA
    # The placeholder is gone from the docs: the CRC there is the real one.
    assert "cc cc cc cc" not in FORMAT_MD.read_text()


def test_worked_example_decodes_back() -> None:
    records, end = decode_records(WORKED_EXAMPLE, 0, len(WORKED_EXAMPLE))
    assert records == [Record(5, 1_700_000_000_000, 0, b"k1", b"", b"hello")]
    assert end == 39


def test_record_round_trip_with_headers_flags_and_empty_parts() -> None:
    cases = [
        Record(0, 0, 0, b"", b"", b""),
        Record(1, 1, 255, b"key", b"h=1", b"value"),
        Record(2**64 - 1, 2**63 - 1, 7, b"k" * fmt.KEY_BYTES_MAX, b"\x00" * 300, b"v" * 5000),
    ]
    data = b"".join(encode_record(*r) for r in cases)
    records, end = decode_records(data, 0, len(data))
    assert records == cases
    assert end == len(data)
    # A frame is 32 bytes plus key, headers and value.
    assert len(encode_record(*cases[1])) == fmt.RECORD_FRAME_BYTES + 3 + 3 + 5


# -- CRC32C: two implementations, one answer ------------------------------------


def test_crc_check_value() -> None:
    assert crc.hardware_crc32c is not None, "the crc32c package is a declared dependency"
    assert crc.crcmod_crc32c(b"123456789") == 0xE3069283
    assert crc.hardware_crc32c(b"123456789") == 0xE3069283
    assert crc.crc32c(b"123456789") == 0xE3069283


def test_crcmod_and_crc32c_agree_on_random_bytes() -> None:
    hardware = crc.hardware_crc32c
    assert hardware is not None
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    sizes = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 1023, 1024, 4096, 65_537]
    sizes += [rng.randrange(0, 10_000) for _ in range(300)]
    sizes.append(3 * 1024 * 1024 + 5)  # large, and not a multiple of any word size
    for size in sizes:
        data = rng.randbytes(size)
        assert crc.crcmod_crc32c(data) == hardware(data), f"size {size}, seed {seed}"
    assert crc.crcmod_crc32c(b"") == hardware(b"") == 0
    # Both take the buffer types the writer and reader pass.
    data = rng.randbytes(1000)
    for buffer in (bytearray(data), memoryview(data)):
        assert crc.crcmod_crc32c(buffer) == hardware(buffer) == crc.crc32c(data)


# -- segment header ---------------------------------------------------------------


@pytest.mark.parametrize("base", [0, 1, 5, 10**12, 2**63, 2**64 - 1])
def test_segment_header_round_trip(base: int) -> None:
    header = encode_segment_header(base)
    assert len(header) == fmt.SEGMENT_HEADER_BYTES == 32
    assert header[:8] == b"TDLGSEG\n"
    assert header[8] == fmt.READ_VERSION == 1
    assert header[9] == fmt.WRITE_VERSION == 1
    assert header[10:16] == bytes(6)
    assert struct.unpack_from("<Q", header, 16)[0] == base
    assert header[24:28] == bytes(4)
    assert struct.unpack_from("<I", header, 28)[0] == crc.crcmod_crc32c(header[:28])
    assert decode_segment_header(header) == SegmentHeader(1, 1, base)
    # Trailing bytes (the first record) do not disturb the decode.
    assert decode_segment_header(header + b"\xff" * 40) == SegmentHeader(1, 1, base)


def test_damaged_segment_header_rejected() -> None:
    header = encode_segment_header(42)
    for index in range(len(header)):
        for bit in range(8):
            damaged = bytearray(header)
            damaged[index] ^= 1 << bit
            assert decode_segment_header(bytes(damaged)) is None, (index, bit)
    for size in range(len(header)):
        assert decode_segment_header(header[:size]) is None
    assert decode_segment_header(bytes(32)) is None


def test_header_with_wrong_magic_but_valid_crc_rejected() -> None:
    damaged = bytearray(encode_segment_header(7))
    damaged[0:8] = b"TDLGSEX\n"
    struct.pack_into("<I", damaged, 28, crc.crcmod_crc32c(bytes(damaged[:28])))
    assert decode_segment_header(bytes(damaged)) is None


def test_header_versions_are_reported_for_the_caller_to_judge() -> None:
    newer = bytearray(encode_segment_header(9))
    newer[8], newer[9] = 2, 3
    struct.pack_into("<I", newer, 28, crc.crcmod_crc32c(bytes(newer[:28])))
    assert decode_segment_header(bytes(newer)) == SegmentHeader(2, 3, 9)


# -- segment names --------------------------------------------------------------------


def test_segment_name_layout() -> None:
    assert segment_name(0) == "00000000000000000000.seg"
    assert segment_name(5) == "00000000000000000005.seg"
    assert segment_name(2**64 - 1) == "18446744073709551615.seg"
    for base in (0, 5, 99, 10**19, 2**64 - 1):
        assert parse_segment_name(segment_name(base)) == base


def test_segment_names_sort_numerically() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    bases = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 2**32, 2**63, 2**64 - 1]
    bases += [rng.randrange(2**64) for _ in range(200)]
    bases += [rng.randrange(10**6) for _ in range(200)]
    names = [segment_name(base) for base in bases]
    assert sorted(names) == [segment_name(base) for base in sorted(bases)], f"seed {seed}"
    assert [parse_segment_name(name) for name in sorted(names)] == sorted(bases)


@pytest.mark.parametrize(
    "name",
    [
        "5.seg",
        "0000000000000000005.seg",  # 19 digits
        "000000000000000000005.seg",  # 21 digits
        "0000000000000000000a.seg",
        "-0000000000000000001.seg",
        "+0000000000000000001.seg",
        "00000000000000000005.seg.broken",
        "00000000000000000005.log",
        "00000000000000000005",
        "0000000000000000000\N{SUPERSCRIPT TWO}.seg",
        "0000000000000000000\N{ARABIC-INDIC DIGIT FIVE}.seg",
        "0000000000000000000\N{FULLWIDTH DIGIT FIVE}.seg",
        "lock.mdb",
        "",
    ],
)
def test_parse_segment_name_rejects_other_files(name: str) -> None:
    # Recovery lists log directories with this: any stray file must be
    # "not a segment", never an exception and never a base offset.
    assert parse_segment_name(name) is None


# -- decode_records and decode_values: damaged frames ---------------------------
# Both decoders check frames the same way; every test here runs on each.

Decoder = Callable[[bytes, int, int, int], tuple[list[Any], int]]


@pytest.fixture(params=[fmt.decode_records, fmt.decode_values], ids=["records", "values"])
def decode(request: pytest.FixtureRequest) -> Decoder:
    chosen: Decoder = request.param
    return lambda data, position, end, base_position=0: chosen(data, position, end, base_position)


def test_decode_values_is_decode_records_without_key_and_headers() -> None:
    rng = random.Random(7)
    data = b"".join(
        encode_record(
            i, 1000 + i, i % 3, rng.randbytes(i % 5), rng.randbytes(i % 4), rng.randbytes(i)
        )
        for i in range(200)
    )
    records, end = decode_records(data, 0, len(data))
    rows, row_end = fmt.decode_values(data, 0, len(data))
    assert rows == [(r.offset, r.timestamp_ms, r.value) for r in records] and row_end == end
    assert fmt.frames_bytes(data, 200) == len(data)
    assert fmt.frames_bytes(data, 1) == len(encode_record(0, 1000, 0, b"", b"", b""))


def two_records() -> tuple[bytearray, int]:
    first = encode_record(10, 1000, 0, b"a", b"", b"first value")
    second = encode_record(11, 1001, 0, b"b", b"hh", b"second value")
    return bytearray(first + second), len(first)


@pytest.mark.parametrize("base_position", [0, 32, 1_000_000])
def test_length_below_minimum_raises_with_position(decode: Decoder, base_position: int) -> None:
    data, second = two_records()
    struct.pack_into("<I", data, second, fmt.RECORD_BODY_MIN - 1)
    with pytest.raises(FrameError) as info:
        decode(bytes(data), 0, len(data), base_position)
    assert info.value.position == base_position + second
    assert "length" in info.value.reason


def test_length_above_maximum_raises(decode: Decoder) -> None:
    data, second = two_records()
    struct.pack_into("<I", data, second, fmt.RECORD_BYTES_MAX + 1)
    with pytest.raises(FrameError) as info:
        decode(bytes(data), 0, len(data), 32)
    assert info.value.position == 32 + second
    # At the bound itself the frame is merely incomplete, not damaged.
    struct.pack_into("<I", data, second, fmt.RECORD_BYTES_MAX)
    records, end = decode(bytes(data), 0, len(data), 32)
    assert [r[0] for r in records] == [10]
    assert end == second


def test_key_and_headers_longer_than_record_raise_even_with_valid_crc(decode: Decoder) -> None:
    data, second = two_records()
    (length,) = struct.unpack_from("<I", data, second)
    # Key length field at byte 26 of the frame: claim more than the body holds.
    struct.pack_into("<H", data, second + 26, length - 24 + 1)
    fix_checksum(data, second)
    with pytest.raises(FrameError) as info:
        decode(bytes(data), 0, len(data))
    assert info.value.position == second
    assert "length" in info.value.reason


def test_crc_mismatch_raises_with_position(decode: Decoder) -> None:
    data, second = two_records()
    data[-1] = (data[-1] + 1) & 0xFF  # IncrementByte in the value
    with pytest.raises(FrameError) as info:
        decode(bytes(data), 0, len(data), 4096)
    assert info.value.position == 4096 + second
    assert info.value.reason == "CRC mismatch"


def test_every_bit_flip_past_the_length_is_caught(decode: Decoder) -> None:
    data, second = two_records()
    for index in range(second + 4, len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[index] ^= 1 << bit
            with pytest.raises(FrameError) as info:
                decode(bytes(damaged), 0, len(damaged))
            assert info.value.position == second, (index, bit)


def test_bit_flip_in_length_never_yields_a_wrong_record(decode: Decoder) -> None:
    data, second = two_records()
    good = decode(bytes(data), 0, len(data))[0][0]
    for index in range(second, second + 4):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[index] ^= 1 << bit
            try:
                records, end = decode(bytes(damaged), 0, len(damaged))
            except FrameError as exc:
                assert exc.position == second
                continue
            # A longer length makes the frame look incomplete: it is left
            # for the caller (a torn tail or a short file), never decoded.
            assert records == [good], (index, bit)
            assert end == second


def test_record_cut_off_by_end_is_left_for_the_next_call(decode: Decoder) -> None:
    data, second = two_records()
    for end in range(second, len(data)):
        records, stop = decode(bytes(data), 0, end, 64)
        assert [r[0] for r in records] == [10]
        assert stop == second
    records, stop = decode(bytes(data), second, len(data))
    assert [r[0] for r in records] == [11]
    assert stop == len(data)


def test_frame_length_bounds() -> None:
    data, second = two_records()
    assert fmt.frame_length(bytes(data), 0) == second
    assert fmt.frame_length(bytes(data), second) == len(data) - second
    assert fmt.frame_length(bytes(data), len(data) - 4) is None
    assert fmt.frame_length(struct.pack("<II", 23, 0), 0) is None
    assert fmt.frame_length(struct.pack("<II", fmt.RECORD_BYTES_MAX + 1, 0), 0) is None


def test_random_junk_never_decodes_as_records(decode: Decoder) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(2000):
        junk = rng.randbytes(rng.randrange(32, 200))
        try:
            records, _ = decode(junk, 0, len(junk))
        except FrameError:
            continue
        assert records == [], f"seed {seed}: junk {junk.hex()} decoded"
