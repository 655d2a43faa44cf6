"""Triggers over the wire: boto3's lambda client against `tidelog serve` (a child
process) deploys a zipped handler and maps SQS, FIFO, Kinesis and SNS to it; a
SIGKILL of the server mid-batch loses nothing and keeps per-group and per-shard order."""

from __future__ import annotations

import base64
import http.client
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from server_harness import client, free_port, start_serve
from trigger_harness import (
    HANDLER_SOURCE,
    KINESIS_SAMPLE_RECORD,
    SNS_SAMPLE_RECORD,
    SQS_FIFO_ATTRIBUTES,
    SQS_SAMPLE_RECORD,
    in_order_at_least_once,
    lines,
    same_shape,
    wait_for,
)

ROLE = "arn:aws:iam::000000000000:role/lambda-role"


def handler_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handlers.py", HANDLER_SOURCE)
    return buffer.getvalue()


class Serve:
    """`tidelog serve` on a free port over `data`, restartable (same port)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = start_serve(data, self.port, "--no-stomp")

    def restart(self) -> None:
        self.process = start_serve(self.data, self.port, "--no-stomp")

    def kill(self) -> None:
        self.process.kill()  # SIGKILL
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.communicate(timeout=30)
            except Exception:
                self.process.kill()
                self.process.communicate()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


def create_function(lam: Any, out: Path, handler: str, **extra: Any) -> dict[str, Any]:
    environment = {"OUT": str(out), **extra.pop("environment", {})}
    result: dict[str, Any] = lam.create_function(
        FunctionName=extra.pop("name", "f"),
        Runtime="python3.12",
        Role=ROLE,
        Handler=f"handlers.{handler}",
        Code={"ZipFile": handler_zip()},
        Environment={"Variables": environment},
        **extra,
    )
    return result


def test_boto3_deploys_a_zip_and_maps_every_source(serve: Serve, tmp_path: Path) -> None:
    out = tmp_path / "out" / "seen.jsonl"
    out.parent.mkdir()
    lam, sqs, kinesis, sns = (client(s, serve.url) for s in ("lambda", "sqs", "kinesis", "sns"))
    function = create_function(lam, out, "record", Timeout=5, MemorySize=256)
    assert function["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:f"
    assert function["Handler"] == "handlers.record" and function["CodeSize"] > 0
    assert (
        lam.get_function(FunctionName="f")["Configuration"]["CodeSha256"]
        == (function["CodeSha256"])
    )

    queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    fifo = sqs.create_queue(
        QueueName="jobs.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "10"}
    )["QueueUrl"]
    arn = {
        url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for url in (queue, fifo)
    }
    kinesis.create_stream(StreamName="clicks", ShardCount=2)
    stream_arn = kinesis.describe_stream(StreamName="clicks")["StreamDescription"]["StreamARN"]
    topic = sns.create_topic(Name="news")["TopicArn"]

    mappings = [
        lam.create_event_source_mapping(EventSourceArn=arn[queue], FunctionName="f"),
        lam.create_event_source_mapping(EventSourceArn=arn[fifo], FunctionName="f", BatchSize=3),
        lam.create_event_source_mapping(
            EventSourceArn=stream_arn, FunctionName="f", StartingPosition="TRIM_HORIZON"
        ),
    ]
    assert [m["State"] for m in mappings] == ["Creating"] * 3
    assert mappings[2]["StartingPosition"] == "TRIM_HORIZON"
    subscription = sns.subscribe(
        TopicArn=topic, Protocol="lambda", Endpoint=function["FunctionArn"]
    )
    listed = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in listed] == [("lambda", function["FunctionArn"])]
    every = lam.list_event_source_mappings(FunctionName="f")["EventSourceMappings"]
    assert {m["UUID"] for m in every} == {m["UUID"] for m in mappings}
    assert {m["State"] for m in every} == {"Enabled"}

    sqs.send_message(
        QueueUrl=queue,
        MessageBody="standard",
        MessageAttributes={"color": {"DataType": "String", "StringValue": "blue"}},
    )
    for index in range(6):
        sqs.send_message(
            QueueUrl=fifo,
            MessageBody=f"fifo-{index}",
            MessageGroupId=f"g{index % 2}",
            MessageDeduplicationId=str(index),
        )
    for index in range(10):
        kinesis.put_record(StreamName="clicks", Data=f"k{index}".encode(), PartitionKey=f"p{index}")
    sns.publish(
        TopicArn=topic,
        Message="Hello from SNS!",
        MessageAttributes={"Test": {"DataType": "String", "StringValue": "TestString"}},
    )

    def records() -> list[dict[str, Any]]:
        return [r for e in lines(out, "event") for r in e["event"].get("Records", [])]

    def by_source() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for record in records():
            key = record.get("eventSourceARN") or record.get("EventSource")
            found.setdefault(key, []).append(record)
        return found

    def complete() -> bool:
        found = by_source()
        return (
            len(found.get(arn[queue], [])) >= 1
            and len({r["body"] for r in found.get(arn[fifo], [])}) == 6
            and len({r["kinesis"]["data"] for r in found.get(stream_arn, [])}) == 10
            and len(found.get("aws:sns", [])) >= 1
        )

    wait_for(complete, what="every source's records")
    found = by_source()
    same_shape(found[arn[queue]][0], SQS_SAMPLE_RECORD)
    for record in found[arn[fifo]]:
        same_shape(record["attributes"], SQS_FIFO_ATTRIBUTES)
    for group in ("g0", "g1"):
        bodies = [r["body"] for r in found[arn[fifo]] if r["attributes"]["MessageGroupId"] == group]
        in_order_at_least_once(bodies, [f"fifo-{i}" for i in range(6) if f"g{i % 2}" == group])
    for record in found[stream_arn]:
        same_shape(record, KINESIS_SAMPLE_RECORD)
    shards: dict[str, list[str]] = {}
    for record in found[stream_arn]:
        shard = record["eventID"].split(":")[0]
        shards.setdefault(shard, []).append(record["kinesis"]["sequenceNumber"])
    for sequence in shards.values():
        assert sequence == sorted(sequence, key=int)  # per shard, in order
    sns_record = found["aws:sns"][0]
    same_shape(sns_record, SNS_SAMPLE_RECORD)
    assert sns_record["Sns"]["TopicArn"] == topic
    assert sns_record["EventSubscriptionArn"] == subscription["SubscriptionArn"]
    assert sns_record["Sns"]["MessageAttributes"] == {
        "Test": {"Type": "String", "Value": "TestString"}
    }

    # The console and `tidelog info` show each trigger's counters (written each second).
    def console_rows() -> list[dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=30)
        connection.request("GET", "/console/api/overview")
        rows: list[dict[str, Any]] = json.loads(connection.getresponse().read())["triggers"]
        connection.close()
        return rows

    rows = wait_for(
        lambda: [r for r in console_rows() if r["invocations"] >= 1 and r["records"] >= 1],
        what="counters in the console",
    )
    assert {r["function"] for r in rows} == {"f"}
    assert all(r["state"] == "Enabled" and r["errors"] == 0 for r in rows)
    assert {r["source"] for r in console_rows()} == {
        "queue:jobs",
        "queue:jobs.fifo",
        "stream:clicks",
        "topic:news",
    }

    def metrics() -> str:
        connection = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=30)
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
        connection.close()
        return text

    uuid_label = f'function="f",source="stream:clicks",trigger="{mappings[2]["UUID"]}"'
    # The handler logs a batch before it returns; the checkpoint that ends the
    # lag is committed after, so the gauge reaches 0 a moment later.
    lag_zero = f"tidelog_trigger_lag{{{uuid_label}}} 0.0"

    def lag_is_zero() -> str | None:
        text = metrics()
        return text if lag_zero in text else None

    text = wait_for(lag_is_zero, what="the stream trigger's lag at 0")
    assert f"tidelog_trigger_enabled{{{uuid_label}}} 1.0" in text
    assert "tidelog_trigger_invocations_total{" in text
    info = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidelog.cli.main",
            "info",
            f"trigger:{mappings[2]['UUID']}",
            "--data",
            str(serve.data),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    progress = json.loads(info.stdout)["progress"]
    assert progress["source"] == "stream:clicks" and progress["lag"] == 0
    assert progress["invocations"] >= 1 and progress["last_processing_result"] == "OK"

    # Update, disable and delete, as Lambda's API does them.
    uuid = mappings[0]["UUID"]
    updated = lam.update_event_source_mapping(UUID=uuid, BatchSize=7, Enabled=False)
    assert updated["BatchSize"] == 7
    assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Disabled"
    assert lam.delete_event_source_mapping(UUID=uuid)["State"] == "Deleting"
    with pytest.raises(ClientError) as caught:
        lam.get_event_source_mapping(UUID=uuid)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_invoke_types_errors_and_log_tail(serve: Serve, tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    lam = client("lambda", serve.url)
    create_function(lam, out, "record")
    result = lam.invoke(FunctionName="f", Payload=b'{"hello": 1}', LogType="Tail")
    assert result["StatusCode"] == 200
    assert json.loads(result["Payload"].read()) == {"records": 0}
    tail = base64.b64decode(result["LogResult"]).decode()
    assert "START RequestId:" in tail and "REPORT RequestId:" in tail
    assert result["ExecutedVersion"] == "$LATEST"
    assert lam.invoke(FunctionName="f", InvocationType="DryRun")["StatusCode"] == 204
    assert (
        lam.invoke(FunctionName="f", InvocationType="Event", Payload=b'{"later": 1}')["StatusCode"]
        == 202
    )
    wait_for(lambda: any(e["event"] == {"later": 1} for e in lines(out, "event")))

    create_function(lam, out, "always_fail", name="g")
    failed = lam.invoke(FunctionName="g", Payload=b'{"Records": []}')
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorType"] == "RuntimeError"
    assert error["errorMessage"] == "this handler always fails"

    lam.update_function_configuration(FunctionName="g", Handler="handlers.record", Timeout=9)
    assert lam.get_function_configuration(FunctionName="g")["Timeout"] == 9
    assert lam.invoke(FunctionName="g", Payload=b"{}")["StatusCode"] == 200
    assert "FunctionError" not in lam.invoke(FunctionName="g", Payload=b"{}")
    assert {f["FunctionName"] for f in lam.list_functions()["Functions"]} == {"f", "g"}
    lam.delete_function(FunctionName="g")
    for call, code in (
        (lambda: lam.get_function(FunctionName="g"), "ResourceNotFoundException"),
        (lambda: create_function(lam, out, "record"), "ResourceConflictException"),
        (
            lambda: lam.invoke(FunctionName="f", Payload=b"{not json"),
            "InvalidRequestContentException",
        ),
        (
            lambda: lam.create_function(
                FunctionName="z",
                Runtime="python3.12",
                Role=ROLE,
                Handler="a.b",
                Code={"ZipFile": b"not a zip"},
            ),
            "InvalidParameterValueException",
        ),
        (
            lambda: lam.create_event_source_mapping(
                EventSourceArn="arn:aws:sqs:us-east-1:000000000000:missing", FunctionName="f"
            ),
            "ResourceNotFoundException",
        ),
        (
            lambda: lam.create_event_source_mapping(
                EventSourceArn="arn:aws:sns:us-east-1:000000000000:news", FunctionName="f"
            ),
            "InvalidParameterValueException",
        ),
        (
            lambda: lam.create_event_source_mapping(
                EventSourceArn="arn:aws:sqs:us-east-1:000000000000:missing",
                FunctionName="f",
                TumblingWindowInSeconds=60,
            ),
            "InvalidParameterValueException",
        ),
        (
            lambda: create_function(
                lam, out, "record", name="layered", Layers=["arn:aws:lambda:x:1:layer:l:1"]
            ),
            "InvalidParameterValueException",
        ),
        (lambda: lam.invoke(FunctionName="f", Qualifier="7"), "ResourceNotFoundException"),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == code


def test_malformed_requests_get_lambdas_error_shape(serve: Serve) -> None:
    def request(method: str, path: str, body: bytes) -> tuple[int, str, dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=30)
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = json.loads(response.read())
        connection.close()
        return response.status, response.getheader("x-amzn-ErrorType") or "", payload

    status, code, payload = request("POST", "/2015-03-31/event-source-mappings", b"{oops")
    assert (status, code) == (400, "InvalidRequestContentException")
    status, code, payload = request(
        "POST", "/2015-03-31/event-source-mappings", b'{"EventSourceArn": "arn:aws:sqs:x:y:z"}'
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "FunctionName" in payload["message"]
    status, code, _ = request("POST", "/2015-03-31/functions", b'{"FunctionName": 5}')
    assert (status, code) == (400, "InvalidParameterValueException")
    status, code, _ = request("GET", "/2015-03-31/functions/nope", b"")
    assert (status, code) == (404, "ResourceNotFoundException")


def test_sigkill_mid_batch_loses_nothing_and_keeps_order(serve: Serve, tmp_path: Path) -> None:
    out = tmp_path / "out" / "seen.jsonl"
    out.parent.mkdir()
    lam, sqs, kinesis = (client(s, serve.url) for s in ("lambda", "sqs", "kinesis"))
    create_function(lam, out, "bodies", name="q", Timeout=3, environment={"PAUSE": "0.05"})
    create_function(lam, out, "kinesis", name="k", Timeout=3, environment={"PAUSE": "0.05"})
    fifo = sqs.create_queue(
        QueueName="work.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "4"}
    )["QueueUrl"]
    fifo_arn = sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    kinesis.create_stream(StreamName="events", ShardCount=2)
    stream_arn = kinesis.describe_stream(StreamName="events")["StreamDescription"]["StreamARN"]
    lam.create_event_source_mapping(EventSourceArn=fifo_arn, FunctionName="q", BatchSize=5)
    lam.create_event_source_mapping(
        EventSourceArn=stream_arn, FunctionName="k", StartingPosition="TRIM_HORIZON", BatchSize=5
    )
    groups: dict[str, list[str]] = {}
    for start in range(0, 90, 10):
        entries = []
        for index in range(start, start + 10):
            group = f"g{index % 3}"
            body = f"{group}-{index}"
            groups.setdefault(group, []).append(body)
            entries.append(
                {
                    "Id": str(index),
                    "MessageBody": body,
                    "MessageGroupId": group,
                    "MessageDeduplicationId": body,
                }
            )
        sqs.send_message_batch(QueueUrl=fifo, Entries=entries)
    shards: dict[str, list[str]] = {}
    for index in range(120):
        put = kinesis.put_record(
            StreamName="events", Data=f"r{index}".encode(), PartitionKey=f"key{index % 7}"
        )
        shards.setdefault(put["ShardId"], []).append(f"r{index}")

    def progress() -> tuple[int, int]:
        bodies = {b["body"] for b in lines(out, "body")}
        records = {d for b in lines(out, "batch") for d in b["data"]}
        return len(bodies), len(records)

    # Kill it twice while batches are in hand, then let a third run finish.
    for threshold in (15, 45):
        wait_for(lambda t=threshold: min(progress()) >= t, what=f"{threshold} of each handled")
        serve.kill()
        serve.restart()
    wait_for(lambda: progress() == (90, 120), timeout=120, what="everything handled")
    seen = lines(out, "body")
    for group, bodies in groups.items():
        in_order_at_least_once([s["body"] for s in seen if s["group"] == group], bodies)
    batches = lines(out, "batch")
    for shard, data in shards.items():
        pairs = [pair for b in batches for pair in zip(b["data"], b["shards"], strict=True)]
        in_order_at_least_once([d for d, s in pairs if s == shard], data)
    attributes = sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["All"])["Attributes"]
    wait_for(
        lambda: (
            sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["All"])["Attributes"][
                "ApproximateNumberOfMessagesNotVisible"
            ]
            == "0"
        ),
        what="the last batch deleted",
    )
    assert attributes["ApproximateNumberOfMessages"] == "0"


BAD_VALUES: list[Any] = [None, 1, -1, 2**40, 1.5, True, "", "x" * 300, [], {}, [1], {"a": 1}]


def test_no_malformed_lambda_request_is_a_server_error(tmp_path: Path) -> None:
    """Every served route, every top-level member of its input set to each bad value:
    always a 4xx with Lambda's error header, never a 500, and the store stays sound."""
    import random

    import tidelog
    from tidelog.server import ServerThread
    from tidelog.server.lambda_api import HANDLERS
    from tidelog.server.model import service_model

    rng = random.Random(21)
    model = service_model("lambda")
    with tidelog.open(tmp_path / "d", sync="never") as store, ServerThread(store) as server:
        store.create_queue("q")
        tidelog.Triggers(store).create_function("f", "json.dumps")
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for name in sorted(HANDLERS):
            operation = model.operation_model(name)
            uri = operation.http["requestUri"].split("?")[0]
            members = [
                m
                for m, shape in operation.input_shape.members.items()
                if shape.serialization.get("location") is None
            ]
            for _ in range(25):
                path = uri.replace("{FunctionName}", rng.choice(["f", "nope", "%00", "a" * 200]))
                path = path.replace(
                    "{UUID}", rng.choice(["x", "00000000-0000-0000-0000-000000000000"])
                )
                body: Any = {
                    m: rng.choice(BAD_VALUES) for m in rng.sample(members, min(3, len(members)))
                }
                raw = json.dumps(body).encode() if rng.random() < 0.9 else b"\xff{"
                connection.request(operation.http["method"], path, body=raw)
                response = connection.getresponse()
                payload = response.read()
                assert response.status < 500, (name, path, body, payload)
                if response.status >= 400:
                    assert response.getheader("x-amzn-ErrorType"), (name, payload)
        connection.close()
        assert store.check() == []


