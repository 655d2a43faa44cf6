"""The object store (engine/objects.py) and aws-chunked decoding (server/s3/chunked.py)
without a server: listings against a model, crash leftovers, concurrent handles,
and chunk signatures against AWS's published example.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

import tidelog
from tidelog.objects import KEY_BYTES_MAX, ObjectRequestError
from tidelog.server.s3.chunked import AwsChunkedDecoder, ChunkError, ChunkSigner, signing_key


def test_listing_pages_agree_with_a_model(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    with tidelog.open(tmp_path / "d", sync="never") as store:
        objects = store.objects
        objects.create_bucket("model")
        keys = {
            "/".join(rng.choice("abc") for _ in range(rng.randint(1, 4))) + rng.choice(["", "/x"])
            for _ in range(120)
        }
        for key in keys:
            objects.put("model", key, key.encode())
        for prefix, delimiter, page_size in [
            ("", "", 7),
            ("", "/", 3),
            ("a/", "/", 2),
            ("b", "/", 5),
        ]:
            expected: list[str] = []
            for key in sorted(k for k in keys if k.startswith(prefix)):
                cut = key.find(delimiter, len(prefix)) if delimiter else -1
                entry = key[: cut + len(delimiter)] if cut >= 0 else key
                if entry not in expected:
                    expected.append(entry)
            seen: list[str] = []
            after = ""
            while True:
                page = objects.list_objects(
                    "model", prefix=prefix, delimiter=delimiter, after=after, max_keys=page_size
                )
                entries = sorted([o.key for o in page.objects] + page.prefixes)
                assert len(entries) <= page_size
                seen += entries
                if not page.truncated:
                    break
                assert page.next_marker is not None
                after = page.next_marker
            assert seen == expected, (seed, prefix, delimiter, page_size)


def test_a_crash_before_the_commit_leaves_only_a_file_sweep_removes(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d") as store:
        objects = store.objects
        objects.create_bucket("crash")
        objects.put("crash", "kept", b"kept")
        staged = objects.stage()
        staged.write(b"never committed")
        staged.finish()
        # Moved into the bucket's directory, then "the crash": no commit names it.
        orphan = tmp_path / "d" / "objects" / "crash" / objects._place(staged, "crash")
        in_flight = objects.stage()  # another upload still streaming in
        in_flight.write(b"partial")
        assert objects.list_objects("crash").objects[0].key == "kept"
        assert objects.sweep() == 0  # too young: it could be another process's upload
        old = time.time() - 7200
        os.utime(orphan, (old, old))
        assert objects.sweep() == 1 and not orphan.exists()
        assert objects.get("crash", "kept") == b"kept"  # what a row names stays
        in_flight.close()
        assert not Path(in_flight.path).exists()


def test_two_handles_see_each_others_objects(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d") as one, tidelog.open(tmp_path / "d") as two:
        one.objects.create_bucket("shared")
        two.objects.put("shared", "k", b"from two")
        assert one.objects.get("shared", "k") == b"from two"
        info, file = one.objects.open("shared", "k")
        two.objects.put("shared", "k", b"replaced")  # the old file goes after the commit
        with file:
            assert b"".join(one.objects.read(info, file)) == b"from two"  # still readable
        assert one.objects.get("shared", "k") == b"replaced"


def test_key_and_bucket_limits(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        objects = store.objects
        for bad in ("ab", "UPPER", "a..b", "192.168.1.1", "-dash", "x" * 64):
            with pytest.raises(ObjectRequestError) as caught:
                objects.create_bucket(bad)
            assert caught.value.s3_code == "InvalidBucketName"
        objects.create_bucket("limits")
        objects.put("limits", "k" * KEY_BYTES_MAX, b"")
        with pytest.raises(ObjectRequestError) as caught:
            objects.put("limits", "k" * (KEY_BYTES_MAX + 1), b"")
        assert caught.value.s3_code == "KeyTooLongError"
        with pytest.raises(tidelog.NotFound):
            objects.put("missing", "k", b"")
    with tidelog.open(tmp_path / "d", readonly=True) as store:
        with pytest.raises(tidelog.ReadOnly):
            store.objects.put("limits", "k", b"")
        assert [b.name for b in store.objects.buckets()] == ["limits"]


# -- aws-chunked -------------------------------------------------------------------------------

# AWS's worked example of a chunked upload (S3 API reference, "Signature calculations for
# the Authorization header: transferring payload in multiple chunks"): 65 KiB + 1 KiB of "a".
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
EXAMPLE_CHUNKS = [
    (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]


def _example_signer() -> ChunkSigner:
    key = signing_key(EXAMPLE_SECRET, "20130524", "us-east-1", "s3")
    return ChunkSigner(key, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", EXAMPLE_SEED)


def _example_body() -> bytes:
    out = b""
    for data, signature in EXAMPLE_CHUNKS:
        out += f"{len(data):x};chunk-signature={signature}\r\n".encode() + data + b"\r\n"
    return out


def test_chunk_signatures_match_aws_worked_example() -> None:
    decoder = AwsChunkedDecoder(_example_signer())
    body = _example_body()
    got = b""
    for i in range(0, len(body), 777):  # fed in pieces that cut headers and data anywhere
        got += b"".join(decoder.feed(body[i : i + 777]))
    decoder.close()
    assert got == b"a" * (65536 + 1024)
    tampered = _example_body().replace(b"a" * 1024, b"b" * 1024)
    with pytest.raises(ChunkError) as caught:
        b"".join(AwsChunkedDecoder(_example_signer()).feed(tampered))
    assert caught.value.code == "SignatureDoesNotMatch"


def test_decoder_framing_errors_and_trailers() -> None:
    decoder = AwsChunkedDecoder()
    assert (
        b"".join(decoder.feed(b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:abc=\r\n\r\n")) == b"hello"
    )
    decoder.close()
    assert decoder.trailers == {"x-amz-checksum-crc32": "abc="}
    lenient = AwsChunkedDecoder()  # no final empty line: accepted
    assert b"".join(lenient.feed(b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:q==")) == b"abc"
    lenient.close()
    assert lenient.trailers == {"x-amz-checksum-crc32": "q=="}
    for bad in (b"zz\r\n", b"5\r\nhelloXX", b"3\r\nabc\r\n"):
        decoder = AwsChunkedDecoder()
        with pytest.raises(ChunkError):
            b"".join(decoder.feed(bad))
            decoder.close()
    with pytest.raises(ChunkError):
        b"".join(AwsChunkedDecoder().feed(b"1" * 10_000))  # a header line with no end
