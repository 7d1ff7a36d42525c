"""Known-fakes bank on SQLite and PostgreSQL: add, match, idempotency, hash-list import/export."""
from __future__ import annotations

import numpy as np
import pytest

from storage.bank import PDQ_MAX_DISTANCE, PHASH_MAX_DISTANCE, BankEntry, KnownFakesBank
from storage.db import Store
from tests.conftest import fixtures_dir

PDQ = "f162eb9daab170c0567fe3632d9a5548c5612982dd5e374a7424ebbc8a835c95"
MEDIA = "ab" * 32


def flip(hash_hex: str, bits: list[int]) -> str:
    value = int(hash_hex, 16)
    for b in bits:
        value ^= 1 << b
    return f"{value:0{len(hash_hex)}x}"


def test_add_match_and_idempotency(store):
    bank = KnownFakesBank(store)
    assert bank.add("pdq", PDQ, case_id="NEC-2026-0042", source="review", media_sha256=MEDIA, note="rally video")
    assert not bank.add("pdq", PDQ.upper(), case_id="NEC-2026-9999", source="verdict")  # same hash: no-op
    assert bank.add("phash", "8f373714acfcf4d0", case_id="NEC-2026-0042", source="verdict")
    assert bank.add("sha256", MEDIA, case_id="NEC-2026-0042", source="review")
    assert len(bank) == 3

    near = flip(PDQ, list(range(0, 60, 3)))  # 20 bits away
    [hit] = bank.match("pdq", near)
    assert (hit.case_id, hit.distance, hit.media_sha256, hit.hash_hex) == ("NEC-2026-0042", 20, MEDIA, PDQ)
    assert hit.reason == "matches known fake NEC-2026-0042 at distance 20"
    assert bank.match("pdq", near, max_distance=19) == []
    assert bank.match("pdq", flip(PDQ, list(range(PDQ_MAX_DISTANCE + 1)))) == []  # 32 bits: beyond default
    assert [m.distance for m in bank.match("phash", flip("8f373714acfcf4d0", [1, 40]))] == [2]
    assert bank.match("phash", flip("8f373714acfcf4d0", list(range(PHASH_MAX_DISTANCE + 1)))) == []
    assert [m.distance for m in bank.match("sha256", MEDIA.upper())] == [0]
    assert bank.match("sha256", "cd" * 32) == []

    # Added after the index was built: visible at once, also to a second bank on the same DB.
    assert bank.add("pdq", flip(PDQ, [7]), case_id="NEC-2026-0043", source="verdict")
    assert [(m.case_id, m.distance) for m in bank.match("pdq", PDQ)] == [("NEC-2026-0042", 0), ("NEC-2026-0043", 1)]
    other = KnownFakesBank(store)
    assert other.add("pdq", flip(PDQ, [200, 201]), case_id="NEC-2026-0044", source="review")
    assert [m.case_id for m in bank.match("pdq", PDQ)] == ["NEC-2026-0042", "NEC-2026-0043", "NEC-2026-0044"]

    with store.session() as s:
        row = s.get(BankEntry, hit.entry_id)
    assert row.source == "review" and row.note == "rally video" and row.added_at is not None


def test_bad_input_is_rejected(store):
    bank = KnownFakesBank(store)
    with pytest.raises(ValueError, match="'nothex'"):
        bank.add("pdq", "nothex", case_id="C1", source="review")
    with pytest.raises(ValueError, match="unknown signal 'md5'"):
        bank.add("md5", PDQ, case_id="C1", source="review")
    with pytest.raises(ValueError, match="unknown bank source"):
        bank.add("pdq", PDQ, case_id="C1", source="rumour")
    with pytest.raises(ValueError, match="case id"):
        bank.add("pdq", PDQ, case_id=" ", source="review")
    with pytest.raises(ValueError, match="phash"):
        bank.match("phash", PDQ)
    assert len(bank) == 0


def test_import_export_round_trip(store, tmp_path):
    rng = np.random.default_rng(7)
    hashes = [rng.bytes(32).hex() for _ in range(40)]
    listing = tmp_path / "shared.txt"
    listing.write_text(
        "# hashes shared by a partner\n\n"
        + "\n".join(f"{h},{90 + i % 10}" if i % 2 else h.upper() for i, h in enumerate(hashes))
        + f"\n{hashes[0]}\n"  # repeated line
    )
    bank = KnownFakesBank(store)
    assert bank.add("pdq", hashes[5], case_id="NEC-2026-0001", source="review")
    assert bank.match("pdq", hashes[3]) == []  # builds the index before the import

    result = bank.import_hash_list(listing, case_id="PARTNER-7")
    assert (result.added, result.skipped_existing) == (39, 2)
    assert len(bank) == 40
    [hit] = bank.match("pdq", flip(hashes[3], [0, 100, 255]))
    assert (hit.case_id, hit.distance) == ("PARTNER-7", 3)
    assert bank.match("pdq", hashes[5])[0].case_id == "NEC-2026-0001"  # existing entry kept its case

    out = tmp_path / "export" / "bank.txt"
    assert bank.export_hash_list(out) == 40
    assert sorted(out.read_text().split()) == sorted(hashes)
    assert bank.export_hash_list(tmp_path / "none.txt", signal="phash") == 0

    # The exported list imports into an empty bank on the other database kind unchanged.
    again = KnownFakesBank(Store(f"sqlite:///{tmp_path / 'second.db'}"))
    assert again.import_hash_list(out, case_id="PARTNER-7") == type(result)(added=40, skipped_existing=0)
    assert again.import_hash_list(out, case_id="PARTNER-7").skipped_existing == 40
    assert again.export_hash_list(tmp_path / "second.txt") == 40


def test_bad_line_imports_nothing(store, tmp_path):
    bank = KnownFakesBank(store)
    good = "\n".join(flip(PDQ, [i]) for i in range(10))
    bad = tmp_path / "bad.txt"
    bad.write_text(good + "\n" + PDQ[:-1] + "g\n" + PDQ + "\n")
    with pytest.raises(ValueError) as err:
        bank.import_hash_list(bad, case_id="C9")
    assert str(bad) in str(err.value) and "line 11" in str(err.value)
    bad_quality = tmp_path / "quality.txt"
    bad_quality.write_text(good + "\n" + PDQ + ",high\n")
    with pytest.raises(ValueError, match="line 11"):
        bank.import_hash_list(bad_quality, case_id="C9")
    assert len(bank) == 0
    assert bank.match("pdq", PDQ) == []


def test_upstream_pdq_list_imports_and_matches(store):
    haystack = fixtures_dir() / "pdq" / "hash_lists" / "haystack.txt"
    needles = [line.strip() for line in (fixtures_dir() / "pdq" / "hash_lists" / "needles.txt").read_text().splitlines() if line.strip()]
    bank = KnownFakesBank(store)
    result = bank.import_hash_list(haystack, case_id="UPSTREAM")
    assert result.added == len(bank) > 1000
    banked = [line.strip() for line in haystack.read_text().splitlines() if line.strip()]
    for needle in needles[:25]:
        got = [(m.hash_hex, m.distance) for m in bank.match("pdq", needle)]
        q = int(needle, 16)
        expected = sorted({(h, (int(h, 16) ^ q).bit_count()) for h in banked if (int(h, 16) ^ q).bit_count() <= 31}, key=lambda x: x[1])
        assert sorted(got, key=lambda x: (x[1], x[0])) == sorted(expected, key=lambda x: (x[1], x[0]))
        assert all(m.reason.startswith("matches known fake UPSTREAM at distance ") for m in bank.match("pdq", needle))
