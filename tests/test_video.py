"""Video streams in the library: settings, ingest of ffmpeg-made MKV, fragments and reads."""

from __future__ import annotations

import io
from pathlib import Path

import av
import ebmlite
import pytest
from video_media_helpers import chunks, make_mkv, probe

import tidelog
from tidelog import video_media
from tidelog.video_mkv import CLUSTER_ID, FragmentTooLarge, MkvCutter, MkvError

SCHEMA = ebmlite.loadSchema("matroska.xml")


@pytest.fixture(scope="module")
def mkv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_mkv(tmp_path_factory.mktemp("media") / "test.mkv", seconds=4)


def clusters_of(data: bytes) -> list[bytes]:
    """The file's clusters as ebmlite's document reader finds them (not our cutter)."""
    doc = SCHEMA.loads(data)
    segment = next(el for el in doc if el.name == "Segment")
    return [data[c.offset : c.offset + c.size + (c.payloadOffset - c.offset)]
            for c in segment if c.name == "Cluster"]  # fmt: skip


def test_settings_round_trip_and_limits(store: tidelog.Store) -> None:
    cam = store.create_video_stream(
        "cam-1", data_retention_hours=24, media_type="video/h264", device_name="door",
        kms_key_id="alias/x", tags={"site": "a"},
    )  # fmt: skip
    info = cam.describe()
    assert (info.data_retention_hours, info.media_type, info.device_name) == (
        24,
        "video/h264",
        "door",
    )
    assert info.kms_key_id == "alias/x" and info.tags == {"site": "a"}
    assert info.arn.startswith("arn:aws:kinesisvideo:") and "stream/cam-1/" in info.arn
    with pytest.raises(tidelog.AlreadyExists):
        store.create_video_stream("cam-1")
    assert store.create_video_stream("cam-1", exist_ok=True).name == "cam-1"
    for bad in ({"data_retention_hours": -1}, {"data_retention_hours": 87601},
                {"media_type": "not a mime"}, {"device_name": "x" * 129}):  # fmt: skip
        with pytest.raises(tidelog.InvalidArgument):
            store.create_video_stream("other", **bad)  # type: ignore[arg-type]
    with pytest.raises(tidelog.InvalidArgument, match="name"):
        store.create_video_stream("bad name")
    with pytest.raises(tidelog.VersionMismatch):
        cam.update(device_name="x", current_version="stale")
    updated = cam.update(device_name="porch", current_version=info.version)
    assert updated.device_name == "porch" and updated.version != info.version
    cam.update_data_retention("INCREASE_DATA_RETENTION", 6)
    assert cam.describe().data_retention_hours == 30
    with pytest.raises(tidelog.InvalidArgument):
        cam.update_data_retention("DECREASE_DATA_RETENTION", 31)
    cam.tag({"b": "2"})
    cam.untag(["site"])
    assert cam.tags == {"b": "2"}
    with pytest.raises(tidelog.InvalidArgument, match="50"):
        cam.tag({f"k{i}": "v" for i in range(50)})
    store.create_video_stream("cam-2")
    assert [s.name for s in store.video_streams()] == ["cam-1", "cam-2"]
    assert [s.name for s in store.video_streams("cam-2")] == ["cam-2"]
    store.delete_video_stream("cam-2")
    with pytest.raises(tidelog.NotFound):
        store.video_stream("cam-2")
    with pytest.raises(tidelog.NotFound):
        store.delete_video_stream("cam-2")


def test_put_media_stores_each_cluster_byte_for_byte(
    store: tidelog.Store, mkv: bytes, tmp_path: Path
) -> None:
    cam = store.create_video_stream("cam", data_retention_hours=1)
    acks = list(cam.put_media(chunks(mkv, 3000)))  # pieces cut anywhere, mid-element too
    expected = clusters_of(mkv)
    assert len(expected) == 4
    kinds = [a.event_type for a in acks]
    assert kinds == ["BUFFERING", "RECEIVED", "PERSISTED"] * 4
    persisted = [a for a in acks if a.event_type == "PERSISTED"]
    assert [a.fragment_timecode for a in persisted] == [0, 1000, 2000, 3000]
    stored = list(cam.read_media())
    assert [s.fragment.number for s in stored] == [a.fragment_number for a in persisted]
    for item, cluster in zip(stored, expected, strict=True):
        assert item.media[item.fragment.header_size :] == cluster
        assert item.fragment.duration_ms == 1000
        # Each fragment is a playable file on its own.
        path = tmp_path / f"{item.fragment.offset}.mkv"
        path.write_bytes(item.media)
        assert probe(path)["frames"] == 25
    assert cam.fragment(stored[2].fragment.number).media == stored[2].media
    assert store.check() == []


def test_unknown_size_clusters_are_cut_and_sized(mkv: bytes) -> None:
    """KVS producers write clusters of unknown size; the cutter ends each at the next."""
    doc = SCHEMA.loads(mkv)
    segment = next(el for el in doc if el.name == "Segment")
    parts, position, bodies = [], 0, []
    for cluster in (c for c in segment if c.name == "Cluster"):
        parts.append(mkv[position : cluster.offset])
        parts.append(CLUSTER_ID.to_bytes(4, "big") + b"\x01" + b"\xff" * 7)  # unknown size
        position = cluster.payloadOffset
        bodies.append(mkv[cluster.payloadOffset : cluster.payloadOffset + cluster.size])
    unsized = b"".join(parts) + mkv[position:]
    cutter = MkvCutter(10**8)
    pieces = [p for chunk in chunks(unsized, 1000) for p in cutter.feed(chunk)] + cutter.finish()
    got = [p.data for p in pieces if hasattr(p, "timecode")]
    assert [g[12:] for g in got] == bodies  # the same children, now with an 8-byte size
    assert all(int.from_bytes(g[5:12], "big") == len(g) - 12 for g in got)


