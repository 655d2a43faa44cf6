"""Kinesis Video Streams through boto3 (and plain chunked HTTP for PutMedia)
against `tidelog serve` on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import av
import ebmlite
import pytest
from botocore.exceptions import ClientError
from server_harness import client, free_port, start_serve
from video_media_helpers import chunks, make_mkv, probe, put_media_request, read_acks

import tidelog
from tidelog.server import ServerThread
from tidelog.video_mkv import split_fragments

SCHEMA = ebmlite.loadSchema("matroska.xml")
START_S = 1_700_000_000  # the producer's start, epoch seconds (RELATIVE timecodes)
RELATIVE = {
    "x-amzn-fragment-timecode-type": "RELATIVE",
    "x-amzn-producer-start-timestamp": f"{START_S}.000",
}


@pytest.fixture(scope="module")
def mkv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_mkv(tmp_path_factory.mktemp("media") / "test.mkv", seconds=4)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = start_serve(tmp_path / "data", port, "--no-stomp")
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=30)


def clients(port: int) -> tuple[Any, Any, Any]:
    url = f"http://127.0.0.1:{port}"
    return (
        client("kinesisvideo", url),
        client("kinesis-video-media", url),
        client("kinesis-video-archived-media", url),
    )


def code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_control_plane(serve: tuple[subprocess.Popen[str], int]) -> None:
    kv, _, _ = clients(serve[1])
    arn = kv.create_stream(
        StreamName="cam", DataRetentionInHours=24, MediaType="video/h264",
        DeviceName="door", KmsKeyId="alias/k", Tags={"site": "a"},
    )["StreamARN"]  # fmt: skip
    info = kv.describe_stream(StreamName="cam")["StreamInfo"]
    assert info["StreamARN"] == arn and info["Status"] == "ACTIVE"
    assert (info["DataRetentionInHours"], info["MediaType"], info["DeviceName"]) == (
        24, "video/h264", "door",
    )  # fmt: skip
    assert info["KmsKeyId"] == "alias/k"
    assert kv.describe_stream(StreamARN=arn)["StreamInfo"]["StreamName"] == "cam"
    with pytest.raises(ClientError) as error:
        kv.create_stream(StreamName="cam")
    assert code(error) == "ResourceInUseException"
    with pytest.raises(ClientError) as error:
        kv.describe_stream(StreamName="nope")
    assert code(error) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as error:
        kv.create_stream(StreamName="bad", DataRetentionInHours=90000)
    assert code(error) == "InvalidArgumentException"
    with pytest.raises(ClientError) as error:
        kv.update_stream(StreamName="cam", CurrentVersion="stale", DeviceName="x")
    assert code(error) == "VersionMismatchException"
    kv.update_stream(StreamName="cam", CurrentVersion=info["Version"], DeviceName="porch")
    version = kv.describe_stream(StreamName="cam")["StreamInfo"]["Version"]
    kv.update_data_retention(
        StreamName="cam", CurrentVersion=version,
        Operation="INCREASE_DATA_RETENTION", DataRetentionChangeInHours=2,
    )  # fmt: skip
    info = kv.describe_stream(StreamName="cam")["StreamInfo"]
    assert (info["DeviceName"], info["DataRetentionInHours"]) == ("porch", 26)
    kv.tag_stream(StreamName="cam", Tags={"b": "2"})
    kv.untag_stream(StreamName="cam", TagKeyList=["site"])
    assert kv.list_tags_for_stream(StreamName="cam")["Tags"] == {"b": "2"}
    with pytest.raises(ClientError) as error:
        kv.tag_stream(StreamName="cam", Tags={f"k{i}": "v" for i in range(50)})
    assert code(error) == "TagsPerResourceExceededLimitException"
    kv.create_stream(StreamName="cam2")
    listed = kv.list_streams()["StreamInfoList"]
    assert [s["StreamName"] for s in listed] == ["cam", "cam2"]
    page = kv.list_streams(MaxResults=1)
    assert len(page["StreamInfoList"]) == 1 and "NextToken" in page
    rest = kv.list_streams(MaxResults=1, NextToken=page["NextToken"])["StreamInfoList"]
    assert [s["StreamName"] for s in rest] == ["cam2"]
    endpoint = kv.get_data_endpoint(StreamName="cam", APIName="GET_MEDIA")["DataEndpoint"]
    assert endpoint == f"http://127.0.0.1:{serve[1]}"
    kv.delete_stream(StreamARN=arn)
    with pytest.raises(ClientError) as error:
        kv.delete_stream(StreamARN=arn)
    assert code(error) == "ResourceNotFoundException"


def test_put_media_acks_then_get_media_gives_the_same_fragments(
    serve: tuple[subprocess.Popen[str], int], mkv: bytes
) -> None:
    port = serve[1]
    kv, media, archived = clients(port)
    kv.create_stream(StreamName="cam", DataRetentionInHours=1)
    sock = put_media_request(port, chunks(mkv, 4000), stream="cam", headers=RELATIVE)
    sock.sendall(b"0\r\n\r\n")
    status, events = read_acks(sock)
    sock.close()
    assert status == 200
    assert [e["EventType"] for e in events] == ["BUFFERING", "RECEIVED", "PERSISTED"] * 4
    assert [e["FragmentTimecode"] for e in events[2::3]] == [0, 1000, 2000, 3000]
    numbers = [e["FragmentNumber"] for e in events[2::3]]

    sent = split_fragments(mkv)
    got = media.get_media(StreamName="cam", StartSelector={"StartSelectorType": "EARLIEST"})
    assert got["ContentType"] == "video/x-matroska"
    back = split_fragments(got["Payload"].read())
    assert [cluster for _, cluster in back] == [cluster for _, cluster in sent]
    assert [header for header, _ in back] == [header for header, _ in sent]
    # The per-fragment AWS tags, as KVS writes them, before each cluster.
    tagged = _tags(media.get_media(
        StreamName="cam", StartSelector={"StartSelectorType": "FRAGMENT_NUMBER",
                                         "AfterFragmentNumber": numbers[2]},
    )["Payload"].read())  # fmt: skip
    assert [t["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] for t in tagged[::2]] == numbers[2:]
    assert tagged[0]["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"] == f"{START_S + 2}.000"
    assert tagged[1]["AWS_KINESISVIDEO_CONTINUATION_TOKEN"] == numbers[2]
    after = media.get_media(
        StreamName="cam",
        StartSelector={"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": numbers[2]},
    )["Payload"].read()
    assert [c for _, c in split_fragments(after)] == [sent[3][1]]
    by_time = media.get_media(
        StreamName="cam",
        StartSelector={"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": START_S + 1.5},
    )["Payload"].read()
    assert len(split_fragments(by_time)) == 2

    window = {"StartTimestamp": START_S, "EndTimestamp": START_S + 9}
    selector = {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": window}
    listed = archived.list_fragments(StreamName="cam", MaxResults=3, FragmentSelector=selector)
    assert [f["FragmentNumber"] for f in listed["Fragments"]] == numbers[:3]
    assert listed["Fragments"][1]["FragmentLengthInMilliseconds"] == 1000
    assert listed["Fragments"][1]["ProducerTimestamp"].timestamp() == START_S + 1
    more = archived.list_fragments(StreamName="cam", NextToken=listed["NextToken"])
    assert [f["FragmentNumber"] for f in more["Fragments"]] == numbers[3:]

    payload = archived.get_media_for_fragment_list(StreamName="cam", Fragments=numbers[1:3])
    assert [c for _, c in split_fragments(payload["Payload"].read())] == [sent[1][1], sent[2][1]]
    with pytest.raises(ClientError) as error:
        archived.get_media_for_fragment_list(StreamName="cam", Fragments=["1234"])
    assert code(error) == "InvalidArgumentException"


def _tags(data: bytes) -> list[dict[str, str]]:
    """Every Tags element of a GetMedia payload, as {TagName: TagString}."""
    out = []
    for top in SCHEMA.loads(data):
        if top.name != "Segment":
            continue
        for child in top:
            if child.name == "Tags":
                tags = {}
                for simple in child[0]:
                    if simple.name == "SimpleTag":
                        fields = {item.name: item.value for item in simple}
                        tags[fields["TagName"]] = fields["TagString"]
                out.append(tags)
    return out


def test_hls_clip_and_images(serve: tuple[subprocess.Popen[str], int], mkv: bytes) -> None:
    port = serve[1]
    kv, _, archived = clients(port)
    kv.create_stream(StreamName="cam", DataRetentionInHours=1)
    sock = put_media_request(port, [mkv], stream="cam", headers=RELATIVE)
    sock.sendall(b"0\r\n\r\n")
    assert read_acks(sock)[1][-1]["EventType"] == "PERSISTED"
    sock.close()
    window = {"StartTimestamp": START_S, "EndTimestamp": START_S + 10}
    selector = {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": window}
    url = archived.get_hls_streaming_session_url(
        StreamName="cam", PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector
    )["HLSStreamingSessionURL"]
    assert url.startswith(f"http://127.0.0.1:{port}/hls/v1/")
    found = probe(url)
    assert found["frames"] == 100 and found["codec"] == "h264"
    assert found["duration"] == pytest.approx(4.0, abs=0.1)
    live = archived.get_hls_streaming_session_url(StreamName="cam", PlaybackMode="LIVE")
    master = urllib.request.urlopen(live["HLSStreamingSessionURL"], timeout=30).read().decode()
    media_url = urljoin(live["HLSStreamingSessionURL"], master.strip().splitlines()[-1])
    playlist = urllib.request.urlopen(media_url, timeout=30).read().decode()
    # A live playlist: the newest fragments (all 4 here), reloaded by players, no end.
    assert playlist.count("#EXTINF:1.000,") == 4 and "#EXT-X-ENDLIST" not in playlist

    clip = archived.get_clip(
        StreamName="cam",
        ClipFragmentSelector={
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": START_S + 1, "EndTimestamp": START_S + 2},
        },
    )
    assert clip["ContentType"] == "video/mp4"
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"clip-{port}.mp4"
    try:
        path.write_bytes(clip["Payload"].read())
        found = probe(path)
    finally:
        path.unlink(missing_ok=True)
    assert found["frames"] == 50 and found["duration"] == pytest.approx(2.0, abs=0.1)

    images = archived.get_images(
        StreamName="cam", ImageSelectorType="PRODUCER_TIMESTAMP",
        StartTimestamp=START_S, EndTimestamp=START_S + 3, SamplingInterval=1000,
        Format="JPEG", WidthPixels=160,
    )["Images"]  # fmt: skip
    assert [i["TimeStamp"].timestamp() for i in images] == [START_S + s for s in range(4)]
    for image in images:
        frame = next(av.open(io.BytesIO(base64.b64decode(image["ImageContent"]))).decode(video=0))
        assert frame.width == 160
    with pytest.raises(ClientError) as error:
        archived.get_images(
            StreamName="cam", ImageSelectorType="PRODUCER_TIMESTAMP", StartTimestamp=START_S,
            EndTimestamp=START_S + 3, SamplingInterval=1000, Format="GIF",
        )  # fmt: skip
    assert code(error) == "InvalidArgumentException"
    kv.create_stream(StreamName="nothing-kept")
    with pytest.raises(ClientError) as error:
        archived.get_hls_streaming_session_url(StreamName="nothing-kept")
    assert code(error) == "NoDataRetentionException"


def test_put_media_errors(serve: tuple[subprocess.Popen[str], int], mkv: bytes) -> None:
    port = serve[1]
    kv, _, archived = clients(port)
    sock = put_media_request(port, [mkv[:100]], stream="ghost")
    sock.sendall(b"0\r\n\r\n")
    status, _ = read_acks(sock)
    sock.close()
    assert status == 404
    kv.create_stream(StreamName="cam", DataRetentionInHours=1)
    sock = put_media_request(port, [b"\x42" * 5000], stream="cam")
    sock.sendall(b"0\r\n\r\n")
    status, events = read_acks(sock)
    sock.close()
    assert status == 200 and events == [{"EventType": "ERROR", "ErrorId": 4006}]
    assert archived.list_fragments(StreamName="cam")["Fragments"] == []
    # The server is still there and serves the next session.
    sock = put_media_request(port, [mkv], stream="cam")
    sock.sendall(b"0\r\n\r\n")
    assert [e["EventType"] for e in read_acks(sock)[1]].count("PERSISTED") == 4
    sock.close()


def test_kill_during_put_media_loses_no_persisted_fragment(tmp_path: Path) -> None:
    """kill -9 of the server in the middle of a PutMedia session: every fragment
    acknowledged PERSISTED is there after a restart."""
    data = make_mkv(tmp_path / "long.mkv", seconds=12)
    port = free_port()
    process = start_serve(tmp_path / "data", port, "--no-stomp")  # sync "always"
    try:
        kv, _, _ = clients(port)
        kv.create_stream(StreamName="cam", DataRetentionInHours=1)
        events: list[dict[str, Any]] = []
        sent_enough = threading.Event()

        def produce() -> None:
            sock = put_media_request(port, [], stream="cam")
            reader = threading.Thread(target=read_acks, args=(sock, events))
            reader.start()
            pieces = chunks(data, 2000)
            try:
                # Most of the stream, then wait for the ACKs of the fragments it
                # completed; the rest goes on slowly while the server is killed.
                head, tail = pieces[: len(pieces) * 2 // 3], pieces[len(pieces) * 2 // 3 :]
                for piece in head:
                    sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    if sum(e["EventType"] == "PERSISTED" for e in list(events)) >= 3:
                        break
                    time.sleep(0.05)
                sent_enough.set()
                for piece in tail:
                    sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    time.sleep(0.05)
            except OSError:
                pass  # the server died under us: expected
            reader.join(timeout=60)
            sock.close()

        producer = threading.Thread(target=produce)
        producer.start()
        assert sent_enough.wait(120)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        producer.join(timeout=120)
        persisted = [e["FragmentNumber"] for e in events if e["EventType"] == "PERSISTED"]
        assert len(persisted) >= 3
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
    port = free_port()
    process = start_serve(tmp_path / "data", port, "--no-stomp")
    try:
        _, _, archived = clients(port)
        stored = [
            f["FragmentNumber"] for f in archived.list_fragments(StreamName="cam")["Fragments"]
        ]
        assert set(persisted) <= set(stored)
        sent = [cluster for _, cluster in split_fragments(data)]
        _, media, _ = clients(port)
        back = media.get_media(StreamName="cam", StartSelector={"StartSelectorType": "EARLIEST"})
        clusters = [cluster for _, cluster in split_fragments(back["Payload"].read())]
        assert clusters == sent[: len(clusters)]
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_stopping_the_server_ends_a_stalled_put_media(tmp_path: Path, mkv: bytes) -> None:
    """A producer that stops sending mid-fragment must not hold up a graceful stop;
    the fragments it completed stay."""
    with tidelog.open(tmp_path / "d") as store:
        store.create_video_stream("cam", data_retention_hours=1)
        server = ServerThread(store).start()
        port = int(server.url.rsplit(":", 1)[1])
        half = mkv[: len(mkv) // 2]
        sock = put_media_request(port, [half], stream="cam")
        events: list[dict[str, Any]] = []
        reader = threading.Thread(target=read_acks, args=(sock, events))
        reader.start()
        deadline = time.monotonic() + 60
        while not any(e["EventType"] == "PERSISTED" for e in list(events)):
            assert time.monotonic() < deadline, events
            time.sleep(0.05)
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        stopping.join(timeout=60)
        assert not stopping.is_alive(), "the server did not stop"
        reader.join(timeout=30)
        sock.close()
        persisted = [e["FragmentNumber"] for e in events if e["EventType"] == "PERSISTED"]
        assert [f.number for f in store.video_stream("cam").fragments()][
            : len(persisted)
        ] == persisted
