"""Exact Hamming search (storage.hashindex): equals brute force, survives save/load, grows."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from storage.hashindex import BinaryHashIndex, parse_hex_many, substring_radii, to_hex
from tests.conftest import fixtures_dir


def brute(items: list[tuple[int, str]], query: str, max_distance: int) -> list[tuple[int, int]]:
    """Reference answer from Python integers, independent of the index's numpy code."""
    q = int(query, 16)
    hits = [(i, (int(h, 16) ^ q).bit_count()) for i, h in items]
    return sorted(((i, d) for i, d in hits if d <= max_distance), key=lambda x: (x[1], x[0]))


def flip_hex(hash_hex: str, nbits: int, rng: np.random.Generator) -> str:
    bits = len(hash_hex) * 4
    value = int(hash_hex, 16)
    for b in rng.choice(bits, size=nbits, replace=False):
        value ^= 1 << int(b)
    return f"{value:0{len(hash_hex)}x}"


def random_hex(rng: np.random.Generator, bits: int) -> str:
    return rng.bytes(bits // 8).hex()


def planted_corpus(bits: int, n: int, max_d: int, seed: int):
    """n random hashes plus, per query, neighbours planted at every distance 0..max_d+3."""
    rng = np.random.default_rng(seed)
    items = [(1000 + 7 * i, random_hex(rng, bits)) for i in range(n)]
    queries = []
    next_id = 10**9
    for _ in range(12):
        q = random_hex(rng, bits)
        queries.append(q)
        for d in range(0, max_d + 4):
            items.append((next_id, flip_hex(q, d, rng)))
            next_id += 1
    # A few queries that are stored hashes with bits flipped (neighbours among the random ones).
    queries += [flip_hex(items[k][1], int(rng.integers(0, max_d + 1)), rng) for k in range(0, n, n // 6)]
    return items, queries


@pytest.mark.parametrize("bits,max_d", [(256, 31), (64, 10)])
@pytest.mark.parametrize("merge_threshold", [1, 10**9])  # all in the tables / all in the delta
def test_exact_against_brute_force(bits, max_d, merge_threshold):
    items, queries = planted_corpus(bits, 3000, max_d, seed=bits + merge_threshold % 7)
    index = BinaryHashIndex(bits, merge_threshold=merge_threshold)
    index.add([i for i, _ in items], [h for _, h in items])
    assert len(index) == len(items)
    for q in queries:
        for d in sorted({0, 1, max_d // 3, max_d // 2, max_d - 1, max_d}):
            assert index.search(q, d) == brute(items, q, d), (q, d)
    # Every planted neighbour at distance <= max_d is found at its exact distance.
    found = dict(index.search(queries[0], max_d))
    assert sorted(found.values()).count(0) >= 1 and max(found.values()) == max_d


def test_radii_satisfy_pigeonhole():
    for m in (3, 8):
        for d in range(0, 64):
            radii = substring_radii(d, m)
            # Any split of d+1.. bits that beats every radius would need more than d bits.
            assert sum(r + 1 for r in radii) == d + 1


def test_large_radius_falls_back_to_exact_scan():
    items, queries = planted_corpus(256, 500, 31, seed=3)
    index = BinaryHashIndex(256, merge_threshold=1)
    index.add([i for i, _ in items], [h for _, h in items])
    assert index.search(queries[0], 90) == brute(items, queries[0], 90)


def test_incremental_add_after_load_and_round_trip(tmp_path):
    items, queries = planted_corpus(256, 2000, 31, seed=11)
    first, rest = items[:1500], items[1500:]
    index = BinaryHashIndex(256, merge_threshold=64)
    index.add([i for i, _ in first], [h for _, h in first])  # goes into the tables
    index.add_one(*rest[0])  # stays in the delta buffer
    index.save(tmp_path / "idx")

    loaded = BinaryHashIndex.load(tmp_path / "idx", mmap=True)
    assert len(loaded) == 1501 and loaded.nbytes() > 0
    for q in queries:
        assert loaded.search(q, 31) == brute(first + rest[:1], q, 31)
    # Grow the mapped index one hash at a time: crosses the merge threshold several times.
    for i, h in rest[1:]:
        loaded.add_one(i, h)
    assert len(loaded) == len(items)
    for q in queries:
        assert loaded.search(q, 31) == brute(items, q, 31)
    assert loaded.search_many(queries[:3], 20) == [brute(items, q, 20) for q in queries[:3]]

    loaded.save(tmp_path / "idx")  # overwrite the files it is mapping
    again = BinaryHashIndex.load(tmp_path / "idx", mmap=False)
    assert len(again) == len(items)
    assert [again.search(q, 31) for q in queries] == [brute(items, q, 31) for q in queries]


def test_pickle_of_saved_index_carries_only_the_path(tmp_path):
    items, queries = planted_corpus(256, 3000, 31, seed=5)
    index = BinaryHashIndex(256, merge_threshold=100)
    index.add([i for i, _ in items], [h for _, h in items])
    in_memory = pickle.dumps(index)
    index.save(tmp_path / "idx")
    mapped = BinaryHashIndex.load(tmp_path / "idx")
    light = pickle.dumps(mapped)
    assert len(light) < 1000 < len(in_memory)
    clone = pickle.loads(light)
    assert clone.search(queries[1], 31) == pickle.loads(in_memory).search(queries[1], 31) == brute(items, queries[1], 31)


def test_bad_hex_names_the_value():
    index = BinaryHashIndex(256)
    good = "ab" * 32
    with pytest.raises(ValueError, match="zz"):
        index.add([1, 2], [good, "zz" + good[2:]])
    with pytest.raises(ValueError, match="'abc'"):
        index.add_one(3, "abc")
    with pytest.raises(ValueError, match="é"):
        index.search("é" + good[1:], 10)
    with pytest.raises(ValueError, match="0x"):
        parse_hex_many(["0x" + good[2:]], 256)
    assert len(index) == 0  # the failed batch added nothing
    with pytest.raises(ValueError, match="max_distance"):
        index.search(good, -1)
    with pytest.raises(ValueError, match="multiple of 64"):
        BinaryHashIndex(100)
    with pytest.raises(ValueError, match="2 ids for 1"):
        index.add_codes([1, 2], parse_hex_many([good], 256))


def test_hex_round_trip_upper_and_lower_case():
    h = "F162EB9DAAB170C0567FE3632D9A5548C5612982DD5E374A7424EBBC8A835C95"
    assert to_hex(parse_hex_many([h], 256)[0]) == h.lower()
    index = BinaryHashIndex(256)
    index.add_one(9, h)
    assert index.search(h.lower(), 0) == [(9, 0)]


def _read_hash_list(path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split(",")[0])
    return out


def test_upstream_pdq_hash_lists_match_brute_force():
    lists = fixtures_dir() / "pdq" / "hash_lists"
    haystack = _read_hash_list(lists / "haystack.txt")
    needles = _read_hash_list(lists / "needles.txt")
    assert len(haystack) > 1000 and len(needles) > 50
    items = list(enumerate(haystack))
    index = BinaryHashIndex(256, merge_threshold=256)
    index.add([i for i, _ in items], haystack)
    total = 0
    for needle in needles:
        got = index.search(needle, 31)
        assert got == brute(items, needle, 31)
        total += len(got)
    assert total > 0  # the upstream needles do have near-duplicates in the haystack
    # The upstream 64-bit lists exercise the pHash width the same way.
    long64 = _read_hash_list(lists / "long64.dat")
    items64 = list(enumerate(long64))
    index64 = BinaryHashIndex(64, merge_threshold=100)
    index64.add([i for i, _ in items64], long64)
    for q in long64[::37]:
        assert index64.search(q, 10) == brute(items64, q, 10)


def test_buckets_grow_with_the_index_and_answers_stay_exact(tmp_path):
    """A small index uses 2**16 buckets per table; past 2**19 hashes a merge re-buckets it
    (here 16 -> 17 prefix bits) and every answer still equals a brute-force scan, also after a
    save and load."""
    from storage.hashindex import MIN_PREFIX_BITS, parse_hex, parse_hex_many, prefix_bits_for

    assert prefix_bits_for(0) == prefix_bits_for(70_000) == MIN_PREFIX_BITS
    assert prefix_bits_for(600_000) == 17 and prefix_bits_for(10_020_000) == 20 == prefix_bits_for(10**9)
    rng = np.random.default_rng(5)
    hexes = [f"{v:016x}" for v in rng.integers(0, 2**63, size=600_000, dtype=np.int64).tolist()]
    codes = parse_hex_many(hexes, 64)
    index = BinaryHashIndex(64, merge_threshold=250_000)
    index.add_codes(np.arange(0, 300_000), codes[:300_000])
    assert index.p == MIN_PREFIX_BITS and index._offsets.shape == (3, 2**16 + 1)
    index.add_codes(np.arange(300_000, 600_000), codes[300_000:])
    assert index.p == 17 and index._offsets.shape == (3, 2**17 + 1) and len(index) == 600_000
    queries = [flip_hex(hexes[k], int(rng.integers(0, 6)), rng) for k in range(0, 600_000, 60_000)]
    queries += [random_hex(rng, 64) for _ in range(5)]

    def scan(query: str, d: int) -> list[tuple[int, int]]:
        dist = np.bitwise_count(codes[:, 0] ^ parse_hex(query, 64)[0]).astype(np.int64)
        hits = np.flatnonzero(dist <= d)
        return sorted(zip(hits.tolist(), dist[hits].tolist()), key=lambda h: (h[1], h[0]))

    loaded = BinaryHashIndex.load(index.save(tmp_path / "idx"))
    assert loaded.p == 17
    found = 0
    for q in queries:
        for d in (3, 10):
            expected = scan(q, d)
            found += len(expected)
            assert index.search(q, d) == expected and loaded.search(q, d) == expected
    assert found >= 10  # the flipped copies of stored hashes are found
