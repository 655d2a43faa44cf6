from __future__ import annotations

from pathlib import Path

import pytest

import tidelog


def test_append_read_reopen(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d") as store:
        log = store.create_log("events")
        assert log.append(b"hello", key=b"k") == 0
        assert log.append_many([b"a", b"b"]) == range(1, 3)
    with tidelog.open(tmp_path / "d") as store:
        log = store.log("events")
        records = list(log.read())
        assert [r.value for r in records] == [b"hello", b"a", b"b"]
        assert records[0].key == b"k"
        assert store.recovery_report is not None and store.recovery_report.clean
        assert store.check() == []


def test_errors_derive_from_root(store: tidelog.Store) -> None:
    store.create_log("x")
    with pytest.raises(tidelog.AlreadyExists):
        store.create_log("x")
    with pytest.raises(tidelog.NotFound):
        store.log("nope")
    assert issubclass(tidelog.Corruption, tidelog.Error)


def test_every_engine_database_is_opened_at_store_open() -> None:
    # LMDB handles cannot be created inside a commit, so each model's
    # databases must be in the list the Store opens up front.
    from tidelog import catalog, queues, streams, topics

    wanted = {*queues.QUEUE_DATABASES, *topics.TOPIC_DATABASES, streams.CHECKPOINTS_DB}
    assert wanted <= set(catalog.ENGINE_DATABASES)