def test_update_function_code_and_hot_reload_over_the_wire(serve: Serve, tmp_path: Path) -> None:
    lam = client("lambda", serve.url)

    def zipped(source: str) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("app.py", source)
        return buffer.getvalue()

    lam.create_function(
        FunctionName="z",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zipped("def handler(e, c):\n    return 'v1'\n")},
    )
    assert json.loads(lam.invoke(FunctionName="z")["Payload"].read()) == "v1"
    updated = lam.update_function_code(
        FunctionName="z", ZipFile=zipped("def handler(e, c):\n    return 'v2'\n")
    )
    assert json.loads(lam.invoke(FunctionName="z")["Payload"].read()) == "v2"
    assert (
        updated["CodeSha256"] == lam.get_function(FunctionName="z")["Configuration"]["CodeSha256"]
    )

    # Local-directory mode: the code is used in place and reloaded when it changes.
    folder = tmp_path / "live"
    folder.mkdir()
    (folder / "live.py").write_text("def handler(e, c):\n    return 'first'\n")
    lam.create_function(
        FunctionName="live",
        Runtime="python3.12",
        Role=ROLE,
        Handler="live.handler",
        Code={"S3Bucket": "hot-reload", "S3Key": str(folder)},
    )
    assert json.loads(lam.invoke(FunctionName="live")["Payload"].read()) == "first"
    (folder / "live.py").write_text("def handler(e, c):\n    return 'second'\n")
    wait_for(
        lambda: json.loads(lam.invoke(FunctionName="live")["Payload"].read()) == "second",
        what="the edited code",
    )


