"""Buckets and objects: the S3 model, kept under the data directory.

`store.objects` is an `ObjectStore`. `tidelog serve` speaks S3 over it
(server/s3/), and delivery streams whose S3 bucket exists here write to it
directly, with no HTTP and no boto3 (engine/delivery.py).

On disk, beside the logs:

    DATA/objects/tmp/<id>          an upload streaming in (staging)
    DATA/objects/<bucket>/<id>     one file per object or multipart part, never modified

and in LMDB (primary state, named databases):

    s3_buckets   bucket -> {created_ms, region}
    s3_objects   bucket NUL key -> {size, etag, crc32c, file, modified_ms, headers, metadata, ...}
    s3_uploads   upload id -> {bucket, key, created_ms, headers, metadata}
    s3_parts     upload id NUL part number (4 bytes, big-endian) -> {size, etag, crc32c, file}

A write streams the body into a staging file while its MD5 (S3's ETag) and
CRC32C are computed, fsyncs it, renames it to a fresh name in the bucket's
directory and fsyncs the directory; then one LMDB commit makes it visible,
replacing any earlier object of the key, whose file is removed after the
commit. So an object is either wholly there or not at all, and a reader
that opened the old file keeps reading it. A crash between the rename and
the commit leaves a file no row names: `sweep` removes those (only files an
hour old, so another process's upload in flight is never touched). Every
read of a whole object checks its CRC32C and raises Corruption on a
mismatch.

Keys sort as S3 sorts them (by their UTF-8 bytes). tidelog allows keys of up
to KEY_BYTES_MAX (447) UTF-8 bytes, where S3 allows 1,024: LMDB keys are at
most 511 bytes and hold the bucket's name too.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

import crc32c as _crc32c

from tidelog.segments.errors import AlreadyExists, Corruption, InvalidArgument, NotFound
from tidelog.segments.writer import WriteContext

if TYPE_CHECKING:
    from tidelog.store import Store

BUCKETS_DB = b"s3_buckets"
OBJECTS_DB = b"s3_objects"
UPLOADS_DB = b"s3_uploads"
PARTS_DB = b"s3_parts"
OBJECT_DATABASES = (BUCKETS_DB, OBJECTS_DB, UPLOADS_DB, PARTS_DB)

REGION_DEFAULT = "us-east-1"
# LMDB's key limit (511 bytes) less a bucket name (63) and the separator.
KEY_BYTES_MAX = 511 - 63 - 1
OBJECT_BYTES_MAX = 5 * 1024**4  # S3: 5 TiB an object
PUT_BYTES_MAX = 5 * 1024**3  # S3: 5 GiB a single PUT or part
PART_BYTES_MIN = 5 * 1024 * 1024  # S3: every part but the last is at least 5 MiB
PARTS_MAX = 10_000
LIST_KEYS_MAX = 1000
# A staging or data file this old that no row names was left by a crash.
ORPHAN_SECONDS = 3600
# Headers S3 stores with an object and returns on GET and HEAD.
STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
)
CHUNK_BYTES = 1024 * 1024

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")
_PART = struct.Struct(">I")


# -- errors: each carries the S3 error code the wire adapter answers with -----------------------


class NoSuchBucket(NotFound):
    s3_code = "NoSuchBucket"


class NoSuchKey(NotFound):
    s3_code = "NoSuchKey"


class NoSuchUpload(NotFound):
    s3_code = "NoSuchUpload"


class BucketAlreadyOwnedByYou(AlreadyExists):
    s3_code = "BucketAlreadyOwnedByYou"


class ObjectRequestError(InvalidArgument):
    """A request S3 refuses, with its code (InvalidBucketName, BucketNotEmpty, InvalidPart...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.s3_code = code


# -- what is stored ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    created_ms: int
    region: str = REGION_DEFAULT


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object's metadata. `etag` is S3's, unquoted: MD5 hex, or MD5-of-MD5s "-N"."""

    bucket: str
    key: str
    size: int
    etag: str
    crc32c: int
    modified_ms: int
    path: str  # the data file
    headers: dict[str, str] = field(default_factory=dict)  # content-type and the like
    metadata: dict[str, str] = field(default_factory=dict)  # x-amz-meta-*
    checksums: dict[str, str] = field(default_factory=dict)  # x-amz-checksum-* as sent
    parts: int = 0  # how many parts a multipart upload made it of (0: one PUT)


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of ListObjects: objects, common prefixes, and where the next page starts."""

    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    next_marker: str | None  # the last key or prefix of this page (start the next after it)


@dataclass(frozen=True, slots=True)
class Upload:
    upload_id: str
    bucket: str
    key: str
    created_ms: int
    headers: dict[str, str]
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    size: int
    etag: str
    crc32c: int
    modified_ms: int
    path: str
    md5: str  # hex, for the multipart ETag


class Staged:
    """A file being written into the staging directory, hashed as it goes.

    `write` the body in pieces, then `finish()` (fsyncs) and hand the result
    to `ObjectStore.put` or `put_part`, which move it into place. Closing
    without handing it over removes the file. `hashes` names extra hashlib
    digests to compute (e.g. "sha256" to check x-amz-content-sha256).
    """

    def __init__(self, directory: str, hashes: Sequence[str] = ()) -> None:
        self.path = os.path.join(directory, uuid.uuid4().hex)
        self._file: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 - closed in finish
        self.size = 0
        self._md5 = hashlib.md5()
        self._crc = 0
        self._extra = {name: hashlib.new(name) for name in hashes}
        self.finished = False
        self.taken = False

    def write(self, data: bytes | memoryview) -> None:
        if self._file is None:
            raise InvalidArgument("staged upload: already finished")
        self.size += len(data)
        if self.size > PUT_BYTES_MAX:
            raise ObjectRequestError(
                "EntityTooLarge", f"an upload is at most {PUT_BYTES_MAX} bytes (use multipart)"
            )
        self._md5.update(data)
        self._crc = _crc32c.crc32c(data, self._crc)
        for digest in self._extra.values():
            digest.update(data)
        self._file.write(data)

    def finish(self) -> Staged:
        """Flush and fsync the file; the hashes are final."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        self.finished = True
        return self

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def md5_digest(self) -> bytes:
        return self._md5.digest()

    @property
    def crc32c(self) -> int:
        return self._crc

    def digest(self, name: str) -> bytes:
        return self._extra[name].digest()

    def close(self) -> None:
        """Remove the file unless it was moved into place."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self.taken:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self) -> Staged:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_bucket_name(name: object) -> str:
    """S3's bucket naming rules; raises ObjectRequestError(InvalidBucketName)."""
    if (
        not isinstance(name, str)
        or not _BUCKET_RE.fullmatch(name)
        or ".." in name
        or _IPV4_RE.fullmatch(name)
    ):
        raise ObjectRequestError(
            "InvalidBucketName",
            f"bucket name {name!r}: 3-63 characters of a-z, 0-9, '.' and '-', starting and "
            "ending with a letter or digit, not an IP address",
        )
    return name


def check_key(key: object) -> bytes:
    if not isinstance(key, str) or not key:
        raise ObjectRequestError("InvalidArgument", "an object key must be a non-empty string")
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) > KEY_BYTES_MAX:
        raise ObjectRequestError(
            "KeyTooLongError",
            f"key of {len(raw)} bytes: tidelog allows at most {KEY_BYTES_MAX} (S3: 1024)",
        )
    return raw


