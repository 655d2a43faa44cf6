"""`aws s3 ls/mb/cp/sync/rm/rb` (the AWS CLI in the test extra) against `tidelog serve`.

The AWS CLI carries its own botocore, so this checks the S3 endpoint against
a second client build, with its transfer manager (multipart uploads above
8 MiB, ranged downloads) and signatures checked by the server (--auth).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from awscli.clidriver import create_clidriver
from server_harness import free_port, start_serve

import tidelog

KEY, SECRET = "AKIDAWSCLI", "aws-cli-secret"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("awscli-s3")
    keys = root / "keys"
    keys.write_text(f"{KEY} {SECRET}\n")
    port = free_port()
    process = start_serve(root / "data", port, "--no-stomp", "--auth", str(keys), "--sync", "never")
    try:
        yield f"http://127.0.0.1:{port}", root / "data"
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err


def aws(endpoint: tuple[str, Path], *args: str, code: int = 0) -> str:
    """One `aws` command, run in this process (a subprocess costs seconds of start-up)."""
    env = {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            got = create_clidriver().main(["--endpoint-url", endpoint[0], *args])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert got == code, (got, stdout.getvalue(), stderr.getvalue())
    return stdout.getvalue()


def test_ls_on_a_fresh_server_lists_nothing(endpoint: tuple[str, Path]) -> None:
    assert aws(endpoint, "s3", "ls") == ""


def test_mb_cp_ls_rm_rb(endpoint: tuple[str, Path], tmp_path: Path) -> None:
    assert "make_bucket: cli-bucket" in aws(endpoint, "s3", "mb", "s3://cli-bucket")
    assert "cli-bucket" in aws(endpoint, "s3", "ls")
    small = tmp_path / "small.txt"
    small.write_text("hello from the aws cli\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * MIB + 123))  # multipart: 8 MiB parts
    aws(endpoint, "s3", "cp", str(small), "s3://cli-bucket/docs/small.txt")
    aws(endpoint, "s3", "cp", str(big), "s3://cli-bucket/data/big.bin")
    listing = aws(endpoint, "s3", "ls", "s3://cli-bucket/")
    assert "PRE docs/" in listing and "PRE data/" in listing
    listing = aws(endpoint, "s3", "ls", "s3://cli-bucket/data/")
    assert f"{20 * MIB + 123} big.bin" in listing
    recursive = aws(endpoint, "s3", "ls", "--recursive", "s3://cli-bucket")
    assert "docs/small.txt" in recursive and "data/big.bin" in recursive
    back = tmp_path / "back.bin"
    aws(endpoint, "s3", "cp", "s3://cli-bucket/data/big.bin", str(back))  # ranged parts
    assert back.read_bytes() == big.read_bytes()
    aws(endpoint, "s3", "cp", "s3://cli-bucket/docs/small.txt", str(tmp_path / "s.txt"))
    assert (tmp_path / "s.txt").read_text() == "hello from the aws cli\n"
    aws(endpoint, "s3", "cp", "s3://cli-bucket/data/big.bin", "s3://cli-bucket/copy/big.bin")
    with tidelog.open(endpoint[1], readonly=True) as store:
        info = store.objects.head("cli-bucket", "data/big.bin")
        assert info.parts == 3 and info.etag.endswith("-3")
        assert store.objects.get("cli-bucket", "copy/big.bin") == big.read_bytes()
    out = aws(endpoint, "s3", "rb", "s3://cli-bucket", code=1)
    del out  # BucketNotEmpty: rb refuses
    assert "delete: s3://cli-bucket/docs/small.txt" in aws(
        endpoint, "s3", "rm", "s3://cli-bucket/docs/small.txt"
    )
    aws(endpoint, "s3", "rm", "--recursive", "s3://cli-bucket")
    assert aws(endpoint, "s3", "ls", "s3://cli-bucket") == ""
    assert "remove_bucket: cli-bucket" in aws(endpoint, "s3", "rb", "s3://cli-bucket")
    assert "cli-bucket" not in aws(endpoint, "s3", "ls")


def test_sync_up_and_down(endpoint: tuple[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "site"
    (source / "css").mkdir(parents=True)
    (source / "index.html").write_text("<h1>hi</h1>")
    (source / "css" / "main.css").write_text("h1 { color: red }")
    (source / "space name.txt").write_text("a key with a space")
    aws(endpoint, "s3", "mb", "s3://sync-bucket")
    out = aws(endpoint, "s3", "sync", str(source), "s3://sync-bucket/site")
    assert out.count("upload:") == 3
    assert aws(endpoint, "s3", "sync", str(source), "s3://sync-bucket/site") == ""  # up to date
    (source / "index.html").write_text("<h1>changed, and longer</h1>")
    out = aws(endpoint, "s3", "sync", str(source), "s3://sync-bucket/site")
    assert out.count("upload:") == 1 and "index.html" in out
    target = tmp_path / "copy"
    aws(endpoint, "s3", "sync", "s3://sync-bucket/site", str(target))
    for path in source.rglob("*"):
        if path.is_file():
            assert (target / path.relative_to(source)).read_bytes() == path.read_bytes()
    (source / "css" / "main.css").unlink()
    out = aws(endpoint, "s3", "sync", "--delete", str(source), "s3://sync-bucket/site")
    assert "delete: s3://sync-bucket/site/css/main.css" in out
    listed = aws(endpoint, "s3", "ls", "--recursive", "s3://sync-bucket/site/")
    assert "main.css" not in listed and "space name.txt" in listed


def test_errors_reach_the_cli(endpoint: tuple[str, Path], tmp_path: Path) -> None:
    aws(endpoint, "s3", "ls", "s3://no-such-bucket", code=255)
    aws(endpoint, "s3", "cp", "s3://no-such-bucket/x", str(tmp_path / "x"), code=1)
