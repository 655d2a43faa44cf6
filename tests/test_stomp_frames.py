"""STOMP frames on raw sockets (malformed, oversize, garbage) and JMS selectors."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from stomp_harness import FAST, Raw, broker, connect, refused

import tidelog
from tidelog.server.stomp import BrokerConfig, FrameError, FrameLimits, SelectorError
from tidelog.server.stomp.frames import escape, read_frame, unescape
from tidelog.server.stomp.selector import compile_selector

SMALL = BrokerConfig(
    poll_wait_seconds=0.3,
    limits=FrameLimits(header_line_bytes_max=256, headers_max=20, body_bytes_max=4096),
)


def _still_serves(server: object) -> None:
    conn, got = connect(server)  # type: ignore[arg-type]
    conn.subscribe("/queue/keep", id="s", ack="client-individual")
    bodies = [f.body for f in got.take(1)]
    assert bodies == [b"kept"]
    conn.disconnect()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"BOGUS\n\n\0", b"unknown command"),
        (b"SEND\n\nno destination\0", b"destination"),
        (b"SUBSCRIBE\ndestination:/queue/x\n\n\0", b"'id'"),
        (b"ACK\n\n\0", b"'id'"),
        (b"BEGIN\n\n\0", b"transaction"),
        (b"SEND\ndestination:/queue/x\ncontent-length:99999\n\n\0", b"over the limit"),
        (b"SEND\ndestination:/queue/x\nh:" + b"v" * 1000 + b"\n\n\0", b"header line"),
        (b"SEND\n" + b"".join(b"h%d:v\n" % n for n in range(30)) + b"\n\0", b"headers"),
        (b"SEND\ndestination:/queue/x\ncontent-length:2\n\nabc\0", b"NUL"),
        (b"SEND\ndestination:/queue/x\nbad\\qescape:1\n\n\0", b"escape"),
        (b"SEND\ndestination:/nowhere/x\n\n\0", b"/queue/NAME"),
        (b"\xff\xfe\x00garbage\n\n\0", b"ASCII"),
        (b"SEND\ndestination:/queue/x\nnocolon\n\n\0", b"colon"),
    ],
)
def test_a_malformed_frame_gets_an_error_and_a_close(
    tmp_path: Path, frame: bytes, reason: bytes
) -> None:
    with broker(tmp_path / "d", SMALL) as server:
        conn, _ = connect(server)
        conn.send("/queue/keep", b"kept", receipt="r")
        conn.disconnect()
        refused(server, frame, reason)
        _still_serves(server)  # the broker lives on, and nothing was lost


def test_random_garbage_never_crashes_the_broker(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    import random

    generator = random.Random(seed)
    with broker(tmp_path / "d", SMALL) as server:
        conn, _ = connect(server)
        conn.send("/queue/keep", b"kept", receipt="r")
        conn.disconnect()
        for _ in range(20):
            raw = Raw(server)
            if generator.random() < 0.5:
                raw.connect()
            raw.send(bytes(generator.randrange(256) for _ in range(generator.randrange(1, 600))))
            raw.send(b"\n\0" * 3)
            assert raw.closed(5), f"seed {seed}"
            raw.close()
        _still_serves(server)


def test_frames_before_connect_and_unsupported_versions_are_refused(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        raw = Raw(server)
        raw.send(b"SEND\ndestination:/queue/x\n\nhi\0")
        assert b"before CONNECT" in raw.frame()
        assert raw.closed()
        raw.close()
        raw = Raw(server)
        reply = raw.connect("accept-version:2.0\n")
        assert b"Supported protocol versions are 1.0,1.1,1.2" in reply
        assert raw.closed()
        raw.close()


def test_stomp_10_bodies_end_at_nul_and_get_receipts(tmp_path: Path) -> None:
    with (
        tidelog.open(tmp_path / "d", sync="never") as store,
        broker(tmp_path, FAST, store=store) as server,
    ):
        raw = Raw(server)
        reply = raw.connect("")
        assert b"version:1.0" in reply
        raw.send(b"SEND\ndestination:/queue/old\nreceipt:77\n\nplain text\0")
        assert raw.frame() == b"RECEIPT\nreceipt-id:77\n\n"
        raw.send(b"SUBSCRIBE\ndestination:/queue/old\n\n\0")
        message = raw.frame()
        assert message.startswith(b"MESSAGE\n") and message.endswith(b"\n\nplain text")
        raw.send(b"DISCONNECT\nreceipt:bye\n\n\0")
        assert raw.frame() == b"RECEIPT\nreceipt-id:bye\n\n"
        assert raw.closed()
        raw.close()


def test_escaping_per_version() -> None:
    value = "a:b\\c\nd\re"
    assert escape(value, "1.2") == "a\\cb\\\\c\\nd\\re"
    assert unescape(escape(value, "1.2"), "1.2") == value
    assert escape(value, "1.1") == "a\\cb\\\\c\\nd\re"
    assert unescape("a\\cb", "1.0") == "a\\cb"  # 1.0 takes values literally
    with pytest.raises(FrameError):
        unescape("a\\rb", "1.1")  # \r is a 1.2 escape


def test_read_frame_keeps_nul_bytes_with_content_length() -> None:
    async def read(data: bytes) -> tuple[str, dict[str, str], bytes] | None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        frame = await read_frame(reader, "1.2", FrameLimits())
        return None if frame is None else (frame.command, frame.headers, frame.body)

    parsed = asyncio.run(read(b"SEND\r\ndestination:/queue/a\r\ncontent-length:3\r\n\r\na\0b\0"))
    assert parsed == ("SEND", {"destination": "/queue/a", "content-length": "3"}, b"a\0b")
    assert asyncio.run(read(b"\n")) is None  # a heart-beat
    repeated = asyncio.run(read(b"SEND\nfoo:1\nfoo:2\n\n\0"))
    assert repeated is not None and repeated[1] == {"foo": "1"}  # the first value counts


HEADERS = {
    "color": "red",
    "size": "10",
    "ratio": "7.5",
    "name": "a_b%c",
    "JMSPriority": 7,
    "JMSTimestamp": 1000,
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("color = 'red'", True),
        ("color <> 'red'", False),
        ("color = 'red' OR missing = 'x'", True),
        ("missing = 'x'", False),
        ("NOT missing = 'x'", False),  # NOT unknown is unknown
        ("missing IS NULL AND color IS NOT NULL", True),
        ("JMSPriority > 4 AND JMSPriority <= 7", True),
        ("JMSPriority BETWEEN 8 AND 9", False),
        ("JMSPriority NOT BETWEEN 8 AND 9", True),
        ("JMSPriority * 2 + 1 = 15", True),
        ("-JMSPriority < 0", True),
        ("JMSTimestamp / 3 = 333", True),
        ("JMSPriority = 7.0", True),
        # STOMP headers are strings, converted for comparisons as ActiveMQ 5.17 does:
        ("size > 5", True),
        ("size = 10", True),
        ("size = '10'", True),
        ("size + 1 = 11", False),  # no conversion in arithmetic
        ("ratio > 5", False),  # "7.5" is no long
        ("ratio > 5.0", True),
        ("color > 5", False),
        ("color IN ('blue', 'red')", True),
        ("color NOT IN ('blue', 'red')", False),
        ("color LIKE 'r_d'", True),
        ("color LIKE 'r%'", True),
        ("color NOT LIKE 'b%'", True),
        ("name LIKE 'a!_b!%c' ESCAPE '!'", True),
        ("name LIKE 'a!_b!%d' ESCAPE '!'", False),
        ("(color = 'red' OR color = 'blue') AND NOT (JMSPriority < 5)", True),
        ("TRUE", True),
        ("FALSE OR TRUE", True),
        ("color = 'it''s'", False),
        ("0x10 = 16 AND 1e1 = 10", True),
    ],
)
def test_selectors_evaluate(selector: str, expected: bool) -> None:
    assert compile_selector(selector)(HEADERS) is expected


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("color =", "expected a value"),
        ("color = 'red' AND", "expected a value"),
        ("color IN (1, 2)", "expected a string literal"),
        ("color LIKE 'x' ESCAPE 'ab'", "one character"),
        ("(color = 'red'", "expected ')'"),
        ("color = 'red' extra", "expected the end"),
        ("color # 1", "unexpected"),
        ("color NOT 'x'", "BETWEEN, IN or LIKE"),
        ("", "empty"),
        ("a = 'x" + "y" * 5000 + "'", "over"),
    ],
)
def test_bad_selectors_say_why(selector: str, fragment: str) -> None:
    with pytest.raises(SelectorError, match=None) as caught:
        compile_selector(selector)
    assert fragment in str(caught.value)


def test_a_silent_subscription_does_not_spin(tmp_path: Path) -> None:
    """An idle subscriber long-polls: a second of waiting costs little CPU."""
    with broker(tmp_path / "d") as server:
        conns = [connect(server) for _ in range(4)]
        for index, (conn, _) in enumerate(conns):
            conn.subscribe(f"/queue/idle{index}", id="s")
        time.sleep(0.3)
        started = time.process_time()
        time.sleep(1.0)
        assert time.process_time() - started < 0.3
        for conn, _ in conns:
            conn.disconnect()
