"""boto3 request rates: tidelog's endpoint beside the client's own ceiling and moto_server.

One boto3 client, one thread, keep-alive, 100-byte bodies. Each server
runs in its own process on 127.0.0.1 (a free port) and is stopped at the end:

- `canned`: an asyncio server that answers every request at once with a
  fixed, valid reply (MD5s included). Its rate is the client's ceiling here:
  what boto3 itself costs per request.
- `tidelog`: `tidelog.server.serve` on a fresh store, sync="always".
- `moto`: moto_server (in memory), when `moto[server]` is installed.

Operations: SQS SendMessage; SendMessageBatch of 10; ReceiveMessage +
DeleteMessage (each counted as a request, on a pre-filled queue); SNS Publish
to a topic with one SQS subscription; Kinesis PutRecords of 100 records to a
4-shard stream.

    python bench/server_bench.py            # 3 runs of 1000 requests per operation
    python bench/server_bench.py --quick    # 1 run of 200
    python bench/server_bench.py --json     # one JSON document on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

BODY = "x" * 100
BODY_MD5 = hashlib.md5(BODY.encode()).hexdigest()
OPERATIONS = ("send", "send_batch_10", "receive_delete", "publish", "put_records_100")
PUT_RECORDS_BATCH = 100


# -- the canned-reply server -------------------------------------------------------------------


def _canned_replies() -> dict[bytes, bytes]:
    message_id = "5fea7756-0ea4-451a-a703-a558b933e274"
    return {
        b"AmazonSQS.CreateQueue": json.dumps({"QueueUrl": "http://127.0.0.1/0/q"}).encode(),
        b"AmazonSQS.SendMessage": json.dumps(
            {"MessageId": message_id, "MD5OfMessageBody": BODY_MD5}
        ).encode(),
        b"AmazonSQS.SendMessageBatch": json.dumps(
            {
                "Successful": [
                    {"Id": str(i), "MessageId": message_id, "MD5OfMessageBody": BODY_MD5}
                    for i in range(10)
                ]
            }
        ).encode(),
        b"AmazonSQS.ReceiveMessage": json.dumps(
            {
                "Messages": [
                    {
                        "MessageId": message_id,
                        "ReceiptHandle": "r",
                        "MD5OfBody": BODY_MD5,
                        "Body": BODY,
                    }
                ]
            }
        ).encode(),
        b"AmazonSQS.GetQueueAttributes": json.dumps(
            {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:000000000000:q"}}
        ).encode(),
        b"Kinesis_20131202.CreateStream": b"{}",
        b"Kinesis_20131202.PutRecords": json.dumps(
            {
                "FailedRecordCount": 0,
                "Records": [
                    {"SequenceNumber": str(i), "ShardId": "shardId-000000000000"}
                    for i in range(PUT_RECORDS_BATCH)
                ],
            }
        ).encode(),
    }


_SNS = "http://sns.amazonaws.com/doc/2010-03-31/"
# SNS speaks the query protocol: replies by Action, in XML.
_CANNED_SNS = {
    b"CreateTopic": "<TopicArn>arn:aws:sns:us-east-1:000000000000:t</TopicArn>",
    b"Subscribe": "<SubscriptionArn>arn:aws:sns:us-east-1:000000000000:t:s</SubscriptionArn>",
    b"Publish": "<MessageId>5fea7756-0ea4-451a-a703-a558b933e274</MessageId>",
}


def _canned_sns(body: bytes) -> bytes:
    action = body.split(b"Action=", 1)[-1].split(b"&", 1)[0]
    name = action.decode()
    inner = _CANNED_SNS.get(action, "")
    return (
        f'<{name}Response xmlns="{_SNS}"><{name}Result>{inner}</{name}Result>'
        f"<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></{name}Response>"
    ).encode()


class _Canned(asyncio.Protocol):
    replies = _canned_replies()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            target = headers.get(b"x-amz-target")
            if target is None:
                body, content_type = _canned_sns(rest[:length]), b"text/xml"
            else:
                body = self.replies.get(target, b"{}")
                content_type = b"application/x-amz-json-1.0"
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )


def run_canned(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Canned, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- driving servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_listening(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def start(kind: str, port: int, data: str) -> subprocess.Popen[bytes]:
    if kind == "canned":
        argv = [sys.executable, __file__, "--canned-server", str(port)]
    elif kind == "tidelog":
        code = (
            "import sys; from tidelog.server import serve; "
            "serve(sys.argv[1], '127.0.0.1', int(sys.argv[2]), 'always')"
        )
        argv = [sys.executable, "-c", code, data, str(port)]
    else:
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(process, port)
    return process


# A slow server ends a measurement after this long, whatever `count` says.
MEASURE_SECONDS_MAX = 10.0


def _client(service: str, url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}),
    )


def measure_publish(url: str, count: int) -> float:
    """SNS Publish to a topic that one SQS queue subscribes to."""
    sqs, sns = _client("sqs", url), _client("sns", url)
    name = f"bench-publish-{time.monotonic_ns()}"
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = sns.create_topic(Name=name)["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    started = time.perf_counter()
    deadline = started + MEASURE_SECONDS_MAX
    requests = 0
    while requests < count and time.perf_counter() < deadline:
        sns.publish(TopicArn=topic, Message=BODY)
        requests += 1
    return requests / (time.perf_counter() - started)


def measure_put_records(url: str, count: int) -> float:
    """Kinesis PutRecords of PUT_RECORDS_BATCH records (one request each call)."""
    kinesis = _client("kinesis", url)
    name = f"bench-records-{time.monotonic_ns()}"
    kinesis.create_stream(StreamName=name, ShardCount=4)
    records = [{"Data": BODY.encode(), "PartitionKey": str(i)} for i in range(PUT_RECORDS_BATCH)]
    started = time.perf_counter()
    deadline = started + MEASURE_SECONDS_MAX
    requests = 0
    while requests < count and time.perf_counter() < deadline:
        reply = kinesis.put_records(StreamName=name, Records=records)
        if reply.get("FailedRecordCount"):
            raise RuntimeError(f"PutRecords failed {reply['FailedRecordCount']} records")
        requests += 1
    return requests / (time.perf_counter() - started)


def measure(url: str, operation: str, count: int) -> float:
    if operation == "publish":
        return measure_publish(url, count)
    if operation == "put_records_100":
        return measure_put_records(url, count)
    sqs = _client("sqs", url)
    name = f"bench-{operation}-{time.monotonic_ns()}"
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    entries = [{"Id": str(i), "MessageBody": BODY} for i in range(10)]
    if operation == "receive_delete":
        filling = time.perf_counter() + MEASURE_SECONDS_MAX
        for _ in range((count + 1) // 20 + 1):  # one message per receive + delete pair
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)
            if time.perf_counter() > filling:
                break
    started = time.perf_counter()
    deadline = started + MEASURE_SECONDS_MAX
    requests = 0
    if operation == "send":
        while requests < count and time.perf_counter() < deadline:
            sqs.send_message(QueueUrl=queue, MessageBody=BODY)
            requests += 1
    elif operation == "send_batch_10":
        while requests < count and time.perf_counter() < deadline:
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)
            requests += 1
    else:
        while requests < count and time.perf_counter() < deadline:
            messages = sqs.receive_message(QueueUrl=queue).get("Messages", [])
            if not messages:
                break
            message = messages[0]
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            requests += 2
    return requests / (time.perf_counter() - started)


def moto_available() -> bool:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of 200 requests")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--canned-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.canned_server:
        run_canned(args.canned_server)
        return
    count, runs = (200, 1) if args.quick else (1000, 3)
    kinds = ["canned", "tidelog"] + (["moto"] if moto_available() else [])
    results: dict[str, dict[str, float]] = {kind: {} for kind in kinds}
    for kind in kinds:
        data = tempfile.mkdtemp(prefix="tidelog-bench-")
        port = free_port()
        process = start(kind, port, data)
        try:
            url = f"http://127.0.0.1:{port}"
            for operation in OPERATIONS:
                rates = [measure(url, operation, count) for _ in range(runs)]
                results[kind][operation] = statistics.median(rates)
        finally:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            shutil.rmtree(data, ignore_errors=True)
    ratios = {
        operation: {
            "tidelog_vs_canned": results["tidelog"][operation] / results["canned"][operation],
            **(
                {"tidelog_vs_moto": results["tidelog"][operation] / results["moto"][operation]}
                if "moto" in results
                else {}
            ),
        }
        for operation in OPERATIONS
    }
    report: dict[str, Any] = {
        "requests_per_op": count,
        "runs": runs,
        "body_bytes": len(BODY),
        "requests_per_second": results,
        "ratios": ratios,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"boto3, one client thread, {count} requests x {runs} run(s), median requests/s")
    header = f"{'operation':<16}" + "".join(f"{k:>10}" for k in kinds)
    print(header + f"{'tl/canned':>11}" + (f"{'tl/moto':>9}" if "moto" in kinds else ""))
    for operation in OPERATIONS:
        row = f"{operation:<16}" + "".join(f"{results[k][operation]:>10.0f}" for k in kinds)
        row += f"{ratios[operation]['tidelog_vs_canned']:>11.2f}"
        if "moto" in kinds:
            row += f"{ratios[operation]['tidelog_vs_moto']:>9.1f}"
        print(row)


if __name__ == "__main__":
    main()
