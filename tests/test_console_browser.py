"""The web console driven in a real headless Chromium, its effects checked through the API.

One browser for the module; each test serves its own store on a free port
(ServerThread, as `tidelog serve` runs the app). Waits are on what the page
shows (WebDriverWait polling the DOM), never fixed sleeps. Screenshots of
each view go to $TIDELOG_SCREENSHOTS (docs/images for docs/console.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_harness import browser, confirm, console_errors, shot, wait
from server_harness import client

import tidelog
from tidelog.server import ServerThread
from tidelog.server.auth import Authenticator


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with browser() as opened:
        yield opened


@pytest.fixture
def served(driver: Any, tmp_path: Path) -> Iterator[tuple[tidelog.Store, ServerThread]]:
    with tidelog.open(tmp_path / "data", sync="never") as store:
        server = ServerThread(store).start()
        try:
            yield store, server
        finally:
            # Leave the page before the server stops: its open event stream
            # would hold the graceful shutdown for up to live.STREAM_SECONDS.
            driver.get("about:blank")
            server.stop()
        assert store.check() == []


def loads(driver: Any, table: str) -> int:
    return int(one(driver, f"#{table}").get_attribute("data-loads") or 0)


def reload_table(driver: Any, table: str, button: str) -> None:
    """Click `button` and wait until `table` has been rendered again."""
    before = loads(driver, table)
    one(driver, button).click()
    wait(driver, lambda d: loads(d, table) > before, f"{table} to load again")


def choose(driver: Any, selector: str, text: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(one(driver, selector)).select_by_visible_text(text)


def by_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    found: list[Any] = driver.find_elements(By.CSS_SELECTOR, selector)
    return found


def one(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def open_page(driver: Any, server: ServerThread, hash_path: str, view: str) -> None:
    driver.get(f"{server.url}/console/{hash_path}")
    wait(driver, lambda d: d.execute_script("return document.body.dataset.view") == view, view)


def cell(driver: Any, table: str, name: str, column: str) -> str:
    text: str = one(driver, f'#{table} tr[data-name="{name}"] td.{column}').text
    return text


def chart_now(driver: Any, title: str, series: str) -> float | None:
    found = by_css(driver, f'.chart[data-chart="{title}"] .now span[data-series="{series}"] b')
    return float(found[0].text.replace(",", "")) if found else None


def queue_url(sqs: Any, name: str) -> str:
    url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return url


def counts(sqs: Any, url: str) -> tuple[int, int, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]),
        int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        int(attrs["ApproximateNumberOfMessagesDelayed"]),
    )


def test_overview_shows_live_data_and_a_chart_follows_sends(
    driver: Any, served: tuple[tidelog.Store, ServerThread]
) -> None:
    store, server = served
    store.create_queue("jobs")
    store.create_queue("jobs-dlq")
    topic = store.create_topic("orders")
    stream = store.create_stream("clicks", shards=2)
    stream.put(b"first", "user-1")
    stream.consumer("analytics")
    topic.subscribe(store.queue("jobs"), filter_policy={"kind": ["video"]}, raw=True)
    sqs = client("sqs", server.url)
    url = queue_url(sqs, "jobs")
    sqs.send_message(QueueUrl=url, MessageBody="before the page")

    open_page(driver, server, "#/", "overview")
    wait(driver, lambda d: cell(d, "queues", "jobs", "visible") == "1", "the queue's count")
    assert one(driver, "#count-queues .value").text == "2"
    assert one(driver, '#topics tr[data-name="orders"]').text.startswith("orders")
    assert "clicks" in one(driver, "#streams").text
    assert one(driver, "#store-state").text == "ok"
    wait(driver, lambda d: chart_now(d, "Queue backlog", "visible") == 1, "a first sample")

    for start in range(0, 30, 10):
        entries = [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, start + 10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    wait(driver, lambda d: chart_now(d, "Queue backlog", "visible") == 31, "the chart to show 31")
    samples = driver.execute_script(
        "const c = window.tidelog.state.charts.find((c) => c.title === 'Rates');"
        "return c.data[1];"  # sent/s
    )
    assert max(v for v in samples if v is not None) > 0
    wait(driver, lambda d: cell(d, "queues", "jobs", "visible") == "31", "the table to refresh")
    shot(driver, "overview")
    assert console_errors(driver) == []


def test_browsing_a_queue_changes_no_receive_count(
    driver: Any, served: tuple[tidelog.Store, ServerThread]
) -> None:
    store, server = served
    store.create_queue("work")
    sqs = client("sqs", server.url)
    url = queue_url(sqs, "work")
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps({"order": 7, "items": ["a", "b"]}),
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "video"}},
    )
    sqs.send_message(QueueUrl=url, MessageBody="plain text")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    # One message in flight for a long time, one received once and released at once.
    held = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600)
    [held_message] = held["Messages"]
    released = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=0)
    assert len(released["Messages"]) == 1
    before = counts(sqs, url)
    assert before == (1, 1, 1)

    open_page(driver, server, "#/queue/work", "queue")
    wait(driver, lambda d: loads(d, "messages") >= 1, "the messages")
    for _ in range(3):  # browse again and again: still nothing changes
        reload_table(driver, "messages", "#search button[type=submit]")
        assert len(by_css(driver, "#messages tr.message")) == 3
    states = [e.text for e in by_css(driver, "#messages tr.message .state")]
    receives = [e.text for e in by_css(driver, "#messages tr.message .receives")]
    assert sorted(states) == ["delayed", "in flight", "visible"]
    assert sorted(receives) == ["0", "1", "1"]
    rows = by_css(driver, "#messages tr.message")
    rows[[e.text for e in by_css(driver, "#messages tr.message .state")].index("in flight")].click()
    wait(driver, lambda d: by_css(d, "tr.detail pre.body"), "the message viewer")
    one(driver, "tr.detail [data-mode=json]").click()
    pretty = one(driver, "tr.detail pre.body").text
    assert json.loads(pretty) == {"order": 7, "items": ["a", "b"]} and "\n" in pretty
    assert "video" in one(driver, "tr.detail table.attrs").text
    one(driver, "tr.detail [data-mode=hex]").click()
    assert one(driver, "tr.detail pre.body").text.startswith("00000000  7b 22 6f 72")
    shot(driver, "queue")
    # Searching by attribute finds the one message that has it.
    one(driver, "#search [name=attribute]").send_keys("kind")
    one(driver, "#search [name=value]").send_keys("video")
    reload_table(driver, "messages", "#search button[type=submit]")
    assert len(by_css(driver, "#messages tr.message")) == 1

    assert counts(sqs, url) == before
    again = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600, AttributeNames=["All"]
    )
    [message] = again["Messages"]
    assert message["Body"] == "plain text"
    assert message["Attributes"]["ApproximateReceiveCount"] == "2"  # 1 before, + this one
    sqs.delete_message(QueueUrl=url, ReceiptHandle=held_message["ReceiptHandle"])
    assert console_errors(driver) == []


def test_send_delete_one_and_purge_through_the_page(
    driver: Any, served: tuple[tidelog.Store, ServerThread]
) -> None:
    store, server = served
    store.create_queue("outbox")
    sqs = client("sqs", server.url)
    url = queue_url(sqs, "outbox")
    open_page(driver, server, "#/queue/outbox", "queue")

    one(driver, "#send-form textarea[name=body]").send_keys("hello from the page")
    one(driver, "#send-form .add-attribute").click()
    one(driver, "#send-form [data-a=name]").send_keys("priority")
    choose(driver, "#send-form [data-a=type]", "Number")
    one(driver, "#send-form [data-a=value]").send_keys("3")
    one(driver, "#send-form button[type=submit]").click()
    wait(driver, lambda d: len(by_css(d, "#messages tr.message")) == 1, "the sent message listed")
    got = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], VisibilityTimeout=0, WaitTimeSeconds=0
    )
    [message] = got["Messages"]
    assert message["Body"] == "hello from the page"
    assert message["MessageAttributes"]["priority"] == {"DataType": "Number", "StringValue": "3"}

    for body in ("keep me", "drop me"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    reload_table(driver, "messages", "#search button[type=submit]")
    assert len(by_css(driver, "#messages tr.message")) == 3
    rows = by_css(driver, "#messages tr.message")
    rows[[r.text.endswith("drop me") for r in rows].index(True)].click()
    one(driver, "tr.detail .delete-message").click()
    confirm(driver)
    wait(driver, lambda d: len(by_css(d, "#messages tr.message")) == 2, "the message gone")
    assert counts(sqs, url) == (2, 0, 0)

    one(driver, "#purge").click()
    confirm(driver)
    wait(driver, lambda d: by_css(d, "#messages td.muted"), "an empty queue")
    assert counts(sqs, url) == (0, 0, 0)
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None
    # A destructive action asks first; cancelling does nothing.
    sqs.send_message(QueueUrl=url, MessageBody="still here")
    one(driver, "#purge").click()
    wait(driver, lambda d: one(d, "#confirm").get_attribute("open") is not None, "the dialog")
    one(driver, "#confirm-cancel").click()
    assert counts(sqs, url) == (1, 0, 0)
    assert console_errors(driver) == []


def test_redrive_start_progress_and_cancel_through_the_page(
    driver: Any, served: tuple[tidelog.Store, ServerThread]
) -> None:
    store, server = served
    store.create_queue("dead")
    store.create_queue("live", dead_letter=("dead", 1))
    sqs = client("sqs", server.url)
    live, dead = queue_url(sqs, "live"), queue_url(sqs, "dead")
    for start in range(0, 20, 10):
        entries = [{"Id": str(i), "MessageBody": f"job {i}"} for i in range(start, start + 10)]
        sqs.send_message_batch(QueueUrl=live, Entries=entries)
    # Received once and not deleted: the next receive moves each to the DLQ.
    while sqs.receive_message(QueueUrl=live, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
        "Messages"
    ):
        pass
    assert counts(sqs, dead)[0] == 20 and counts(sqs, live) == (0, 0, 0)

    open_page(driver, server, "#/queue/dead", "queue")
    wait(driver, lambda d: by_css(d, "#redrive-form"), "the redrive form")
    one(driver, "#redrive-form [name=rate]").send_keys("1")  # slow, so it can be cancelled
    one(driver, "#redrive-form button[type=submit]").click()
    confirm(driver)
    wait(driver, lambda d: by_css(d, '#task-list tr[data-status="RUNNING"] .cancel-task'), "a task")
    wait(driver, lambda d: int(one(d, "#task-list .moved").text) >= 1, "progress")
    one(driver, "#task-list .cancel-task").click()
    confirm(driver)
    wait(driver, lambda d: by_css(d, '#task-list tr[data-status="CANCELLED"]'), "the cancel")
    tasks = sqs.list_message_move_tasks(SourceArn=_arn(sqs, dead))["Results"]
    assert tasks[-1]["Status"] == "CANCELLED"
    moved = tasks[-1]["ApproximateNumberOfMessagesMoved"]
    assert 1 <= moved < 20

    one(driver, "#redrive-form [name=rate]").clear()
    one(driver, "#redrive-form button[type=submit]").click()
    confirm(driver)
    wait(driver, lambda d: by_css(d, '#task-list tr[data-status="COMPLETED"]'), "a finished task")
    shot(driver, "redrive")
    assert counts(sqs, live)[0] == 20 and counts(sqs, dead) == (0, 0, 0)
    assert console_errors(driver) == []


def _arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    arn: str = attributes["Attributes"]["QueueArn"]
    return arn


def test_checkpoint_reset_and_stream_browsing_through_the_page(
    driver: Any, served: tuple[tidelog.Store, ServerThread]
) -> None:
    store, server = served
    stream = store.create_stream("events", shards=1)
    kinesis = client("kinesis", server.url)
    for i in range(12):
        kinesis.put_record(StreamName="events", Data=f'{{"i": {i}}}'.encode(), PartitionKey="k")
    consumer = stream.consumer("billing")
    for record in consumer.read():
        consumer.checkpoint(record)
    assert [x.records_behind for x in consumer.lag()] == [0]

    open_page(driver, server, "#/stream/events", "stream")
    wait(driver, lambda d: len(by_css(d, "#records tr.message")) == 12, "the shard's records")
    assert one(driver, '#consumers tr[data-consumer="billing"] .lag').text == "0"
    by_css(driver, "#records tr.message")[3].click()
    wait(driver, lambda d: by_css(d, "tr.detail pre.body"), "the record viewer")
    assert one(driver, "tr.detail pre.body").text == '{"i": 3}'
    shot(driver, "stream")

    one(driver, '#consumers tr[data-consumer="billing"] button[type=submit]').click()
    confirm(driver)  # TRIM_HORIZON, every shard: the defaults
    wait(
        driver,
        lambda d: one(d, '#consumers tr[data-consumer="billing"] .lag').text == "12",
        "the consumer 12 behind",
    )
    assert consumer.checkpoints() == {}
    assert [x.records_behind for x in consumer.lag()] == [12]
    assert len(list(consumer.read())) == 12

    # From a sequence number: the record after the 5th.
    fifth = list(stream.read("shardId-000000000000"))[4].sequence_number
    choose(driver, "#browse [name=type]", "AFTER_SEQUENCE_NUMBER")
    one(driver, "#browse [name=value]").send_keys(fifth)
    reload_table(driver, "records", "#browse button[type=submit]")
    assert len(by_css(driver, "#records tr.message")) == 7
    assert console_errors(driver) == []


def test_topic_subscribe_with_a_tested_filter_policy(
    driver: Any, served: tuple[tidelog.Store, ServerThread]
) -> None:
    store, server = served
    topic = store.create_topic("orders")
    store.create_queue("videos")
    topic.publish("an old order", {"kind": "book"})
    open_page(driver, server, "#/topic/orders", "topic")
    wait(driver, lambda d: len(by_css(d, "#messages tr.message")) == 1, "the published message")

    one(driver, "#subscribe-form textarea[name=filter_policy]").send_keys('{"kind": ["video"]}')
    one(driver, "#test-form .add-attribute").click()
    one(driver, "#test-form [data-a=name]").send_keys("kind")
    one(driver, "#test-form [data-a=value]").send_keys("book")
    one(driver, "#test-form button[type=submit]").click()
    wait(driver, lambda d: "does not match" in one(d, "#test-result").text, "no match")
    one(driver, "#test-form [data-a=value]").clear()
    one(driver, "#test-form [data-a=value]").send_keys("video")
    one(driver, "#test-form button[type=submit]").click()
    wait(driver, lambda d: one(d, "#test-result").text.startswith("matches"), "a match")
    shot(driver, "topic")
    one(driver, "#subscribe-form button[type=submit]").click()
    wait(driver, lambda d: len(by_css(d, "#subscriptions tr[data-id]")) == 1, "the subscription")

    sns = client("sns", server.url)
    [sub] = sns.list_subscriptions_by_topic(TopicArn=topic.arn)["Subscriptions"]
    attributes = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])
    assert json.loads(attributes["Attributes"]["FilterPolicy"]) == {"kind": ["video"]}
    topic.publish("a video", {"kind": "video"})
    topic.publish("a book", {"kind": "book"})
    assert store.queue("videos").approximate_counts().visible == 1
    assert console_errors(driver) == []


def test_sql_box_shows_a_table(driver: Any, served: tuple[tidelog.Store, ServerThread]) -> None:
    store, server = served
    stream = store.create_stream("clicks")
    for user in ("ann", "bob", "ann"):
        stream.put(json.dumps({"user": user}).encode(), user)
    open_page(driver, server, "#/sql", "sql")
    box = one(driver, "#sql-form textarea")
    box.clear()
    box.send_keys("SELECT data->>'user' AS user, count(*) AS n FROM clicks GROUP BY 1 ORDER BY 1")
    one(driver, "#sql-form button[type=submit]").click()
    wait(driver, lambda d: len(by_css(d, "#sql-table tbody tr")) == 2, "two result rows")
    rows = [[td.text for td in by_css(row, "td")] for row in by_css(driver, "#sql-table tbody tr")]
    assert rows == [["ann", "2"], ["bob", "1"]]
    assert [th.text for th in by_css(driver, "#sql-table th")] == ["user", "n"]
    shot(driver, "sql")
    box.clear()
    box.send_keys("COPY (SELECT 1) TO '/tmp/tidelog-console-should-not-exist.csv'")
    one(driver, "#sql-form button[type=submit]").click()
    wait(driver, lambda d: "disabled" in one(d, "#notice").text, "file access refused")
    assert not Path("/tmp/tidelog-console-should-not-exist.csv").exists()


def test_with_auth_the_console_asks_for_a_key_and_secret(driver: Any, tmp_path: Path) -> None:
    keys = Authenticator({"AKIDCONSOLE": "s3cret-value"})
    with tidelog.open(tmp_path / "data", sync="never") as store:
        store.create_queue("private")
        with ServerThread(store, auth=keys) as server:
            open_page(driver, server, "#/", "login")
            shot(driver, "login")
            one(driver, "#login-form [name=access_key]").send_keys("AKIDCONSOLE")
            one(driver, "#login-form [name=secret]").send_keys("wrong")
            started = time.monotonic()
            one(driver, "#login-form button[type=submit]").click()
            wait(driver, lambda d: "wrong secret" in one(d, "#notice").text, "a refusal")
            assert time.monotonic() - started >= 0.4  # failures are slowed down
            secret = one(driver, "#login-form [name=secret]")
            secret.clear()
            secret.send_keys("s3cret-value")
            one(driver, "#login-form button[type=submit]").click()
            wait(
                driver,
                lambda d: d.execute_script("return document.body.dataset.view") == "overview",
                "the overview after login",
            )
            wait(driver, lambda d: by_css(d, '#queues tr[data-name="private"]'), "the queue")
            assert "AKIDCONSOLE" in one(driver, "#user").text
            one(driver, "#logout").click()
            wait(
                driver,
                lambda d: d.execute_script("return document.body.dataset.view") == "login",
                "the login page again",
            )
            driver.delete_all_cookies()
            driver.get("about:blank")


def test_many_channels_are_cut_to_a_page_with_a_filter(
    driver: Any, served: tuple[tidelog.Store, ServerThread]
) -> None:
    store, server = served
    for i in range(60):
        store.create_queue(f"queue-{i:02d}")
    open_page(driver, server, "#/", "overview")
    wait(driver, lambda d: by_css(d, "#queues .show-all"), "the show-all button")
    assert one(driver, "#count-queues .value").text == "60"
    assert len(by_css(driver, "#queues tr[data-name]")) == 50
    assert one(driver, "#queues .show-all").text == "10 more: show all"
    one(driver, "#filter").send_keys("queue-5")
    wait(driver, lambda d: len(by_css(d, "#queues tr[data-name]")) == 10, "ten matches")
    one(driver, "#filter").clear()
    one(driver, "#filter").send_keys("-")  # input events: everything matches again
    wait(driver, lambda d: by_css(d, "#queues .show-all"), "the cut again")
    one(driver, "#queues .show-all").click()
    wait(driver, lambda d: len(by_css(d, "#queues tr[data-name]")) == 60, "all sixty")
