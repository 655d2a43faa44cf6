"""Triggers through the library: real handlers in real worker processes (engine/triggers.py,
engine/trigger_runner.py), with AWS's event shapes and failure rules."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from trigger_harness import (
    KINESIS_FAILURE_SAMPLE,
    KINESIS_SAMPLE_RECORD,
    SNS_SAMPLE_RECORD,
    SQS_FIFO_ATTRIBUTES,
    SQS_SAMPLE_RECORD,
    in_order_at_least_once,
    lines,
    same_shape,
    wait_for,
    write_handler,
)

import tidelog


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[tidelog.Store, tidelog.Triggers, Path, Path]]:
    """A store, its triggers, the handler's code directory and its output file."""
    code = write_handler(tmp_path / "code")
    out = tmp_path / "out" / "seen.jsonl"
    out.parent.mkdir()
    with tidelog.open(tmp_path / "data", sync="never") as store:
        yield store, tidelog.Triggers(store), code, out
        assert store.check() == []


def drained(queue: tidelog.Queue) -> bool:
    counts = queue.approximate_counts()
    return counts.visible == counts.in_flight == counts.delayed == 0


def make(
    triggers: tidelog.Triggers, code: Path, out: Path, handler: str, name: str = "f", **options
) -> tidelog.Function:
    environment = {"OUT": str(out), **options.pop("environment", {})}
    return triggers.create_function(
        name, f"handlers.{handler}", code_dir=code, environment=environment, **options
    )


# -- event shapes -------------------------------------------------------------------------------