def test_bad_input_is_an_error_ack_and_keeps_what_was_acknowledged(
    store: tidelog.Store, mkv: bytes
) -> None:
    cam = store.create_video_stream("cam", data_retention_hours=1)
    acks = list(cam.put_media([b"\x00junk that is not EBML" * 4]))
    assert [(a.event_type, a.error_id) for a in acks] == [("ERROR", 4006)]
    assert cam.fragments() == []
    # Two whole fragments, then garbage where the third cluster starts.
    third = mkv.index(clusters_of(mkv)[2][:16])
    acks = list(cam.put_media([mkv[:third] + b"\x00" * 64]))
    assert [a.event_type for a in acks][-1] == "ERROR"
    assert sum(a.event_type == "PERSISTED" for a in acks) == 2
    assert len(cam.fragments()) == 2
    # A cut stream: the fragments before the cut stay.
    acks = list(cam.put_media([mkv[: third + 100]]))
    assert acks[-1].error_id == 4006 and len(cam.fragments()) == 4
    with pytest.raises(tidelog.InvalidArgument, match="RELATIVE"):
        cam.put_media([], timecode_type="RELATIVE")


def test_fragment_size_limit(mkv: bytes) -> None:
    cutter = MkvCutter(fragment_bytes_max=1000)
    with pytest.raises(FragmentTooLarge):
        for chunk in chunks(mkv, 4096):
            cutter.feed(chunk)
    with pytest.raises(MkvError):
        MkvCutter(10**6).feed(CLUSTER_ID.to_bytes(4, "big") + b"\x81\x00" + b"\x00" * 16)


def test_retention_zero_keeps_no_archive(store: tidelog.Store, mkv: bytes) -> None:
    cam = store.create_video_stream("live")
    acks = list(cam.put_media([mkv]))
    assert "PERSISTED" not in {a.event_type for a in acks}
    assert [a.event_type for a in acks] == ["BUFFERING", "RECEIVED"] * 4
    with pytest.raises(tidelog.NoDataRetention):
        cam.check_archive()


def test_selectors_and_time_ranges(store: tidelog.Store, mkv: bytes) -> None:
    cam = store.create_video_stream("cam", data_retention_hours=1)
    start = 1_700_000_000_000
    list(cam.put_media(chunks(mkv, 65536), timecode_type="RELATIVE",
                       producer_start_timestamp_ms=start))  # fmt: skip
    fragments = cam.fragments()
    assert [f.producer_timestamp_ms for f in fragments] == [start + i * 1000 for i in range(4)]
    assert cam.fragments(start + 1000, start + 2000, timestamp_type="PRODUCER") == fragments[1:3]
    assert cam.fragments(start + 1001, None, timestamp_type="PRODUCER") == fragments[2:]
    assert cam.fragments(limit=2) == fragments[:2]
    assert cam.fragments(after_offset=fragments[1].offset) == fragments[2:]
    server_ms = fragments[2].server_timestamp_ms
    by_server = cam.fragments(server_ms, None)
    assert by_server[0].offset <= 2 and by_server[-1] == fragments[-1]

    def first(selector: tidelog.StartSelector) -> list[int]:
        return [s.fragment.offset for s in cam.read_media(selector)]

    assert first(tidelog.StartSelector("EARLIEST")) == [0, 1, 2, 3]
    assert first(tidelog.StartSelector("NOW")) == []
    assert first(tidelog.StartSelector("PRODUCER_TIMESTAMP", timestamp_ms=start + 1500)) == [2, 3]
    number = fragments[1].number
    assert first(tidelog.StartSelector("FRAGMENT_NUMBER", fragment_number=number)) == [1, 2, 3]
    assert first(tidelog.StartSelector("CONTINUATION_TOKEN", continuation_token=number)) == [2, 3]
    with pytest.raises(tidelog.InvalidArgument):
        first(tidelog.StartSelector("FRAGMENT_NUMBER", fragment_number="12"))
    with pytest.raises(tidelog.NotFound):
        cam.fragment(fragments[-1].number[:-1] + "9")


def test_clip_and_images(store: tidelog.Store, mkv: bytes, tmp_path: Path) -> None:
    cam = store.create_video_stream("cam", data_retention_hours=1)
    start = 1_700_000_000_000
    list(cam.put_media([mkv], timecode_type="RELATIVE", producer_start_timestamp_ms=start))
    stored = list(cam.read_media())
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(video_media.remux_mp4(stored[1:3]))
    found = probe(clip)
    assert found["frames"] == 50 and found["codec"] == "h264"
    assert found["duration"] == pytest.approx(2.0, abs=0.1)
    images = video_media.images(stored, start, start + 3500, 500, image_format="PNG", width=160)
    assert [i.timestamp_ms for i in images] == [start + i * 500 for i in range(8)]
    for image in images:
        assert image.content is not None
        frame = next(av.open(io.BytesIO(image.content)).decode(video=0))
        assert (frame.width, frame.height) == (160, 120)
    late = video_media.images(stored, start + 3900, start + 6000, 1000)
    assert [i.error for i in late] == [None, "NO_MEDIA", "NO_MEDIA"]


def test_fragments_survive_reopen(tmp_path: Path, mkv: bytes) -> None:
    with tidelog.open(tmp_path / "d") as store:
        list(store.create_video_stream("cam", data_retention_hours=1).put_media([mkv]))
    with tidelog.open(tmp_path / "d") as store:
        cam = store.video_stream("cam")
        assert len(cam.fragments()) == 4
        assert [s.media[s.fragment.header_size :] for s in cam.read_media()] == clusters_of(mkv)
        assert store.check() == []
