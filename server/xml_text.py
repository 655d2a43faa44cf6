"""Text in the query protocol's XML replies: escaped, and only XML's characters.

XML 1.0 cannot carry U+0000-U+0008, U+000B, U+000C, U+000E-U+001F, lone
surrogates, U+FFFE or U+FFFF, not even as character references: a reply
holding one is not XML, and botocore fails to parse it. What users send is
refused where SQS refuses it (tidelog.queues.check_text); what reaches a
reply anyway (a body stored as bytes through the library or STOMP, a name
or tag set through the library) is written with U+FFFD in its place.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_text(text: str) -> str:
    """`text` with U+FFFD for each character XML (and so SQS) cannot carry."""
    if _NOT_XML.search(text) is None:
        return text
    return _NOT_XML.sub("\ufffd", text)


def xml_escape(text: str) -> str:
    """`text` as XML character data: escaped (& < >) and with sqs_text's replacements."""
    return escape(sqs_text(text))


__all__ = ["sqs_text", "xml_escape"]
