"""The byte layout of docs/format.md, checked against segments/format.py.

Pure encode/decode: no store is opened here. Byte surgery on batches follows
LevelDB's log_test.cc (IncrementByte, FixChecksum).
"""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path

import pytest

from tidelog.segments import crc
from tidelog.segments import format as fmt
from tidelog.segments.format import (
    Record,
    SegmentHeader,
    decode_batches,
    decode_segment_header,
    encode_batch,
    encode_gap,
    encode_segment_header,
    parse_segment_name,
    segment_name,
)

FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "format.md"
SALT = 0x5EED1E55

WORKED_EXAMPLE = bytes.fromhex(
    "39000000 db5466f1"  # length 57, CRC32C of bytes 8..64
    "551eed5e 02000000"  # salt, count 2
    "0500000000000000"  # base offset 5
    "0068e5cf8b010000"  # timestamp 1700000000000
    "0001000000000000"  # flags 0, attributes 1 (keys), reserved
    "05000000 02000000"  # value lengths
    "02000000 00000000"  # key lengths
    "68656c6c6f 6869"  # "hello" "hi"
    "6b31"  # "k1" ""
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


def fix_checksum(data: bytearray, position: int = 0) -> None:
    """Recompute the CRC of the batch at `position` after a field was changed."""
    (length,) = struct.unpack_from("<I", data, position)
    body = bytes(data[position + 8 : position + 8 + length])
    struct.pack_into("<I", data, position + 4, crc.crcmod_crc32c(body))


def decode_all(data: bytes, expected: int = 5, salt: int = SALT) -> list[Record]:
    batches, used, error = decode_batches(data, 0, len(data), salt, expected)
    if error is not None:
        raise error
    assert used == len(data)
    return [r for b in batches for r in b.records()]


# -- the worked example -----------------------------------------------------------


def test_worked_example_encodes_to_the_documented_bytes() -> None:
    encoded = encode_batch(SALT, 5, 1_700_000_000_000, 0, [b"hello", b"hi"], [b"k1", b""])
    assert len(encoded) == 65
    assert encoded == WORKED_EXAMPLE
    assert documented_example() == encoded


def test_worked_example_crc_is_crc32c_of_bytes_8_to_64() -> None:
    (stored,) = struct.unpack_from("<I", WORKED_EXAMPLE, 4)
    assert stored == crc.crcmod_crc32c(WORKED_EXAMPLE[8:65]) == crc.crc32c(WORKED_EXAMPLE[8:])


def test_worked_example_decodes_back() -> None:
    assert decode_all(WORKED_EXAMPLE) == [
        Record(5, 1_700_000_000_000, 0, b"k1", b"", b"hello"),
        Record(6, 1_700_000_000_000, 0, b"", b"", b"hi"),
    ]


def test_batch_round_trip_with_headers_flags_and_empty_parts() -> None:
    values = [b"", b"v" * 1000, b"x"]
    keys = [b"k", b"", b"key-3"]
    headers = [b"{}", b"", b"h" * 70_000]
    data = encode_batch(SALT, 10, 123, 7, values, keys, headers)
    assert decode_all(data, 10) == [
        Record(10 + i, 123, 7, keys[i], headers[i], values[i]) for i in range(3)
    ]
    only_headers = encode_batch(SALT, 0, 1, 0, [b"a", b"b"], None, [b"h", b""])
    assert decode_all(only_headers, 0) == [
        Record(0, 1, 0, b"", b"h", b"a"),
        Record(1, 1, 0, b"", b"", b"b"),
    ]
    # Framing: 40 bytes a batch, 4 a record per lengths array present.
    plain = encode_batch(SALT, 0, 1, 0, [b"x" * 100] * 1000)
    assert len(plain) == 40 + 1000 * (4 + 100)


def test_batch_columns_and_ranges_are_sliced_on_demand() -> None:
    values = [bytes([i]) * i for i in range(50)]
    keys = [b"k%d" % i for i in range(50)]
    data = encode_batch(SALT, 100, 9, 0, values, keys)
    (batch,), _, error = decode_batches(data, 0, len(data), SALT, 100)
    assert error is None
    assert (batch.base_offset, batch.count, batch.end_offset) == (100, 50, 150)
    assert batch.values() == values
    assert batch.values(10, 13) == values[10:13]
    assert batch.keys(48) == keys[48:]
    assert batch.headers() is None
    assert [r.offset for r in batch.records(47)] == [147, 148, 149]
    assert list(batch.records(5, 5)) == []


def test_gap_batch_decodes_as_no_records_over_its_offsets() -> None:
    gap = encode_gap(SALT, 20, 7, 100, 55)
    assert len(gap) == 100
    after = encode_batch(SALT, 27, 60, 0, [b"z"])
    batches, used, error = decode_batches(gap + after, 0, len(gap + after), SALT, 20)
    assert error is None and used == len(gap + after)
    assert [(b.gap, b.base_offset, b.count, b.timestamp_ms) for b in batches] == [
        (True, 20, 7, 55),
        (False, 27, 1, 60),
    ]
    assert list(batches[0].records()) == []
    with pytest.raises(ValueError):
        encode_gap(SALT, 0, 1, 39, 0)


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
    header = encode_segment_header(base, SALT)
    assert len(header) == fmt.SEGMENT_HEADER_BYTES == 32
    assert header[:8] == b"TDLGSEG\n"
    assert header[8] == fmt.READ_VERSION == 2
    assert header[9] == fmt.WRITE_VERSION == 2
    assert header[10:12] == bytes(2)
    assert struct.unpack_from("<I", header, 12)[0] == SALT
    assert struct.unpack_from("<Q", header, 16)[0] == base
    assert header[24:28] == bytes(4)
    assert struct.unpack_from("<I", header, 28)[0] == crc.crcmod_crc32c(header[:28])
    assert decode_segment_header(header) == SegmentHeader(2, 2, base, SALT)
    # Trailing bytes (the first batch) do not disturb the decode.
    assert decode_segment_header(header + b"\xff" * 40) == SegmentHeader(2, 2, base, SALT)


def test_salts_are_fresh_and_never_zero() -> None:
    salts = {fmt.new_salt() for _ in range(1000)}
    assert 0 not in salts and len(salts) > 990


def test_damaged_segment_header_rejected() -> None:
    header = encode_segment_header(42, SALT)
    for index in range(len(header)):
        for bit in range(8):
            damaged = bytearray(header)
            damaged[index] ^= 1 << bit
            assert decode_segment_header(bytes(damaged)) is None, (index, bit)
    for size in range(len(header)):
        assert decode_segment_header(header[:size]) is None
    assert decode_segment_header(bytes(32)) is None


def test_header_with_wrong_magic_but_valid_crc_rejected() -> None:
    damaged = bytearray(encode_segment_header(7, SALT))
    damaged[0:8] = b"TDLGSEX\n"
    struct.pack_into("<I", damaged, 28, crc.crcmod_crc32c(bytes(damaged[:28])))
    assert decode_segment_header(bytes(damaged)) is None


def test_header_versions_are_reported_for_the_caller_to_judge() -> None:
    newer = bytearray(encode_segment_header(9, SALT))
    newer[8], newer[9] = 3, 4
    struct.pack_into("<I", newer, 28, crc.crcmod_crc32c(bytes(newer[:28])))
    assert decode_segment_header(bytes(newer)) == SegmentHeader(3, 4, 9, SALT)
    # A format 1 header (6 reserved zero bytes where the salt now is) reads as
    # version 1 with salt 0, which no format 2 segment has.
    old = bytearray(struct.pack("<8sBB6xQ4x", b"TDLGSEG\n", 1, 1, 9))
    old += struct.pack("<I", crc.crcmod_crc32c(bytes(old)))
    assert decode_segment_header(bytes(old)) == SegmentHeader(1, 1, 9, 0)


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


# -- damaged batches ---------------------------------------------------------------


def two_batches() -> tuple[bytearray, int]:
    first = encode_batch(SALT, 10, 1, 0, [b"alpha", b"beta"], [b"k", b""])
    second = encode_batch(SALT, 12, 2, 0, [b"gamma" * 10, b"", b"d"])
    return bytearray(first + second), len(first)


def decode_error(data: bytes, salt: int = SALT, base_position: int = 0) -> fmt.FrameError:
    batches, _, error = decode_batches(data, 0, len(data), salt, 10, base_position)
    assert error is not None, "damage not caught"
    return error


@pytest.mark.parametrize("base_position", [0, 32, 1_000_000])
def test_length_below_minimum_is_caught_with_position(base_position: int) -> None:
    data, second = two_batches()
    struct.pack_into("<I", data, second, 31)
    error = decode_error(bytes(data), base_position=base_position)
    assert error.position == base_position + second
    assert "length" in error.reason


def test_length_above_maximum_is_caught() -> None:
    data, second = two_batches()
    struct.pack_into("<I", data, second, fmt.BATCH_BYTES_MAX + 1)
    assert decode_error(bytes(data)).position == second


def test_salt_of_another_use_of_the_space_is_refused_even_with_a_valid_crc() -> None:
    data, second = two_batches()
    struct.pack_into("<I", data, second + 8, SALT + 1)
    fix_checksum(data, second)
    error = decode_error(bytes(data))
    assert (error.position, "salt" in error.reason) == (second, True)
    # The whole of another segment's bytes: nothing passes.
    batches, _, error = decode_batches(bytes(data), 0, len(data), SALT ^ 0xFFFF, 10)
    assert batches == [] and error is not None and error.position == 0


def test_offset_out_of_sequence_is_caught_even_with_a_valid_crc() -> None:
    data, second = two_batches()
    struct.pack_into("<Q", data, second + 16, 13)
    fix_checksum(data, second)
    error = decode_error(bytes(data))
    assert (error.position, "offset" in error.reason) == (second, True)


def test_lengths_that_do_not_add_up_are_caught_even_with_a_valid_crc() -> None:
    data, second = two_batches()
    struct.pack_into("<I", data, second + 40, 49)  # first value 1 byte short
    fix_checksum(data, second)
    assert "add up" in decode_error(bytes(data)).reason
    data, second = two_batches()
    struct.pack_into("<I", data, second + 12, 10**6)  # a count whose lengths do not fit
    fix_checksum(data, second)
    assert "fit" in decode_error(bytes(data)).reason


def test_unknown_attribute_bits_and_zero_count_are_caught() -> None:
    for field, value in ((33, 0x04), (12, 0)):
        data, second = two_batches()
        struct.pack_into("<B" if field == 33 else "<I", data, second + field, value)
        fix_checksum(data, second)
        assert decode_error(bytes(data)).position == second, field


def test_every_bit_flip_past_the_length_is_caught() -> None:
    data, second = two_batches()
    for index in range(second + 4, len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[index] ^= 1 << bit
            assert decode_error(bytes(damaged)).position == second, (index, bit)


def test_bit_flip_in_length_never_yields_a_wrong_record() -> None:
    data, second = two_batches()
    for index in range(second, second + 4):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[index] ^= 1 << bit
            batches, end, error = decode_batches(bytes(damaged), 0, len(damaged), SALT, 10)
            # Either caught, or (a longer length) left for the caller as an
            # incomplete batch: never decoded.
            assert [b.base_offset for b in batches] == [10], (index, bit)
            assert end == second
            assert error is None or error.position == second


def test_batch_cut_off_by_end_is_left_for_the_next_call() -> None:
    data, second = two_batches()
    for end in range(second, len(data)):
        batches, stop, error = decode_batches(bytes(data), 0, end, SALT, 10)
        assert [b.base_offset for b in batches] == [10] and error is None
        assert stop == second
    batches, stop, error = decode_batches(bytes(data), second, len(data), SALT, 12)
    assert [b.base_offset for b in batches] == [12] and stop == len(data)


def test_batch_length_bounds() -> None:
    data, second = two_batches()
    assert fmt.batch_length(bytes(data), 0) == second
    assert fmt.batch_length(bytes(data), second) == len(data) - second
    assert fmt.batch_length(bytes(data), len(data) - 4) is None
    assert fmt.batch_length(struct.pack("<II", 31, 0), 0) is None
    assert fmt.batch_length(struct.pack("<II", fmt.BATCH_BYTES_MAX + 1, 0), 0) is None


def test_random_junk_and_zeros_never_decode_as_batches() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(2000):
        junk = rng.randbytes(rng.randrange(40, 300))
        batches, _, _ = decode_batches(junk, 0, len(junk), SALT, 0)
        assert batches == [], f"seed {seed}: junk {junk.hex()} decoded"
    zeros = bytes(4096)
    batches, used, error = decode_batches(zeros, 0, len(zeros), SALT, 0)
    assert batches == [] and used == 0 and error is not None