def multipart_etag(md5_digests: Iterable[bytes]) -> str:
    """S3's ETag of a multipart object: MD5 of the parts' binary MD5s, then -N."""
    digests = list(md5_digests)
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def _object_key(bucket: str, key: bytes) -> bytes:
    return bucket.encode() + b"\0" + key


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _info(bucket: str, key: str, doc: Mapping[str, Any], root: str) -> ObjectInfo:
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=doc["size"],
        etag=doc["etag"],
        crc32c=doc["crc32c"],
        modified_ms=doc["modified_ms"],
        path=os.path.join(root, bucket, doc["file"]),
        headers=dict(doc.get("headers", {})),
        metadata=dict(doc.get("metadata", {})),
        checksums=dict(doc.get("checksums", {})),
        parts=doc.get("parts", 0),
    )


class ObjectStore:
    """Buckets and objects in one store's data directory. Use `store.objects`.

    Thread- and process-safe: every change is one LMDB commit (atomic,
    durable as the store's sync mode; the data file is always fsynced
    first), and readers see a committed object or none.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._logs = store._logs
        self.root = os.path.join(self._logs.path, "objects")
        self._staging = os.path.join(self.root, "tmp")

    # -- reading LMDB ------------------------------------------------------------------------

    def _get(self, db_name: bytes, key: bytes) -> Any:
        db = self._logs.database(db_name)
        if db is None:  # read-only, and never created
            return None
        with self._logs.env.begin() as txn:
            raw = txn.get(key, db=db)
        return None if raw is None else json.loads(raw)

    def _need_bucket_in(self, ctx: WriteContext, bucket: str) -> dict[str, Any]:
        raw = ctx.txn.get(bucket.encode(), db=ctx.db(BUCKETS_DB))
        if raw is None:
            raise NoSuchBucket(f"bucket {bucket!r}: the specified bucket does not exist")
        doc: dict[str, Any] = json.loads(raw)
        return doc

    # -- buckets -----------------------------------------------------------------------------

    def create_bucket(self, name: str, region: str = REGION_DEFAULT) -> Bucket:
        """Create a bucket. Atomic. Raises ObjectRequestError (InvalidBucketName),
        BucketAlreadyOwnedByYou."""
        check_bucket_name(name)
        self._logs.check_writable()
        directory = os.path.join(self.root, name)
        os.makedirs(directory, exist_ok=True)
        os.makedirs(self._staging, exist_ok=True)
        _fsync_dir(self.root)

        def op(ctx: WriteContext) -> Bucket:
            db = ctx.db(BUCKETS_DB)
            if ctx.txn.get(name.encode(), db=db) is not None:
                raise BucketAlreadyOwnedByYou(f"bucket {name!r}: already exists, and is yours")
            doc = {"created_ms": ctx.now_ms, "region": region}
            ctx.txn.put(name.encode(), json.dumps(doc).encode(), db=db)
            return Bucket(name, ctx.now_ms, region)

        bucket: Bucket = self._logs.submit(op)
        return bucket

    def bucket(self, name: str) -> Bucket:
        """A bucket by name. Raises NoSuchBucket."""
        doc = self._get(BUCKETS_DB, name.encode()) if isinstance(name, str) else None
        if doc is None:
            raise NoSuchBucket(f"bucket {name!r}: the specified bucket does not exist")
        return Bucket(name, doc["created_ms"], doc.get("region", REGION_DEFAULT))

    def has_bucket(self, name: str) -> bool:
        return isinstance(name, str) and self._get(BUCKETS_DB, name.encode()) is not None

    def buckets(self) -> list[Bucket]:
        """Every bucket, by name."""
        db = self._logs.database(BUCKETS_DB)
        if db is None:
            return []
        with self._logs.env.begin() as txn:
            rows = [(k.decode(), json.loads(v)) for k, v in txn.cursor(db=db)]
        return [Bucket(n, d["created_ms"], d.get("region", REGION_DEFAULT)) for n, d in rows]

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket. Atomic. Raises NoSuchBucket, ObjectRequestError
        (BucketNotEmpty: it holds objects or unfinished multipart uploads)."""
        directory = os.path.join(self.root, name)

        def op(ctx: WriteContext) -> None:
            self._need_bucket_in(ctx, name)
            cursor = ctx.txn.cursor(db=ctx.db(OBJECTS_DB))
            prefix = name.encode() + b"\0"
            if cursor.set_range(prefix) and cursor.key().startswith(prefix):
                raise ObjectRequestError(
                    "BucketNotEmpty",
                    f"bucket {name!r}: the bucket you tried to delete is not empty",
                )
            for _, raw in ctx.txn.cursor(db=ctx.db(UPLOADS_DB)):
                if json.loads(raw)["bucket"] == name:
                    raise ObjectRequestError(
                        "BucketNotEmpty",
                        f"bucket {name!r}: it has multipart uploads in progress (abort them)",
                    )
            ctx.txn.delete(name.encode(), db=ctx.db(BUCKETS_DB))
            # Only orphans of crashed uploads can be left in its directory.
            ctx.after_commit(lambda: shutil.rmtree(directory, ignore_errors=True))

        self._logs.submit(op)

    # -- objects -----------------------------------------------------------------------------

    def stage(self, hashes: Sequence[str] = ()) -> Staged:
        """A staging file to write an object's or a part's body into (see `Staged`)."""
        os.makedirs(self._staging, exist_ok=True)
        return Staged(self._staging, hashes)

    def _place(self, staged: Staged, bucket: str) -> str:
        """Move a finished staging file into the bucket's directory; returns its file name."""
        if not staged.finished:
            raise InvalidArgument("staged upload: call finish() first")
        directory = os.path.join(self.root, bucket)
        os.makedirs(directory, exist_ok=True)
        name = os.path.basename(staged.path)
        os.rename(staged.path, os.path.join(directory, name))
        staged.taken = True
        _fsync_dir(directory)
        return name

    def _remover(self, bucket: str, file: str) -> Any:
        path = os.path.join(self.root, bucket, file)

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

        return remove

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes | Staged,
        *,
        headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        checksums: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store an object (S3's PutObject), replacing any of the same key. Atomic;
        durable on return. Raises NoSuchBucket, ObjectRequestError."""
        raw_key = check_key(key)
        if isinstance(body, bytes | bytearray | memoryview):
            with self.stage() as staged:
                staged.write(body)
                return self.put(
                    bucket,
                    key,
                    staged.finish(),
                    headers=headers,
                    metadata=metadata,
                    checksums=checksums,
                )
        self._logs.check_writable()
        self.bucket(bucket)  # before moving the file: a missing bucket has no directory
        file = self._place(body, bucket)
        doc = {
            "size": body.size,
            "etag": body.md5,
            "crc32c": body.crc32c,
            "file": file,
            "headers": dict(headers or {}),
            "metadata": dict(metadata or {}),
            "checksums": dict(checksums or {}),
            "parts": 0,
        }
        try:
            return self._commit_object(bucket, key, raw_key, doc)
        except BaseException:
            self._remover(bucket, file)()
            raise

    def _commit_object(
        self,
        bucket: str,
        key: str,
        raw_key: bytes,
        doc: dict[str, Any],
        also: Any = None,
    ) -> ObjectInfo:
        row_key = _object_key(bucket, raw_key)

        def op(ctx: WriteContext) -> ObjectInfo:
            self._need_bucket_in(ctx, bucket)
            if also is not None:
                also(ctx)
            db = ctx.db(OBJECTS_DB)
            old = ctx.txn.get(row_key, db=db)
            if old is not None:
                old_file = json.loads(old)["file"]
                if old_file != doc["file"]:
                    ctx.after_commit(self._remover(bucket, old_file))
            stored = dict(doc, modified_ms=ctx.now_ms)
            ctx.txn.put(row_key, json.dumps(stored).encode(), db=db)
            return _info(bucket, key, stored, self.root)

        info: ObjectInfo = self._logs.submit(op)
        return info

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """An object's metadata (S3's HeadObject). Raises NoSuchBucket, NoSuchKey."""
        raw_key = check_key(key)
        doc = self._get(OBJECTS_DB, _object_key(bucket, raw_key))
        if doc is None:
            self.bucket(bucket)
            raise NoSuchKey(f"key {key!r} in bucket {bucket!r}: the specified key does not exist")
        return _info(bucket, key, doc, self.root)

    def open(self, bucket: str, key: str) -> tuple[ObjectInfo, BinaryIO]:
        """An object's metadata and its data file, open for reading (the caller closes it).

        The file stays readable however the key is overwritten or deleted
        meanwhile. Raises NoSuchBucket, NoSuchKey.
        """
        for _ in range(10):
            info = self.head(bucket, key)
            try:
                return info, open(info.path, "rb")  # noqa: SIM115 - the caller closes it
            except FileNotFoundError:
                continue  # replaced between reading the row and opening: look again
        raise NoSuchKey(f"key {key!r} in bucket {bucket!r}: changing too fast to read")

    def read(
        self, info: ObjectInfo, file: BinaryIO, start: int = 0, stop: int | None = None
    ) -> Iterator[bytes]:
        """Yield bytes [start, stop) of an object opened by `open`, CHUNK_BYTES at a time.

        A read of the whole object checks its CRC32C as it goes and raises
        Corruption (with the file's path) after the last chunk if it differs,
        before the caller can take the data as good.
        """
        end = info.size if stop is None else min(stop, info.size)
        whole = start == 0 and end == info.size
        crc = 0
        position = start
        file.seek(start)
        while position < end:
            chunk = file.read(min(CHUNK_BYTES, end - position))
            if not chunk:
                raise Corruption(
                    f"object {info.key!r} of bucket {info.bucket!r}: file is short "
                    f"({position} of {info.size} bytes)",
                    path=info.path,
                    position=position,
                )
            position += len(chunk)
            if whole:
                crc = _crc32c.crc32c(chunk, crc)
                if position == end and crc != info.crc32c:
                    raise Corruption(
                        f"object {info.key!r} of bucket {info.bucket!r}: CRC32C mismatch",
                        path=info.path,
                    )
            yield chunk

    def get(self, bucket: str, key: str) -> bytes:
        """An object's whole body, checked. Raises NoSuchBucket, NoSuchKey, Corruption."""
        info, file = self.open(bucket, key)
        with file:
            return b"".join(self.read(info, file))

    def delete(self, bucket: str, key: str) -> bool:
        """Delete an object (S3's DeleteObject); True if it existed. Atomic. Raises NoSuchBucket."""
        raw_key = check_key(key)
        row_key = _object_key(bucket, raw_key)

        def op(ctx: WriteContext) -> bool:
            self._need_bucket_in(ctx, bucket)
            db = ctx.db(OBJECTS_DB)
            old = ctx.txn.get(row_key, db=db)
            if old is None:
                return False
            ctx.txn.delete(row_key, db=db)
            ctx.after_commit(self._remover(bucket, json.loads(old)["file"]))
            return True

        existed: bool = self._logs.submit(op)
        return existed

    def delete_many(self, bucket: str, keys: Sequence[str]) -> list[tuple[str, str | None]]:
        """Delete up to 1,000 objects in one commit (S3's DeleteObjects).

        Returns (key, error code or None) per key: a bad key fails alone.
        Raises NoSuchBucket.
        """
        if len(keys) > LIST_KEYS_MAX:
            raise ObjectRequestError("MalformedXML", f"at most {LIST_KEYS_MAX} keys a request")
        checked: list[tuple[str, bytes | None, str | None]] = []
        for key in keys:
            try:
                checked.append((key, check_key(key), None))
            except ObjectRequestError as exc:
                checked.append((key, None, exc.s3_code))

        def op(ctx: WriteContext) -> list[tuple[str, str | None]]:
            self._need_bucket_in(ctx, bucket)
            db = ctx.db(OBJECTS_DB)
            out: list[tuple[str, str | None]] = []
            for key, raw_key, error in checked:
                if raw_key is not None:
                    row_key = _object_key(bucket, raw_key)
                    old = ctx.txn.get(row_key, db=db)
                    if old is not None:
                        ctx.txn.delete(row_key, db=db)
                        ctx.after_commit(self._remover(bucket, json.loads(old)["file"]))
                out.append((key, error))
            return out

        result: list[tuple[str, str | None]] = self._logs.submit(op)
        return result

    def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        max_keys: int = LIST_KEYS_MAX,
    ) -> Listing:
        """One page of the bucket's keys, in UTF-8 byte order (S3's ListObjects).

        Keys that start with `prefix` and sort after `after`. With a
        `delimiter`, keys that hold it past the prefix roll up into one
        common prefix each (prefix through the first delimiter), and a
        common prefix counts as one of `max_keys`. A page past `after` that
        names a common prefix skips the whole prefix. Raises NoSuchBucket.
        """
        self.bucket(bucket)
        db = self._logs.database(OBJECTS_DB)
        max_keys = max(0, min(max_keys, LIST_KEYS_MAX))
        base = bucket.encode() + b"\0"
        wanted = base + prefix.encode()
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        last: str | None = None
        truncated = False
        if db is None:
            return Listing(objects, prefixes, False, None)
        start = wanted
        if after:
            start = max(start, base + after.encode() + b"\0")
            if delimiter and after.endswith(delimiter) and after.startswith(prefix):
                # `after` was a common prefix: skip every key under it.
                start = max(start, base + after.encode() + b"\xff")
        with self._logs.env.begin() as txn:
            cursor = txn.cursor(db=db)
            found = cursor.set_range(start)
            while found:
                row_key = cursor.key()
                if not row_key.startswith(wanted):
                    break
                key = row_key[len(base) :].decode("utf-8", "surrogatepass")
                rolled = None
                if delimiter:
                    cut = key.find(delimiter, len(prefix))
                    if cut >= 0:
                        rolled = key[: cut + len(delimiter)]
                if len(objects) + len(prefixes) >= max_keys:
                    truncated = True
                    break
                if rolled is not None:
                    prefixes.append(rolled)
                    last = rolled
                    # Every key under this prefix is rolled into it: jump past them.
                    found = cursor.set_range(base + rolled.encode() + b"\xff")
                    continue
                objects.append(_info(bucket, key, json.loads(cursor.value()), self.root))
                last = key
                found = cursor.next()
        return Listing(objects, prefixes, truncated, last if truncated else None)

    def copy(
        self,
        source_bucket: str,
        source_key: str,
        bucket: str,
        key: str,
        *,
        headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Copy an object (S3's CopyObject); headers and metadata None keep the source's.

        The copy is a hard link to the source's immutable file where the
        file system allows, else a copy; its ETag is the MD5 of its bytes.
        Raises NoSuchBucket, NoSuchKey, ObjectRequestError.
        """
        raw_key = check_key(key)
        self.bucket(bucket)
        info, source = self.open(source_bucket, source_key)
        with source:
            if info.parts:
                md5 = hashlib.md5()
                for chunk in self.read(info, source):
                    md5.update(chunk)
                etag = md5.hexdigest()
            else:
                etag = info.etag
            directory = os.path.join(self.root, bucket)
            file = uuid.uuid4().hex
            target = os.path.join(directory, file)
            try:
                os.link(info.path, target)
            except OSError:  # another file system, or no hard links: copy the bytes
                with self.stage() as staged:
                    for chunk in self.read(info, source):
                        staged.write(chunk)
                    file = self._place(staged.finish(), bucket)
            else:
                _fsync_dir(directory)
        doc = {
            "size": info.size,
            "etag": etag,
            "crc32c": info.crc32c,
            "file": file,
            "headers": dict(info.headers if headers is None else headers),
            "metadata": dict(info.metadata if metadata is None else metadata),
            "checksums": {},
            "parts": 0,
        }
        try:
            return self._commit_object(bucket, key, raw_key, doc)
        except BaseException:
            self._remover(bucket, file)()
            raise

    # -- multipart uploads ---------------------------------------------------------------------

    def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Upload:
        """Start a multipart upload (S3's CreateMultipartUpload). Raises NoSuchBucket."""
        check_key(key)
        upload_id = base64.urlsafe_b64encode(uuid.uuid4().bytes + os.urandom(8)).decode()
        upload_id = upload_id.rstrip("=")

        def op(ctx: WriteContext) -> Upload:
            self._need_bucket_in(ctx, bucket)
            stored_headers, stored_metadata = dict(headers or {}), dict(metadata or {})
            doc = {
                "bucket": bucket,
                "key": key,
                "created_ms": ctx.now_ms,
                "headers": stored_headers,
                "metadata": stored_metadata,
            }
            ctx.txn.put(upload_id.encode(), json.dumps(doc).encode(), db=ctx.db(UPLOADS_DB))
            return Upload(upload_id, bucket, key, ctx.now_ms, stored_headers, stored_metadata)

        upload: Upload = self._logs.submit(op)
        return upload

    def _upload_in(self, ctx: WriteContext, upload_id: str) -> dict[str, Any]:
        raw = ctx.txn.get(upload_id.encode(), db=ctx.db(UPLOADS_DB))
        if raw is None:
            raise NoSuchUpload(f"upload {upload_id!r}: the specified upload does not exist")
        doc: dict[str, Any] = json.loads(raw)
        return doc

    def upload(self, upload_id: str) -> Upload:
        """A multipart upload in progress. Raises NoSuchUpload."""
        doc = self._get(UPLOADS_DB, upload_id.encode()) if upload_id else None
        if doc is None:
            raise NoSuchUpload(f"upload {upload_id!r}: the specified upload does not exist")
        return Upload(
            upload_id, doc["bucket"], doc["key"], doc["created_ms"], doc["headers"], doc["metadata"]
        )

    def uploads(self, bucket: str) -> list[Upload]:
        """The bucket's multipart uploads in progress, by key then start time."""
        self.bucket(bucket)
        db = self._logs.database(UPLOADS_DB)
        if db is None:
            return []
        with self._logs.env.begin() as txn:
            rows = [(k.decode(), json.loads(v)) for k, v in txn.cursor(db=db)]
        found = [
            Upload(i, d["bucket"], d["key"], d["created_ms"], d["headers"], d["metadata"])
            for i, d in rows
            if d["bucket"] == bucket
        ]
        return sorted(found, key=lambda u: (u.key, u.created_ms))

    def put_part(self, upload_id: str, number: int, body: bytes | Staged) -> Part:
        """Store part `number` (1-10,000) of an upload, replacing an earlier one of that
        number (S3's UploadPart). Atomic; durable on return. Raises NoSuchUpload."""
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= PARTS_MAX:
            raise ObjectRequestError(
                "InvalidArgument", f"part number {number!r}: must be an integer 1-{PARTS_MAX}"
            )
        if isinstance(body, bytes | bytearray | memoryview):
            with self.stage() as staged:
                staged.write(body)
                return self.put_part(upload_id, number, staged.finish())
        upload = self.upload(upload_id)
        file = self._place(body, upload.bucket)
        row_key = upload_id.encode() + b"\0" + _PART.pack(number)
        doc = {
            "size": body.size,
            "etag": body.md5,
            "crc32c": body.crc32c,
            "file": file,
        }

        def op(ctx: WriteContext) -> Part:
            self._upload_in(ctx, upload_id)
            db = ctx.db(PARTS_DB)
            old = ctx.txn.get(row_key, db=db)
            if old is not None:
                ctx.after_commit(self._remover(upload.bucket, json.loads(old)["file"]))
            stored = dict(doc, modified_ms=ctx.now_ms)
            ctx.txn.put(row_key, json.dumps(stored).encode(), db=db)
            return self._part(upload.bucket, number, stored)

        try:
            part: Part = self._logs.submit(op)
        except BaseException:
            self._remover(upload.bucket, file)()
            raise
        return part

    def _part(self, bucket: str, number: int, doc: Mapping[str, Any]) -> Part:
        return Part(
            number=number,
            size=doc["size"],
            etag=doc["etag"],
            crc32c=doc["crc32c"],
            modified_ms=doc["modified_ms"],
            path=os.path.join(self.root, bucket, doc["file"]),
            md5=doc["etag"],
        )

    def parts(self, upload_id: str) -> list[Part]:
        """The parts uploaded so far, by number (S3's ListParts). Raises NoSuchUpload."""
        upload = self.upload(upload_id)
        prefix = upload_id.encode() + b"\0"
        out: list[Part] = []
        db = self._logs.database(PARTS_DB)
        if db is None:
            return out
        with self._logs.env.begin() as txn:
            cursor = txn.cursor(db=db)
            found = cursor.set_range(prefix)
            while found and cursor.key().startswith(prefix):
                number = _PART.unpack(cursor.key()[len(prefix) :])[0]
                out.append(self._part(upload.bucket, number, json.loads(cursor.value())))
                found = cursor.next()
        return out

    def complete_upload(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> ObjectInfo:
        """Join the listed parts, in order, into the object (S3's CompleteMultipartUpload).

        `parts` are (part number, ETag) pairs, ascending by number. Parts
        uploaded but not listed are dropped. The parts are copied into one
        new file (CRC32C checked as they are read) before one commit makes
        the object visible and ends the upload. Raises NoSuchUpload,
        ObjectRequestError (InvalidPart, InvalidPartOrder, EntityTooSmall:
        a part but the last under 5 MiB).
        """
        upload = self.upload(upload_id)
        if not parts:
            raise ObjectRequestError(
                "MalformedXML", "CompleteMultipartUpload needs at least one part"
            )
        numbers = [number for number, _ in parts]
        if numbers != sorted(set(numbers)):
            raise ObjectRequestError(
                "InvalidPartOrder", "the list of parts was not in ascending order"
            )
        have = {p.number: p for p in self.parts(upload_id)}
        chosen: list[Part] = []
        for number, etag in parts:
            part = have.get(number)
            if part is None or etag.strip('"') != part.etag:
                raise ObjectRequestError(
                    "InvalidPart",
                    f"part {number}: one or more of the specified parts could not be found, "
                    "or its entity tag did not match",
                )
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < PART_BYTES_MIN:
                raise ObjectRequestError(
                    "EntityTooSmall",
                    f"part {part.number} is {part.size} bytes: every part but the last "
                    f"must be at least {PART_BYTES_MIN}",
                )
        total = sum(p.size for p in chosen)
        if total > OBJECT_BYTES_MAX:
            raise ObjectRequestError("EntityTooLarge", f"an object is at most {OBJECT_BYTES_MAX}")
        with self.stage() as staged:
            for part in chosen:
                with open(part.path, "rb") as file:
                    crc = 0
                    while chunk := file.read(CHUNK_BYTES):
                        crc = _crc32c.crc32c(chunk, crc)
                        staged.write(chunk)
                if crc != part.crc32c:
                    raise Corruption(
                        f"upload {upload_id!r} part {part.number}: CRC32C mismatch",
                        path=part.path,
                    )
            staged.finish()
            etag = multipart_etag(bytes.fromhex(p.md5) for p in chosen)
            file_name = self._place(staged, upload.bucket)
        doc = {
            "size": total,
            "etag": etag,
            "crc32c": staged.crc32c,
            "file": file_name,
            "headers": upload.headers,
            "metadata": upload.metadata,
            "checksums": {},
            "parts": len(chosen),
        }

        def end_upload(ctx: WriteContext) -> None:
            self._drop_upload_in(ctx, upload_id, upload.bucket)

        try:
            return self._commit_object(
                upload.bucket, upload.key, check_key(upload.key), doc, end_upload
            )
        except BaseException:
            self._remover(upload.bucket, file_name)()
            raise

    def _drop_upload_in(self, ctx: WriteContext, upload_id: str, bucket: str) -> None:
        self._upload_in(ctx, upload_id)
        ctx.txn.delete(upload_id.encode(), db=ctx.db(UPLOADS_DB))
        db = ctx.db(PARTS_DB)
        prefix = upload_id.encode() + b"\0"
        cursor = ctx.txn.cursor(db=db)
        doomed = []
        found = cursor.set_range(prefix)
        while found and cursor.key().startswith(prefix):
            doomed.append((cursor.key(), json.loads(cursor.value())["file"]))
            found = cursor.next()
        for row_key, file in doomed:
            ctx.txn.delete(row_key, db=db)
            ctx.after_commit(self._remover(bucket, file))

    def abort_upload(self, upload_id: str) -> None:
        """Abandon a multipart upload and its parts (S3's AbortMultipartUpload).
        Atomic. Raises NoSuchUpload."""
        upload = self.upload(upload_id)
        self._logs.submit(lambda ctx: self._drop_upload_in(ctx, upload_id, upload.bucket))

    # -- housekeeping --------------------------------------------------------------------------

    def sweep(self, older_than_seconds: float = ORPHAN_SECONDS) -> int:
        """Remove files that no object or part names, left by a crash mid-write.

        Only files older than `older_than_seconds` go, so an upload another
        process is writing now is never touched. Returns how many went.
        """
        if not os.path.isdir(self.root):
            return 0
        named: set[str] = set()
        with self._logs.env.begin() as txn:
            for db_name in (OBJECTS_DB, PARTS_DB):
                db = self._logs.database(db_name)
                if db is not None:
                    named.update(json.loads(v)["file"] for _, v in txn.cursor(db=db))
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in os.scandir(self.root):
            if not entry.is_dir():
                continue
            for file in os.scandir(entry.path):
                stale = file.stat().st_mtime < cutoff
                if stale and (entry.path == self._staging or file.name not in named):
                    os.unlink(file.path)
                    removed += 1
        return removed