def test_aws_cli_deploys_maps_and_invokes(tmp_path: Path) -> None:
    """The AWS CLI (its own botocore) with signatures checked: create-function from a
    zip file, create-event-source-mapping on a queue, invoke, list."""
    from test_server_awscli import KEY, SECRET, aws

    import tidelog
    from tidelog.server import ServerThread
    from tidelog.server.auth import Authenticator

    out = tmp_path / "seen.jsonl"
    archive = tmp_path / "code.zip"
    archive.write_bytes(handler_zip())
    with (
        tidelog.open(tmp_path / "d", sync="never") as store,
        ServerThread(store, auth=Authenticator({KEY: SECRET}), workers=True) as server,
    ):
        created = aws(
            server,
            "lambda",
            "create-function",
            "--function-name",
            "f",
            "--runtime",
            "python3.12",
            "--role",
            ROLE,
            "--handler",
            "handlers.record",
            "--zip-file",
            f"fileb://{archive}",
            "--environment",
            json.dumps({"Variables": {"OUT": str(out)}}),
        )
        assert created["FunctionName"] == "f"
        url = aws(server, "sqs", "create-queue", "--queue-name", "jobs")["QueueUrl"]
        mapping = aws(
            server,
            "lambda",
            "create-event-source-mapping",
            "--function-name",
            "f",
            "--event-source-arn",
            "arn:aws:sqs:us-east-1:000000000000:jobs",
        )
        assert mapping["State"] == "Creating"
        aws(server, "sqs", "send-message", "--queue-url", url, "--message-body", "from the cli")
        got = wait_for(lambda: lines(out, "event"), what="the CLI's message")
        assert got[0]["event"]["Records"][0]["body"] == "from the cli"
        response = tmp_path / "response.json"
        aws(
            server,
            "lambda",
            "invoke",
            "--function-name",
            "f",
            "--payload",
            '{"x": 1}',
            str(response),
        )
        assert json.loads(response.read_text()) == {"records": 0}
        listed = aws(server, "lambda", "list-event-source-mappings", "--function-name", "f")
        assert [m["UUID"] for m in listed["EventSourceMappings"]] == [mapping["UUID"]]
