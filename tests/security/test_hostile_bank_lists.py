"""Issue 16, finding 10: hostile `bank import` lists. A device or folder instead of a file, an
oversized list, NUL bytes, degenerate hashes that would flag every blank image, and case ids with
control characters: each refused with a message naming it, and nothing imported."""
from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from storage import hash_list_limits
from storage.bank import KnownFakesBank

REAL = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6339c4e9c9b22"  # half its bits set


def _import(store, tmp_path, text: str | bytes, **kw):
    listing = tmp_path / "list.txt"
    (listing.write_bytes if isinstance(text, bytes) else listing.write_text)(text)
    return KnownFakesBank(store).import_hash_list(listing, case_id=kw.get("case", "C1"), signal=kw.get("signal", "pdq"))


def test_degenerate_hashes_are_refused(store, tmp_path):
    for bad in ("0" * 64, "f" * 64, "0" * 56 + "ffffffff"):
        with pytest.raises(ValueError, match="degenerate pdq hash"):
            _import(store, tmp_path, f"{REAL}\n{bad}\n")
    with pytest.raises(ValueError, match="degenerate phash hash"):
        _import(store, tmp_path, "0000000000000000\n", signal="phash")
    assert len(KnownFakesBank(store)) == 0
    assert _import(store, tmp_path, "\ufeff" + REAL + "\n").added == 1  # a BOM is not a bad line


def test_files_that_are_not_lists_are_refused(store, tmp_path, monkeypatch):
    bank = KnownFakesBank(store)
    for path, message in (("/dev/zero", "not a regular file"), (str(tmp_path), "not a regular file")):
        with pytest.raises(ValueError, match=message):
            bank.import_hash_list(path, case_id="C1")
    with pytest.raises(ValueError, match="NUL"):
        _import(store, tmp_path, REAL.encode() + b"\n\x00\n")
    monkeypatch.setattr(hash_list_limits, "MAX_LIST_BYTES", 1000)
    with pytest.raises(ValueError, match="byte limit"):
        _import(store, tmp_path, (REAL + "\n") * 40)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):  # would block forever on read
        bank.import_hash_list(fifo, case_id="C1")


def test_case_ids_with_control_characters_are_refused(store, tmp_path):
    for case in ("C1\x1b[31mRED", "x" * 500, "line\nbreak"):
        with pytest.raises(ValueError, match="case id"):
            _import(store, tmp_path, REAL + "\n", case=case)


def test_cli_says_what_is_wrong(store, tmp_path):
    result = CliRunner().invoke(app, ["bank", "import", "/dev/zero", "--case", "C1", "--db", store.url])
    assert result.exit_code == 2 and "not a regular file" in result.output