def test_sqs_event_has_aws_keys_and_types(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "record", environment={"GREETING": "hi"}, memory_size=256)
    queue = store.create_queue("jobs")
    triggers.create_trigger("f", queue)
    with tidelog.TriggerRunner(store):
        queue.send(b"hello", attributes={"color": "blue", "size": 3, "raw": b"\x00\x01"})
        got = wait_for(lambda: lines(out, "event"), what="the SQS event")
    event = got[0]["event"]
    assert list(event) == ["Records"]
    record = event["Records"][0]
    raw = record["messageAttributes"].pop("raw")  # Binary: binaryValue for stringValue
    assert raw == {
        "binaryValue": "AAE=",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Binary",
    }
    same_shape(record, SQS_SAMPLE_RECORD)
    assert record["body"] == "hello"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:000000000000:jobs"
    assert record["messageAttributes"]["size"]["dataType"] == "Number"
    assert record["messageAttributes"]["size"]["stringValue"] == "3"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    context = got[0]["context"]
    assert context["function_name"] == "f"
    assert context["memory_limit_in_mb"] == 256
    assert 0 < context["remaining_ms"] <= 3000
    assert context["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:f"
    assert got[0]["env"] == "hi"
    wait_for(lambda: drained(queue), what="the message deleted")


def test_fifo_event_attributes_and_order_per_group(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "partial")
    queue = store.create_queue("orders.fifo", fifo=True, visibility_timeout=3)
    triggers.create_trigger("f", queue, report_batch_item_failures=True)
    sent: dict[str, list[str]] = {}
    for index in range(30):
        group = f"g{index % 3}"
        body = f"bad-{index}" if index in (4, 13) else f"ok-{index}"
        queue.send(body.encode(), group_id=group, dedup_id=str(index))
        sent.setdefault(group, []).append(body)
    with tidelog.TriggerRunner(store):
        wait_for(lambda: drained(queue), what="all processed")
    seen = lines(out, "body")
    for group, bodies in sent.items():
        in_order_at_least_once([s["body"] for s in seen if s["group"] == group], bodies)
    # The failed messages came back (a second receive), and only after their lease.
    assert {s["body"] for s in seen if s["count"] == 2} >= {"bad-4", "bad-13"}


def test_fifo_record_attributes(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "record")
    queue = store.create_queue("one.fifo", fifo=True)
    triggers.create_trigger("f", queue)
    with tidelog.TriggerRunner(store):
        queue.send(b"x", group_id="g", dedup_id="d")
        got = wait_for(lambda: lines(out, "event"))
    record = got[0]["event"]["Records"][0]
    same_shape(record["attributes"], SQS_FIFO_ATTRIBUTES)
    assert record["attributes"]["MessageGroupId"] == "g"
    assert record["attributes"]["MessageDeduplicationId"] == "d"
    assert "md5OfMessageAttributes" not in record  # no attributes: AWS leaves it out


def test_kinesis_event_shape_and_order_per_shard(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "kinesis")
    stream = store.create_stream("clicks", shards=3)
    triggers.create_trigger("f", stream, starting_position="TRIM_HORIZON", batch_size=7)
    sent: dict[str, list[str]] = {}
    for index in range(60):
        result = stream.put(f"r{index}".encode(), partition_key=f"k{index % 11}")
        sent.setdefault(result.shard_id, []).append(f"r{index}")
    with tidelog.TriggerRunner(store):
        wait_for(lambda: sum(len(b["data"]) for b in lines(out, "batch")) >= 60)
    batches = lines(out, "batch")
    assert max(len(b["data"]) for b in batches) <= 7
    for shard, data in sent.items():
        got = [
            d for b in batches for d, s in zip(b["data"], b["shards"], strict=True) if s == shard
        ]
        in_order_at_least_once(got, data)


def test_kinesis_record_shape(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "record")
    stream = store.create_stream("s")
    stream.put(b"before the trigger", partition_key="k")
    triggers.create_trigger("f", stream, starting_position="LATEST")
    with tidelog.TriggerRunner(store):
        put = stream.put(b"Hello, this is a test.", partition_key="1")
        got = wait_for(lambda: lines(out, "event"))
    records = got[0]["event"]["Records"]
    assert len(records) == 1  # LATEST: the record put before the mapping is not delivered
    same_shape(records[0], KINESIS_SAMPLE_RECORD)
    assert records[0]["kinesis"]["data"] == "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg=="
    assert records[0]["kinesis"]["sequenceNumber"] == put.sequence_number
    assert records[0]["eventID"] == f"{put.shard_id}:{put.sequence_number}"


def test_sns_record_shape(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "record")
    topic = store.create_topic("news")
    trigger = triggers.create_trigger("f", topic, filter_policy={"kind": ["big"]})
    with tidelog.TriggerRunner(store):
        topic.publish(b"small one", attributes={"kind": "small"})
        topic.publish(b"Hello from SNS!", attributes={"kind": "big"}, subject="greeting")
        got = wait_for(lambda: lines(out, "event"))
        time.sleep(0.5)  # the filtered message would have come by now
    assert len(lines(out, "event")) == 1
    record = got[0]["event"]["Records"][0]
    same_shape(record, SNS_SAMPLE_RECORD)
    assert record["Sns"]["Message"] == "Hello from SNS!"
    assert record["Sns"]["Subject"] == "greeting"
    assert record["Sns"]["MessageAttributes"] == {"kind": {"Type": "String", "Value": "big"}}
    assert record["EventSubscriptionArn"].endswith(trigger.subscription or "?")


# -- queue failure rules ------------------------------------------------------------------------


def test_partial_batch_failure_keeps_only_the_failed(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "partial", timeout=1)
    queue = store.create_queue("jobs", visibility_timeout=1)
    triggers.create_trigger("f", queue, report_batch_item_failures=True, maximum_concurrency=2)
    queue.send_many([b"ok-1", b"bad-2", b"ok-3", b"bad-4", b"ok-5"])
    with tidelog.TriggerRunner(store):
        wait_for(lambda: drained(queue), what="all deleted")
    seen = lines(out, "body")
    counts: dict[str, int] = {}
    for s in seen:
        counts[s["body"]] = max(counts.get(s["body"], 0), s["count"])
    assert counts["bad-2"] == 2 and counts["bad-4"] == 2  # failed once, came back
    assert counts["ok-1"] == counts["ok-3"] == counts["ok-5"] == 1  # deleted the first time


def test_invalid_partial_response_fails_the_whole_batch(env) -> None:
    store, triggers, code, out = env
    # A response naming an id that is not in the batch: the whole batch is a failure.
    (code / "oddball.py").write_text(
        "def handler(event, context):\n"
        "    import os, json\n"
        "    with open(os.environ['OUT'], 'a') as f:\n"
        "        for r in event['Records']:\n"
        "            f.write(json.dumps({'kind': 'body', 'body': r['body']}) + '\\n')\n"
        "    return {'batchItemFailures': [{'itemIdentifier': 'not-an-id'}]}\n"
    )
    triggers.create_function(
        "f", "oddball.handler", code_dir=code, environment={"OUT": str(out)}, timeout=1
    )
    queue = store.create_queue("jobs", visibility_timeout=1)
    triggers.create_trigger("f", queue, report_batch_item_failures=True)
    queue.send(b"one")
    with tidelog.TriggerRunner(store):
        wait_for(lambda: len(lines(out, "body")) >= 2, what="a redelivery")
    assert queue.approximate_counts().visible + queue.approximate_counts().in_flight == 1


def test_failed_messages_reach_the_dead_letter_queue(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "always_fail", timeout=1)
    store.create_queue("jobs-dlq")
    queue = store.create_queue("jobs", visibility_timeout=1, dead_letter=("jobs-dlq", 2))
    trigger = triggers.create_trigger("f", queue)
    queue.send(b"doomed")
    with tidelog.TriggerRunner(store) as runner:
        dlq = store.queue("jobs-dlq")
        wait_for(lambda: dlq.approximate_counts().visible == 1, what="the DLQ")
        stats = runner.stats()[trigger.uuid]
    assert sorted(s["count"] for s in lines(out, "body")) == [1, 2]  # maxReceiveCount 2
    assert dlq.receive()[0].body == b"doomed"
    assert stats.errors >= 2 and "this handler always fails" in (stats.last_error or "")


def test_filter_criteria_on_queue_deletes_what_does_not_match(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "bodies")
    queue = store.create_queue("jobs")
    pattern = {"body": {"kind": ["video"], "size": [{"numeric": [">", 10]}]}}
    triggers.create_trigger(
        "f", queue, filter_criteria={"Filters": [{"Pattern": json.dumps(pattern)}]}
    )
    queue.send_many(
        [
            json.dumps({"kind": "video", "size": 50}).encode(),
            json.dumps({"kind": "video", "size": 5}).encode(),
            json.dumps({"kind": "audio", "size": 50}).encode(),
            b"not json",
        ]
    )
    with tidelog.TriggerRunner(store):
        wait_for(lambda: drained(queue), what="all deleted")
    assert [json.loads(s["body"]) for s in lines(out, "body")] == [{"kind": "video", "size": 50}]


def test_batching_window_gathers_a_larger_batch(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "record")
    queue = store.create_queue("jobs")
    triggers.create_trigger("f", queue, batch_size=25, batching_window=2, maximum_concurrency=2)
    with tidelog.TriggerRunner(store):
        for index in range(25):
            queue.send(f"m{index}".encode())
        wait_for(lambda: sum(len(e["event"]["Records"]) for e in lines(out, "event")) >= 25)
    sizes = [len(e["event"]["Records"]) for e in lines(out, "event")]
    assert max(sizes) > 10  # more than one receive's worth in one invocation


# -- isolation ----------------------------------------------------------------------------------


def test_crash_hang_exit_and_memory_are_isolated_and_retried(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "misbehave", timeout=2, memory_size=128)
    queue = store.create_queue("jobs", visibility_timeout=2)
    trigger = triggers.create_trigger("f", queue, batch_size=1)
    bodies = ["crash", "hang", "exit", "memory", "fine"]
    with tidelog.TriggerRunner(store) as runner:
        for body in bodies:
            queue.send(body.encode())
        wait_for(
            lambda: {s["body"] for s in lines(out, "body")} == set(bodies),
            timeout=90,
            what="every message handled after its misbehaviour",
        )
        wait_for(lambda: drained(queue))
        # A redelivery may finish before the hung invocation is timed out: wait for it.
        wait_for(lambda: runner.stats()[trigger.uuid].errors >= 4, what="four failures")
    assert {m["body"] for m in lines(out, "misbehaving")} == {"crash", "hang", "exit", "memory"}
    assert not lines(out, "allocated")  # the 8 GiB never came: MemoryError under the limit
    log = Path(triggers.log_path("f")).read_text()
    assert "Task timed out after 2.00 seconds" in log
    assert "Runtime exited with error: exit status 3" in log
    assert "Runtime exited with error: signal: sigsegv" in log
    assert "MemoryError" in log


def test_invoke_reports_errors_in_lambdas_words(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "always_fail")
    result = triggers.invoke(
        "f", {"Records": [{"body": "x", "attributes": {"ApproximateReceiveCount": "1"}}]}
    )
    assert not result.ok
    assert result.function_error == "Unhandled"
    assert result.error is not None
    assert result.error["errorType"] == "RuntimeError"
    assert result.error["errorMessage"] == "this handler always fails"
    assert any("always_fail" in line for line in result.error["stackTrace"])
    # The same worker answers the next call: a raised exception does not end it.
    make(triggers, code, out, "record", name="g")
    first = triggers.invoke("g", {"n": 1})
    assert first.ok and first.result == {"records": 0}


def test_import_error_is_reported_on_invoke(env) -> None:
    store, triggers, code, out = env
    triggers.create_function("f", "no_such_module.handler", code_dir=code)
    result = triggers.invoke("f", {})
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module" in result.error["errorMessage"]


def test_handler_on_pythonpath_in_module_mode(tmp_path: Path, monkeypatch) -> None:
    code = write_handler(tmp_path / "elsewhere", module="user_handlers")
    out = tmp_path / "seen.jsonl"
    monkeypatch.setenv("PYTHONPATH", str(code))
    with tidelog.open(tmp_path / "data", sync="never") as store:
        triggers = tidelog.Triggers(store)
        triggers.create_function("f", "user_handlers:record", environment={"OUT": str(out)})
        assert triggers.function("f").code == "module"
        assert triggers.invoke("f", {"hello": 1}).ok
    assert lines(out, "event")[0]["event"] == {"hello": 1}


def test_hot_reload_of_a_directory_function(env) -> None:
    store, triggers, code, out = env
    (code / "reloading.py").write_text("def handler(event, context):\n    return 'one'\n")
    triggers.create_function("f", "reloading.handler", code_dir=code)
    assert triggers.invoke("f", {}).result == "one"
    time.sleep(0.01)
    (code / "reloading.py").write_text("def handler(event, context):\n    return 'two'\n")
    wait_for(lambda: triggers.invoke("f", {}).result == "two", what="the new code")


# -- streams: failure rules ---------------------------------------------------------------------


def test_bisect_isolates_the_bad_record_and_sends_its_failure_record(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "kinesis")
    stream = store.create_stream("s")
    failures = store.create_queue("failures")
    triggers.create_trigger(
        "f",
        stream,
        starting_position="TRIM_HORIZON",
        batch_size=8,
        bisect_on_error=True,
        maximum_retry_attempts=1,
        on_failure=("queue", "failures"),
    )
    data = [f"r{i}" for i in range(8)]
    data[5] = "bad"
    puts = [stream.put(d.encode(), partition_key="k") for d in data]
    with tidelog.TriggerRunner(store):
        got = wait_for(lambda: failures.receive(wait=1), what="the failure record")
    document = json.loads(got[0].body)
    same_shape(document, KINESIS_FAILURE_SAMPLE)
    info = document["KinesisBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == puts[5].sequence_number
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["responseContext"]["functionError"] == "Unhandled"
    batches = [b["data"] for b in lines(out, "batch")]
    assert batches[0] == data  # the whole batch first, then halves
    good = {d for b in batches if "bad" not in b for d in b}
    assert good == set(data) - {"bad"}
    lag = stream.consumer(triggers.triggers()[0].consumer).lag(ages=False)
    assert sum(s.records_behind for s in lag) == 0  # checkpointed past the discarded record


def test_retries_exhausted_without_bisect_discards_the_batch_to_a_topic(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "kinesis")
    stream = store.create_stream("s")
    topic = store.create_topic("failures")
    sink = store.create_queue("failure-sink")
    topic.subscribe(sink, raw=True)
    triggers.create_trigger(
        "f",
        stream,
        starting_position="TRIM_HORIZON",
        maximum_retry_attempts=2,
        on_failure=("topic", "failures"),
    )
    stream.put_many([(b"a", "k"), (b"bad", "k"), (b"c", "k")])
    with tidelog.TriggerRunner(store):
        got = wait_for(lambda: sink.receive(wait=1), what="the failure record")
        stream.put(b"after", partition_key="k")
        wait_for(lambda: any(b["data"] == ["after"] for b in lines(out, "batch")))
    document = json.loads(got[0].body)
    assert document["KinesisBatchInfo"]["batchSize"] == 3
    assert document["requestContext"]["approximateInvokeCount"] == 3
    assert [b["data"] for b in lines(out, "batch")].count(["a", "bad", "c"]) == 3  # 1 + 2 retries


def test_kinesis_partial_batch_response_retries_from_the_failed_record(env) -> None:
    store, triggers, code, out = env
    (code / "kpartial.py").write_text(
        "import base64, json, os\n"
        "def handler(event, context):\n"
        "    data = [base64.b64decode(r['kinesis']['data']).decode() for r in event['Records']]\n"
        "    with open(os.environ['OUT'], 'a') as f:\n"
        "        f.write(json.dumps({'kind': 'batch', 'data': data}) + '\\n')\n"
        "    marker = os.path.join(os.path.dirname(os.environ['OUT']), 'failed-once')\n"
        "    for r, d in zip(event['Records'], data):\n"
        "        if d == 'c' and not os.path.exists(marker):\n"
        "            open(marker, 'w').close()\n"
        "            return {'batchItemFailures': [\n"
        "                {'itemIdentifier': r['kinesis']['sequenceNumber']}]}\n"
    )
    triggers.create_function("f", "kpartial.handler", code_dir=code, environment={"OUT": str(out)})
    stream = store.create_stream("s")
    triggers.create_trigger(
        "f", stream, starting_position="TRIM_HORIZON", report_batch_item_failures=True
    )
    stream.put_many([(d.encode(), "k") for d in "abcde"])
    with tidelog.TriggerRunner(store):
        wait_for(lambda: len(lines(out, "batch")) >= 2)
    assert [b["data"] for b in lines(out, "batch")][:2] == [list("abcde"), list("cde")]


def test_parallelization_factor_keeps_order_per_partition_key(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "kinesis", environment={"PAUSE": "0.05"})
    stream = store.create_stream("s")
    triggers.create_trigger(
        "f", stream, starting_position="TRIM_HORIZON", parallelization_factor=4, batch_size=40
    )
    sent: dict[str, list[str]] = {}
    entries = []
    for index in range(80):
        key = f"key{index % 8}"
        entries.append((f"{key}-{index}".encode(), key))
        sent.setdefault(key, []).append(f"{key}-{index}")
    stream.put_many(entries[:40])
    stream.put_many(entries[40:])
    with tidelog.TriggerRunner(store):
        wait_for(lambda: sum(len(b["data"]) for b in lines(out, "batch")) >= 80)
    batches = lines(out, "batch")
    for key, data in sent.items():
        got = [d for b in batches for d, k in zip(b["data"], b["keys"], strict=True) if k == key]
        in_order_at_least_once(got, data)
    assert len({b["pid"] for b in batches}) > 1  # parts ran in several workers at once


def test_at_timestamp_starts_at_the_first_record_after_it(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "kinesis")
    stream = store.create_stream("s")
    stream.put(b"old", partition_key="k")
    time.sleep(0.05)
    moment = time.time()
    time.sleep(0.05)
    stream.put(b"new", partition_key="k")
    triggers.create_trigger(
        "f", stream, starting_position="AT_TIMESTAMP", starting_position_timestamp=moment
    )
    with tidelog.TriggerRunner(store):
        wait_for(lambda: lines(out, "batch"))
    assert lines(out, "batch")[0]["data"] == ["new"]


# -- durability and definitions -----------------------------------------------------------------


def test_definitions_and_positions_survive_a_reopen(tmp_path: Path) -> None:
    code = write_handler(tmp_path / "code")
    out = tmp_path / "out" / "seen.jsonl"
    out.parent.mkdir()
    with tidelog.open(tmp_path / "data") as store:
        triggers = tidelog.Triggers(store)
        make(triggers, code, out, "kinesis")
        stream = store.create_stream("s")
        uuid = triggers.create_trigger("f", stream, starting_position="TRIM_HORIZON").uuid
        stream.put(b"first", partition_key="k")
        with tidelog.TriggerRunner(store):
            wait_for(lambda: lines(out, "batch"))
    with tidelog.open(tmp_path / "data") as store:
        triggers = tidelog.Triggers(store)
        assert triggers.trigger(uuid).source == "s"
        assert triggers.function("f").handler == "handlers.kinesis"
        store.stream("s").put(b"second", partition_key="k")
        with tidelog.TriggerRunner(store):
            wait_for(lambda: len(lines(out, "batch")) >= 2)
    assert [b["data"] for b in lines(out, "batch")] == [["first"], ["second"]]


def test_update_and_delete_are_picked_up_by_a_running_runner(env) -> None:
    store, triggers, code, out = env
    make(triggers, code, out, "bodies")
    queue = store.create_queue("jobs")
    trigger = triggers.create_trigger("f", queue, enabled=False)
    with tidelog.TriggerRunner(store) as runner:
        queue.send(b"waits")
        time.sleep(1.0)  # a disabled mapping must not take it in this time
        assert queue.approximate_counts().visible == 1
        triggers.update_trigger(trigger.uuid, enabled=True)
        wait_for(lambda: lines(out, "body"), what="the enabled mapping")
        triggers.delete_trigger(trigger.uuid)
        wait_for(lambda: trigger.uuid not in runner.stats(), what="the mapping stopped")
        queue.send(b"stays")
        time.sleep(1.0)
        assert queue.approximate_counts().visible == 1
    with pytest.raises(tidelog.NotFound):
        triggers.trigger(trigger.uuid)


def test_async_invocations_retry_then_dead_letter(env) -> None:
    store, triggers, code, out = env
    store.create_queue("fn-dlq")
    make(triggers, code, out, "always_fail", dead_letter="fn-dlq")
    triggers.invoke_async(
        "f", {"Records": [{"body": "async", "attributes": {"ApproximateReceiveCount": "1"}}]}
    )
    with tidelog.TriggerRunner(store, async_retry_seconds=(0, 0)):
        dlq = store.queue("fn-dlq")
        got = wait_for(lambda: dlq.receive(wait=1), what="the dead letter")
    assert len(lines(out, "body")) == 3  # the first attempt and Lambda's two retries
    assert json.loads(got[0].body)["Records"][0]["body"] == "async"
    assert got[0].attributes["ErrorMessage"] == "this handler always fails"


# -- bad input ----------------------------------------------------------------------------------


def test_bad_definitions_are_refused_clearly(env) -> None:
    store, triggers, code, out = env
    queue = store.create_queue("jobs", visibility_timeout=10)
    stream = store.create_stream("s")
    with pytest.raises(tidelog.InvalidArgument, match="1-64 characters"):
        triggers.create_function("bad name", "a.b")
    with pytest.raises(tidelog.InvalidArgument, match="module.function"):
        triggers.create_function("f", "nodots")
    with pytest.raises(tidelog.InvalidArgument, match="timeout"):
        triggers.create_function("f", "a.b", timeout=901)
    with pytest.raises(tidelog.InvalidArgument, match="unzip"):
        triggers.create_function("f", "a.b", zip_file=b"not a zip")
    make(triggers, code, out, "record", timeout=30)
    with pytest.raises(tidelog.AlreadyExists):
        make(triggers, code, out, "record")
    with pytest.raises(tidelog.InvalidArgument, match="less than Function timeout"):
        triggers.create_trigger("f", queue)
    triggers.update_function_configuration("f", timeout=5)
    with pytest.raises(tidelog.InvalidArgument, match="greater than 0"):
        triggers.create_trigger("f", queue, batch_size=50)
    with pytest.raises(tidelog.InvalidArgument, match="StartingPosition"):
        triggers.create_trigger("f", stream)
    with pytest.raises(tidelog.InvalidArgument, match="stream sources only"):
        triggers.create_trigger("f", queue, bisect_on_error=True)
    with pytest.raises(tidelog.InvalidArgument, match="filter pattern"):
        triggers.create_trigger(
            "f", queue, filter_criteria={"Filters": [{"Pattern": '{"body": "not a list"}'}]}
        )
    with pytest.raises(tidelog.InvalidArgument, match="maximum_record_age"):
        triggers.create_trigger("f", stream, starting_position="LATEST", maximum_record_age=5)
    fifo = store.create_queue("jobs.fifo", fifo=True)
    with pytest.raises(tidelog.InvalidArgument, match="not supported for FIFO"):
        triggers.create_trigger("f", fifo, batch_size=10, batching_window=5)
    fifo_trigger = triggers.create_trigger("f", fifo)
    with pytest.raises(tidelog.InvalidArgument, match="not supported for FIFO"):
        triggers.update_trigger(fifo_trigger.uuid, batching_window=1)
    triggers.delete_trigger(fifo_trigger.uuid)
    with pytest.raises(tidelog.NotFound):
        triggers.create_trigger("nope", queue)
    with pytest.raises(tidelog.NotFound):
        triggers.create_trigger("f", ("queue", "missing"))
    assert triggers.triggers() == []  # nothing half-made


def test_zip_function_unpacks_and_runs(env) -> None:
    import io
    import zipfile

    store, triggers, code, out = env
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pkg/__init__.py", "")
        archive.writestr("pkg/mod.py", "def go(event, context):\n    return event['x'] * 2\n")
    function = triggers.create_function("z", "pkg.mod:go", zip_file=buffer.getvalue())
    assert function.code == "zip" and function.code_size == len(buffer.getvalue())
    assert function.code_dir is not None and os.path.isfile(
        os.path.join(function.code_dir, "pkg", "mod.py")
    )
    assert triggers.invoke("z", {"x": 21}).result == 42
    triggers.delete_function("z")
    assert not os.path.exists(function.code_dir)


def test_a_configured_interpreter_without_tidelog_runs_the_handler(env, tmp_path: Path) -> None:
    import subprocess
    import sys

    store, triggers, code, out = env
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True
    )
    python = str(tmp_path / "venv" / "bin" / "python")
    (code / "which.py").write_text(
        "import sys\n"
        "def handler(event, context):\n"
        "    try:\n"
        "        import tidelog  # noqa: F401\n"
        "        has = True\n"
        "    except ImportError:\n"
        "        has = False\n"
        "    return {'python': sys.executable, 'tidelog': has}\n"
    )
    triggers.create_function("f", "which.handler", code_dir=code, python=python)
    result = triggers.invoke("f", {})
    assert result.ok, result.error
    assert result.result == {"python": python, "tidelog": False}
    with pytest.raises(tidelog.InvalidArgument, match="interpreter"):
        triggers.create_function("g", "which.handler", python=str(tmp_path / "no-python"))


def test_run_triggers_command_processes_what_another_process_sends(env, tmp_path: Path) -> None:
    import subprocess
    import sys

    store, triggers, code, out = env
    make(triggers, code, out, "bodies")
    queue = store.create_queue("jobs")
    triggers.create_trigger("f", queue)
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidelog.cli.main",
            "run-triggers",
            "--data",
            str(store.path),
            "--duration",
            "60",
            "--silent",
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for index in range(20):
            queue.send(f"m{index}".encode())
        wait_for(lambda: len({s["body"] for s in lines(out, "body")}) == 20, what="all 20")
        wait_for(lambda: drained(queue), what="all deleted")
    finally:
        runner.terminate()  # SIGTERM: a graceful stop that prints the totals
        stdout, _ = runner.communicate(timeout=60)
    [row] = json.loads(stdout)["triggers"]
    assert row["records"] == 20 and row["errors"] == 0


def test_records_past_maximum_record_age_go_to_the_destination(tmp_path: Path) -> None:
    # The store's clock runs two minutes behind this machine's, so every record it
    # stamps is already 120 s old when the trigger (by the machine's clock) sees it.
    code = write_handler(tmp_path / "code")
    out = tmp_path / "out" / "seen.jsonl"
    out.parent.mkdir()
    with tidelog.open(tmp_path / "data", sync="never", clock=lambda: time.time() - 120) as store:
        triggers = tidelog.Triggers(store)
        make(triggers, code, out, "kinesis")
        stream = store.create_stream("s")
        failures = store.create_queue("failures")
        triggers.create_trigger(
            "f",
            stream,
            starting_position="TRIM_HORIZON",
            maximum_record_age=60,
            on_failure=("queue", "failures"),
        )
        stream.put_many([(b"old-1", "k"), (b"old-2", "k")])
        with tidelog.TriggerRunner(store):
            got = wait_for(lambda: failures.receive(wait=1), what="the failure record")
        document = json.loads(got[0].body)
        assert document["requestContext"]["condition"] == "RecordAgeExceeded"
        assert document["KinesisBatchInfo"]["batchSize"] == 2
        assert "functionError" not in document["responseContext"]  # never invoked
        assert lines(out, "batch") == []
