"""CRC32C (Castagnoli), the checksum of every record.

Two implementations compute the same values: the `crc32c` package (the CPU's
CRC32 instruction where there is one) and `crcmod` (a table-driven C
extension, about 10x slower on 1 KiB records). `crc32c` is used when it
imports; `crcmod` is the portable fallback. tests/test_format.py checks that
both agree on the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import crcmod.predefined

Buffer = bytes | bytearray | memoryview

crcmod_crc32c: Callable[[Buffer], int] = crcmod.predefined.mkPredefinedCrcFun("crc-32c")

hardware_crc32c: Callable[[Buffer], int] | None = None
try:
    import crc32c as _crc32c_package

    hardware_crc32c = _crc32c_package.crc32c
except ImportError:  # pragma: no cover - crc32c is a declared dependency
    pass

crc32c: Callable[[Buffer], int] = hardware_crc32c or crcmod_crc32c
IMPLEMENTATION = "crc32c" if hardware_crc32c is not None else "crcmod"
