"""Make tests/data/v1-store.tar.gz: a small store written by format 1 tidelog.

Run with a tidelog of format 1 installed (the last commit before format 2),
e.g. `git archive <that commit> | tar -x -C /tmp/v1 && pip install /tmp/v1`:

    python tests/data/make_v1_store.py tests/data/v1-store.tar.gz

The archive holds the store (`store/`, LMDB compacted) and `expected.json`:
every log's ends and records as format 1 tidelog read them back, so
tests/test_migrate.py can check that `tidelog migrate` kept every byte.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import tempfile

import lmdb

import tidelog
from tidelog.segments import format as fmt


def main(out: str) -> None:
    assert fmt.READ_VERSION == 1, "run this with a format 1 tidelog"
    work = tempfile.mkdtemp()
    data = os.path.join(work, "store")
    with tidelog.open(data, segment_bytes_max=4096) as store:
        log = store.create_log("events")
        for i in range(60):
            log.append(b"value %d " % i * 20, key=b"k%d" % (i % 3) if i % 2 else b"")
        log.append_many([b"a", b"b", b"c"], headers=[b"h1", b"", b"h3"], flags=3)
        log.append_many([b"timed"] * 4, timestamp_ms=2_000_000_000_000)
        log.trim_before(25)
        stream = store.create_stream("clicks", shards=2)
        stream.put_many([(b"click %d" % i, f"user-{i % 7}") for i in range(50)])
        queue = store.create_queue("jobs", visibility_timeout=3600)
        for i in range(5):
            queue.send(b"job %d" % i, attributes={"n": i})
        received = queue.receive(max_messages=2)
        queue.delete(received[0].receipt)
        expected = {}
        for info in store._logs.list_logs():
            ends = store._logs.ends(info)
            expected[info.name] = {
                "start": ends.start_offset,
                "next": ends.next_offset,
                "records": [
                    [r.offset, r.timestamp_ms, r.flags, r.key.hex(), r.headers.hex(), r.value.hex()]
                    for r in store._logs.read(info)
                ],
            }
    env_path = os.path.join(data, "index.lmdb")
    compact = os.path.join(work, "compact")
    os.mkdir(compact)
    env = lmdb.open(env_path, max_dbs=128, readonly=True, lock=False)
    env.copy(compact, compact=True)
    env.close()
    shutil.copy(os.path.join(compact, "data.mdb"), os.path.join(env_path, "data.mdb"))
    os.unlink(os.path.join(env_path, "lock.mdb"))
    with tarfile.open(out, "w:gz") as tar:
        tar.add(data, arcname="store")
        blob = json.dumps(expected, sort_keys=True).encode()
        item = tarfile.TarInfo("expected.json")
        item.size = len(blob)
        tar.addfile(item, io.BytesIO(blob))
    shutil.rmtree(work)


if __name__ == "__main__":
    main(sys.argv[1])
