"""Limits on a hash list handed to `bank import` (issue 16, finding 10). Lists come from partners
and commissions, so they are treated as hostile input:

    read_list_text(path) -> str       a regular file, at most MAX_LIST_BYTES, UTF-8 (a BOM is dropped)
    check_case_id(case_id) -> str     printable, at most MAX_CASE_CHARS (it is shown in the console)
    degenerate(signal, hex) -> str|None   why a hash could never come from the hasher (e.g. all zeros)

A degenerate perceptual hash is the dangerous one: all zeros sits within matching distance of every
flat or near-blank image, so one line would flag innocent posts as known fakes. PDQ and pHash set
bits against the median of their coefficients, so a real hash has about half its bits set.
"""
from __future__ import annotations

import stat
from pathlib import Path

MAX_LIST_BYTES = 512 * 1024 * 1024  # ~7M PDQ lines
MAX_LIST_HASHES = 5_000_000
MAX_CASE_CHARS = 200
_BITS = {"pdq": 256, "phash": 64}


def read_list_text(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path}: not a regular file (a folder, device or pipe is never a hash list)")
    if info.st_size > MAX_LIST_BYTES:
        raise ValueError(f"{path}: {info.st_size:,} bytes is over the {MAX_LIST_BYTES:,} byte limit for a hash list")
    with path.open("rb") as fh:
        data = fh.read(MAX_LIST_BYTES + 1)  # the file may grow after the stat
    if len(data) > MAX_LIST_BYTES:
        raise ValueError(f"{path}: over the {MAX_LIST_BYTES:,} byte limit for a hash list")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text hash list ({exc})") from None
    if "\x00" in text:
        raise ValueError(f"{path}: holds NUL bytes; a hash list is plain text")
    return text.removeprefix("\ufeff")


def check_case_id(case_id: object) -> str:
    if not isinstance(case_id, str) or not case_id.strip():
        raise ValueError(f"a bank entry needs a case id, got {case_id!r}")
    if len(case_id) > MAX_CASE_CHARS:
        raise ValueError(f"case id too long: at most {MAX_CASE_CHARS} characters")
    if not case_id.isprintable():
        raise ValueError(f"case id {case_id[:60]!r} holds control characters")
    return case_id


def degenerate(signal: str, hash_hex: str) -> str | None:
    bits = _BITS.get(signal)
    if bits is None:  # sha256: any value is possible
        return None
    ones = int(hash_hex, 16).bit_count()
    if not bits // 4 <= ones <= 3 * bits // 4:
        return (f"degenerate {signal} hash ({ones} of {bits} bits set): the hasher sets about half, and this one "
                "would match flat or blank images")
    return None
