"""/metrics, /health and the console's API over real HTTP (no browser).

/metrics is parsed with prometheus_client's own parser and compared with
what the API and boto3 say; the console's safety rules (CSRF token, JSON
bodies, Host and Origin checks, --auth sessions) are each tried on a real
server.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_harness import client

import tidelog
from tidelog.server import ServerThread
from tidelog.server.auth import Authenticator
from tidelog.server.console import live


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[tidelog.Store, ServerThread]]:
    with tidelog.open(tmp_path / "data") as store:  # sync="always": fsyncs to count
        with ServerThread(store) as server:
            yield store, server
        assert store.check() == []


def request(
    server: ServerThread,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    try:
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def csrf(server: ServerThread, cookie: str | None = None) -> str:
    headers = {"Cookie": cookie} if cookie else {}
    status, _, body = request(server, "GET", "/console/api/session", headers=headers)
    assert status == 200
    token: str = json.loads(body)["csrf"]
    return token


def post(
    server: ServerThread, name: str, payload: dict[str, Any], cookie: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-CSRF-Token": csrf(server, cookie)}
    if cookie:
        headers["Cookie"] = cookie
    status, _, body = request(server, "POST", f"/console/api/{name}", payload, headers)
    return status, json.loads(body) if body else None


def samples(metrics: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_parse_and_match_the_api(served: tuple[tidelog.Store, ServerThread]) -> None:
    store, server = served
    sqs = client("sqs", server.url)
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(7)]
    )
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=300)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got["Messages"][0]["ReceiptHandle"])
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=300)
    kinesis = client("kinesis", server.url)
    kinesis.create_stream(StreamName="clicks", ShardCount=2)
    for i in range(5):
        kinesis.put_record(StreamName="clicks", Data=b"x" * 100, PartitionKey=f"k{i}")
    consumer = store.stream("clicks").consumer("app")
    sns = client("sns", server.url)
    arn = sns.create_topic(Name="news")["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint="arn:aws:sqs:us-east-1:000000000000:jobs")
    sns.publish(TopicArn=arn, Message="hello")

    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    values = samples(body)

    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    for state, name in (
        ("visible", "ApproximateNumberOfMessages"),
        ("in_flight", "ApproximateNumberOfMessagesNotVisible"),
        ("delayed", "ApproximateNumberOfMessagesDelayed"),
    ):
        assert values[("tidelog_queue_messages", (("queue", "jobs"), ("state", state)))] == int(
            attributes[name]
        )
    stats = store.queue("jobs").stats()
    assert (stats.visible, stats.in_flight, stats.delayed) == (5, 2, 1)  # 7 - 3 + 1 published
    label = (("queue", "jobs"),)
    assert values[("tidelog_queue_messages_sent_total", label)] == stats.sent_total == 9
    assert values[("tidelog_queue_messages_received_total", label)] == 3
    assert values[("tidelog_queue_messages_deleted_total", label)] == 1
    assert values[("tidelog_topic_messages_published_total", (("topic", "news"),))] == 1
    assert values[("tidelog_topic_subscriptions", (("topic", "news"),))] == 1
    assert values[("tidelog_stream_records_total", (("stream", "clicks"),))] == 5
    assert values[("tidelog_stream_shards", (("state", "open"), ("stream", "clicks")))] == 2
    lag = {x.shard_id: x.records_behind for x in consumer.lag()}
    for shard_id, behind in lag.items():
        key = (("consumer", "app"), ("shard", shard_id), ("stream", "clicks"))
        assert values[("tidelog_stream_consumer_lag_records", key)] == behind
    assert sum(lag.values()) == 5
    usage = store.disk_usage()
    assert (
        values[("tidelog_channel_disk_bytes", (("kind", "queue"), ("name", "jobs")))]
        == (usage.channels[("queue", "jobs")])
    )
    assert values[("tidelog_store_up", ())] == 1
    commits = store.commit_stats()
    assert 0 < values[("tidelog_commits_total", ())] <= commits.commits
    assert 0 < values[("tidelog_fsyncs_total", ())] <= commits.flushes
    # The histogram counts the commits made since the console started observing.
    observed = values[("tidelog_commit_duration_seconds_count", ())]
    assert 10 <= observed <= commits.commits
    assert values[("tidelog_commit_duration_seconds_bucket", (("le", "+Inf"),))] == observed
    assert values[("tidelog_commit_duration_seconds_sum", ())] > 0


def test_health_says_the_store_state(served: tuple[tidelog.Store, ServerThread]) -> None:
    store, server = served
    status, headers, body = request(server, "GET", "/health")
    document = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert document["status"] == "ok" and document["store"]["state"] == "ok"
    assert document["store"]["path"] == store.path and document["services"]["sqs"] == "running"
    status, _, body = request(server, "HEAD", "/health")
    assert status == 200 and body == b""


def test_health_answers_503_when_the_store_failed(tmp_path: Path) -> None:
    from tidelog.segments.fs import FaultyFileSystem

    fs = FaultyFileSystem()
    with tidelog.open(tmp_path / "data", fs=fs) as store:
        queue = store.create_queue("jobs")
        with ServerThread(store) as server:
            fs.fail_fsync = True
            with pytest.raises(tidelog.StoreFailed):
                queue.send(b"x")
            status, _, body = request(server, "GET", "/health")
            assert status == 503
            document = json.loads(body)
            assert document["status"] == "failed" and "fsync" in document["store"]["error"]
            assert samples(request(server, "GET", "/metrics")[2])[("tidelog_store_up", ())] == 0


def test_state_changing_requests_need_the_csrf_token_and_json(
    served: tuple[tidelog.Store, ServerThread],
) -> None:
    store, server = served
    store.create_queue("jobs").send(b"keep")
    path = "/console/api/queue/purge"
    json_type = {"Content-Type": "application/json"}
    status, _, _ = request(server, "POST", path, {"name": "jobs"}, json_type)
    assert status == 403
    bad = {**json_type, "X-CSRF-Token": "0" * 64}
    assert request(server, "POST", path, {"name": "jobs"}, bad)[0] == 403
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": csrf(server)}
    assert request(server, "POST", path, b"name=jobs", form)[0] == 415
    cross = {**json_type, "X-CSRF-Token": csrf(server), "Origin": "http://evil.example"}
    assert request(server, "POST", path, {"name": "jobs"}, cross)[0] == 403
    assert store.queue("jobs").approximate_counts().visible == 1
    # A GET never changes anything: the writes are not reachable by GET.
    assert request(server, "GET", "/console/api/queue/purge?name=jobs")[0] == 404
    assert post(server, "queue/purge", {"name": "jobs"}) == (200, {})
    assert store.queue("jobs").approximate_counts().visible == 0


def test_a_loopback_server_refuses_other_host_names(
    served: tuple[tidelog.Store, ServerThread],
) -> None:
    _, server = served
    for host in ("evil.example", "evil.example:4566", "127.0.0.1.evil.example"):
        status, _, _ = request(server, "GET", "/console/api/overview", headers={"Host": host})
        assert status == 421, host
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost"):
        assert request(server, "GET", "/console/api/overview", headers={"Host": host})[0] == 200


def test_errors_are_json_with_the_right_status(served: tuple[tidelog.Store, ServerThread]) -> None:
    store, server = served
    status, _, body = request(server, "GET", "/console/api/queue?name=nope")
    assert status == 404 and json.loads(body)["error"] == "NotFound"
    assert post(server, "queue/create", {"name": "bad name!"})[0] == 400
    store.create_queue("jobs")
    assert post(server, "queue/create", {"name": "jobs", "visibility_timeout": 5})[0] == 409
    status, body = post(server, "queue/messages", {})
    assert status == 404
    status, body = post(server, "queue/send", {"name": "jobs", "body": "x", "delay": "²"})
    assert status == 400 and "delay" in body["message"]
    status, body = post(server, "filter/test", {"filter_policy": "{not json"})
    assert status == 400
    assert request(server, "GET", "/console/static/../web.py")[0] == 404
    assert request(server, "GET", "/console/static/.hidden")[0] == 404
    status, headers, _ = request(server, "GET", "/console")
    assert status == 308 and headers["location"] == "/console/"
    status, headers, page = request(server, "GET", "/console/")
    assert status == 200 and b"console.js" in page
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    # The AWS endpoint is untouched by the console's routes: / is S3's ListBuckets.
    assert b"<ListAllMyBucketsResult" in request(server, "GET", "/")[2]


def test_binary_bodies_and_a_1_mib_message_round_trip(
    served: tuple[tidelog.Store, ServerThread],
) -> None:
    store, server = served
    queue = store.create_queue("blobs")
    data = bytes(range(256)) * 4095  # just under 1 MiB with the attribute
    status, _ = post(
        server,
        "queue/send",
        {
            "name": "blobs",
            "body_b64": base64.b64encode(data).decode(),
            "attributes": [{"name": "raw", "type": "Binary", "value": "AAEC"}],
        },
    )
    assert status == 200
    status, _, body = request(server, "GET", "/console/api/queue/messages?name=blobs")
    [message] = json.loads(body)["messages"]
    assert base64.b64decode(message["body_b64"]) == data
    assert message["attributes"] == [{"name": "raw", "type": "Binary", "value": "AAEC"}]
    [received] = queue.receive()
    assert received.body == data and received.attributes == {"raw": b"\x00\x01\x02"}


def test_event_stream_sends_history_then_samples_and_resumes(
    served: tuple[tidelog.Store, ServerThread],
) -> None:
    store, server = served
    queue = store.create_queue("jobs")
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    started = time.monotonic()
    connection.request("GET", "/console/api/events?window=60&channel=queue:jobs")
    response = connection.getresponse()
    assert response.getheader("content-type") == "text/event-stream"
    events = []
    last_id = None
    queue.send(b"one")
    while True:
        line = response.readline()
        if not line:
            break  # the stream ended by itself
        if line.startswith(b"id: "):
            last_id = int(line[4:])
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
    connection.close()
    took = time.monotonic() - started
    assert live.STREAM_SECONDS - 0.5 <= took <= live.STREAM_SECONDS + 2
    assert events[0] == {"store": [], "channel": []}  # history: nothing sampled before
    later = [sample for event in events[1:] for sample in event["channel"]]
    assert later and later[-1]["visible"] == 1
    assert last_id is not None
    # Resuming after the last id gives no history again, only new samples.
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request(
        "GET",
        "/console/api/events?window=60&channel=queue:jobs",
        headers={"Last-Event-ID": str(last_id)},
    )
    response = connection.getresponse()
    queue.send(b"two")
    ids = []
    while len(ids) < 1:
        line = response.readline()
        assert line, "the stream ended before a new sample"
        if line.startswith(b"id: "):
            ids.append(int(line[4:]))
    connection.close()
    assert ids[0] > last_id


def test_with_auth_every_console_call_needs_a_session(tmp_path: Path) -> None:
    keys = Authenticator({"AKIDONE": "secret-one"})
    with tidelog.open(tmp_path / "data", sync="never") as store:
        store.create_queue("jobs")
        with ServerThread(store, auth=keys) as server:
            for path in ("/console/api/overview", "/console/api/events", "/metrics"):
                assert request(server, "GET", path)[0] == 401, path
            assert request(server, "GET", "/health")[0] == 200
            session = json.loads(request(server, "GET", "/console/api/session")[2])
            assert session["auth_required"] and not session["logged_in"]
            assert post(server, "queue/purge", {"name": "jobs"})[0] == 401
            assert post(server, "login", {"access_key": "AKIDONE", "secret": "nope"})[0] == 401
            assert post(server, "login", {"access_key": "OTHER", "secret": "secret-one"})[0] == 401

            headers = {"Content-Type": "application/json", "X-CSRF-Token": csrf(server)}
            status, reply_headers, body = request(
                server,
                "POST",
                "/console/api/login",
                {"access_key": "AKIDONE", "secret": "secret-one"},
                headers,
            )
            assert status == 200
            set_cookie = reply_headers["set-cookie"]
            assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
            cookie = set_cookie.split(";", 1)[0]
            status, _, body = request(
                server, "GET", "/console/api/overview", headers={"Cookie": cookie}
            )
            assert status == 200 and json.loads(body)["queues"][0]["name"] == "jobs"
            # The anonymous token does not work in a session, and the reverse.
            anonymous = csrf(server)
            headers = {
                "Content-Type": "application/json",
                "X-CSRF-Token": anonymous,
                "Cookie": cookie,
            }
            assert (
                request(server, "POST", "/console/api/queue/purge", {"name": "jobs"}, headers)[0]
                == 403
            )
            assert post(server, "queue/send", {"name": "jobs", "body": "hi"}, cookie)[0] == 200
            assert request(server, "GET", "/metrics", headers={"Cookie": cookie})[0] == 200
            basic = base64.b64encode(b"AKIDONE:secret-one").decode()
            auth_header = {"Authorization": f"Basic {basic}"}
            assert request(server, "GET", "/metrics", headers=auth_header)[0] == 200
            wrong = {"Authorization": "Basic " + base64.b64encode(b"AKIDONE:x").decode()}
            assert request(server, "GET", "/metrics", headers=wrong)[0] == 401
            assert post(server, "logout", {}, cookie)[0] == 200
            status, _, _ = request(
                server, "GET", "/console/api/overview", headers={"Cookie": cookie}
            )
            assert status == 401
        assert store.queue("jobs").approximate_counts().visible == 1


def test_delivery_streams_and_applications_are_listed_and_described(
    served: tuple[tidelog.Store, ServerThread], tmp_path: Path
) -> None:
    store, server = served
    store.create_stream("clicks")
    ds = store.create_delivery_stream("landing", destination=str(tmp_path / "out"))
    ds.put_record(b"buffered")
    store.create_queue("counts")
    store.create_application(
        "per-window",
        "clicks",
        "SELECT count(*) AS n FROM clicks",
        window="tumbling",
        size=60,
        destination="queue:counts",
    )
    status, _, body = request(server, "GET", "/console/api/overview")
    overview = json.loads(body)
    [delivery] = overview["delivery_streams"]
    assert delivery["name"] == "landing" and delivery["buffered_records"] == 1
    assert delivery["destination"].endswith("out")
    [application] = overview["applications"]
    assert application["name"] == "per-window" and application["destination"] == "queue:counts"
    status, _, body = request(server, "GET", "/console/api/delivery?name=landing")
    assert status == 200 and json.loads(body)["settings"]["source"] == "direct"
    status, _, body = request(server, "GET", "/console/api/application?name=per-window")
    assert status == 200 and "count(*)" in json.loads(body)["sql"]
    values = samples(request(server, "GET", "/metrics")[2])
    label = (("delivery_stream", "landing"),)
    assert values[("tidelog_delivery_buffered_records", label)] == 1
    assert values[("tidelog_sql_application_running", (("application", "per-window"),))] == 1


def test_signed_requests_on_console_paths_go_to_the_aws_endpoint(
    served: tuple[tidelog.Store, ServerThread],
) -> None:
    _, server = served
    signed = {"Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/s3/aws4_request"}
    status, headers, body = request(server, "GET", "/metrics", headers=signed)
    assert b"tidelog_store_up" not in body and status >= 400  # the AWS side answered
    status, _, body = request(server, "GET", "/metrics?X-Amz-Signature=abc")
    assert b"tidelog_store_up" not in body
    assert b"tidelog_store_up" in request(server, "GET", "/metrics")[2]
