"""Resource tags: the checks and changes that streams, queues, topics and
delivery streams share.

Each resource keeps its tags as a `{"tags": {key: value}}` member of its
configuration and changes them in the commit that rewrites it; these are
the pure pieces of those changes. Tags are stored, never enforced.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from tidelog.segments.errors import InvalidArgument

# The limits SQS, SNS, Kinesis and Firehose share.
TAGS_MAX = 50
TAG_KEY_CHARS_MAX = 128
TAG_VALUE_CHARS_MAX = 256
RESERVED_KEY_PREFIX = "aws:"
# Besides Unicode letters (L*), digits (N*) and white space (Z*): the AWS tag
# pattern `[\p{L}\p{Z}\p{N}_.:/=+\-@%]*`, which Python's re cannot spell.
_TAG_PUNCTUATION = frozenset("_.:/=+-@%")


def _aws_chars(text: str) -> bool:
    return all(
        ch in _TAG_PUNCTUATION or unicodedata.category(ch)[0] in ("L", "N", "Z") for ch in text
    )


def check_tags(tags: Mapping[str, str], *, aws_charset: bool = False) -> None:
    """Raise InvalidArgument unless every key and value is a str, keys 1-128
    characters and values at most 256.

    With `aws_charset` (Firehose checks it), also the AWS tag character set
    (Unicode letters, digits, white space and `_ . : / = + - @ %`) and no key
    starting with the reserved `aws:`.
    """
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument("tag: keys and values must be str")
        if not 1 <= len(key) <= TAG_KEY_CHARS_MAX or len(value) > TAG_VALUE_CHARS_MAX:
            raise InvalidArgument(
                f"tag {key[:40]!r}: keys are 1-{TAG_KEY_CHARS_MAX} characters, "
                f"values up to {TAG_VALUE_CHARS_MAX}"
            )
        if not aws_charset:
            continue
        if key.startswith(RESERVED_KEY_PREFIX):
            raise InvalidArgument(f"tag {key[:40]!r}: the prefix 'aws:' is reserved")
        if not _aws_chars(key) or not _aws_chars(value):
            raise InvalidArgument(
                f"tag {key[:40]!r}: keys and values are Unicode letters, digits, "
                "white space and _ . : / = + - @ %"
            )


def merged_tags(
    config: Mapping[str, Any], tags: Mapping[str, str], too_many: str
) -> dict[str, str]:
    """The tags of `config` with `tags` added or replacing theirs. Raises
    InvalidArgument(`too_many`) if that makes more than TAGS_MAX."""
    merged = {**(config.get("tags") or {}), **tags}
    if len(merged) > TAGS_MAX:
        raise InvalidArgument(too_many)
    return merged


def remaining_tags(config: Mapping[str, Any], tag_keys: Sequence[str]) -> dict[str, str]:
    """The tags of `config` but those keyed by `tag_keys` (missing keys are ignored)."""
    return {k: v for k, v in (config.get("tags") or {}).items() if k not in tag_keys}


def tags_page(
    tags: Mapping[str, str], after: str | None, limit: int
) -> tuple[list[tuple[str, str]], bool]:
    """Up to `limit` tags in key order, starting after the key `after`, and
    whether more follow (Kinesis' and Firehose's ExclusiveStartTagKey paging)."""
    rest = sorted((k, v) for k, v in tags.items() if not after or k > after)
    return rest[:limit], len(rest) > limit


__all__ = [
    "TAGS_MAX",
    "TAG_KEY_CHARS_MAX",
    "TAG_VALUE_CHARS_MAX",
    "check_tags",
    "merged_tags",
    "remaining_tags",
    "tags_page",
]
