"""Exact Hamming-distance search over millions of binary hashes (PDQ 256-bit, pHash 64-bit).

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast search in Hamming space with multi-index
hashing", CVPR 2012). Each hash is cut into ``m`` disjoint substrings (256-bit PDQ: 8 x 32 bits;
64-bit pHash: 22 + 21 + 21 bits). Every substring has its own table: the ids of all hashes
grouped ("bucketed") by the top ``p`` bits of that substring (16 for a small index, growing with
it to 20 from 16M hashes), the remaining low bits kept beside each id so a bucket can be filtered
without touching the full hash.

Why the answer is exact (pigeonhole). The substrings partition the bits, so the Hamming distance
of two hashes is the sum of their substring distances. Write the radius as ``d = a*m + b`` with
``0 <= b < m``. If every one of the first ``b + 1`` substrings differed by ``>= a + 1`` bits and
every other one by ``>= a`` bits, the total would be ``>= a*m + b + 1 > d``. Hence any hash within
``d`` of the query matches the query within ``a`` bits on one of the first ``b + 1`` substrings, or
within ``a - 1`` bits on one of the others. A query therefore enumerates, per substring, every
bucket whose top bits lie within that radius of the query's top bits, keeps the entries whose
low bits still fit in the radius, and verifies each candidate's full distance. Nothing within
``d`` can be missed, and nothing beyond ``d`` is returned: results equal a brute-force scan.
For 256-bit PDQ at ``d = 31`` (a = 3, b = 7) every substring is searched within 3 bits; for
64-bit pHash at ``d = 10`` (m = 3, a = 3, b = 1) the first two within 3 bits, the third within 2. Radii whose per-substring radius would
exceed ``MAX_PROBE_RADIUS`` are answered by an exact linear scan instead.

Memory for 10M PDQ hashes: codes 320 MB + ids 80 MB + 8 tables x (uint32 id + uint16 low bits)
480 MB + bucket offsets 32 MB = 915 MB (``nbytes()``, measured by bench/index.py). 10M pHashes:
80 + 80 + 3 x 60 + 12 = ~350 MB. Below 1M hashes the offsets shrink with the index (2**16
buckets per table: 2 MB for PDQ), so memory is ~90 bytes per PDQ hash from the start.

Updates. The bulk tables are immutable sorted arrays; new hashes go to a small "delta" buffer that
is scanned linearly, and once it holds ``merge_threshold`` hashes it is merged into the tables
(an O(N) ``np.insert`` per table, no re-sort of the existing data). ``add_one`` is therefore O(1)
amortised and never rebuilds the index.

Sharing between processes. ``save(dir)`` writes plain ``.npy`` files; ``load(dir, mmap=True)``
maps them read-only so many workers on one host share the same page-cache pages. Pickling an
index that is backed by an unchanged saved directory sends only the path.

Not thread-safe: callers that add and search from several threads must lock around it.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
#: Above this many flipped bits per substring, enumerating buckets costs more than a linear scan.
MAX_PROBE_RADIUS = 4
DEFAULT_MERGE_THRESHOLD = 65_536

_HEX_RE = re.compile(r"[0-9a-fA-F]+")
# ASCII byte -> nibble value; 255 marks a byte that is not a hex digit.
_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i

_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(a: np.ndarray) -> np.ndarray:
    """Bit count per element (numpy >= 2 has a native ufunc; older numpy uses a byte table)."""
    native = getattr(np, "bitwise_count", None)
    if native is not None:
        return native(a)
    return _BYTE_POP[a.view(np.uint8)].reshape(*a.shape, a.itemsize).sum(axis=-1, dtype=np.uint8)


PREFIX_BITS = 20  # 2**20 buckets per substring table at full size (16M hashes and up)
#: Fewest prefix bits: a small index gets 2**16 buckets per table (PDQ: 2 MB of offsets instead
#: of 32 MB). Not fewer, so a substring's low bits (32 - p for PDQ) still fit the uint16 column.
MIN_PREFIX_BITS = 16


def prefix_bits_for(n: int) -> int:
    """Bucket prefix bits for an index of n hashes: about 4-8 hashes per bucket, within
    [MIN_PREFIX_BITS, PREFIX_BITS]. The offsets tables cost 4 bytes x 2**p per substring: a fixed
    2**20 put a 44 MB step into a campaign's memory at its dedup index's first merge."""
    return max(MIN_PREFIX_BITS, min(PREFIX_BITS, int(n).bit_length() - 3))


def _layout(bits: int) -> list[int]:
    """Substring lengths for a hash width (each fits inside one 64-bit word).

    256-bit PDQ: 8 x 32 bits. With 2**20 buckets per table there are ~10 ids per bucket at 10M
    hashes, and d <= 31 means radius 3 per substring: C(20, <=3) = 1351 buckets, ~13k entries.
    64-bit pHash: 22 + 21 + 21 bits. d <= 10 gives radii 3, 3, 2; four 16-bit substrings would
    need far fuller buckets (10M / 65536 = 150 ids each) and be barely faster than a scan.
    """
    if not isinstance(bits, int) or bits <= 0 or bits % 64:
        raise ValueError(f"hash width must be a positive multiple of 64 bits, got {bits!r}")
    if bits == 64:
        return [22, 21, 21]
    return [32] * (bits // 32)


def parse_hex(hash_hex: str, bits: int) -> np.ndarray:
    """One hex hash -> its words as uint64 (native order); ValueError naming the value if bad."""
    if not isinstance(hash_hex, str) or len(hash_hex) != bits // 4 or not _HEX_RE.fullmatch(hash_hex):
        raise ValueError(f"not a {bits}-bit hex hash ({bits // 4} hex digits): {hash_hex!r}")
    return np.frombuffer(bytes.fromhex(hash_hex), dtype=np.uint64)


def parse_hex_many(hashes_hex: Sequence[str], bits: int) -> np.ndarray:
    """Many hex hashes -> (n, bits/64) uint64, decoded in one vectorised pass."""
    nhex = bits // 4
    items = list(hashes_hex)
    for h in items:
        if not isinstance(h, str) or len(h) != nhex:
            raise ValueError(f"not a {bits}-bit hex hash ({nhex} hex digits): {h!r}")
    if not items:
        return np.empty((0, bits // 64), dtype=np.uint64)
    try:
        raw = "".join(items).encode("ascii")
    except UnicodeEncodeError:
        bad = next(h for h in items if not h.isascii())
        raise ValueError(f"not a {bits}-bit hex hash ({nhex} hex digits): {bad!r}") from None
    nib = _NIBBLE[np.frombuffer(raw, dtype=np.uint8)]
    wrong = np.flatnonzero(nib == 255)
    if wrong.size:
        raise ValueError(f"not a {bits}-bit hex hash ({nhex} hex digits): {items[int(wrong[0]) // nhex]!r}")
    pairs = nib.reshape(len(items), nhex // 2, 2)
    octets = (pairs[:, :, 0] << 4) | pairs[:, :, 1]
    return np.ascontiguousarray(octets).view(np.uint64)


def to_hex(words: np.ndarray) -> str:
    """The inverse of ``parse_hex``."""
    return np.ascontiguousarray(words, dtype=np.uint64).tobytes().hex()


def substring_radii(max_distance: int, m: int) -> list[int]:
    """Per-substring search radius that guarantees exactness (see the module docstring)."""
    a, b = divmod(max_distance, m)
    return [a if j <= b else a - 1 for j in range(m)]


class BinaryHashIndex:
    """Exact Hamming search over ``bits``-wide hashes keyed by integer ids.

    Ids are opaque int64 labels chosen by the caller; they are not deduplicated (adding one id
    twice returns it twice).
    """

    def __init__(self, bits: int = 256, *, merge_threshold: int = DEFAULT_MERGE_THRESHOLD):
        self.bits = bits
        self.lengths = _layout(bits)
        self.m = len(self.lengths)
        self.words = bits // 64
        self._starts = [sum(self.lengths[:j]) for j in range(self.m)]
        if merge_threshold < 1:
            raise ValueError(f"merge_threshold must be >= 1, got {merge_threshold}")
        self.merge_threshold = merge_threshold
        # Bulk part: rows 0..n_main-1.
        self._codes = np.empty((0, self.words), dtype=np.uint64)
        self._ids = np.empty(0, dtype=np.int64)
        self._offsets: np.ndarray | None = None  # (m, 2**p + 1) uint32, bucket start per prefix
        self._rows: list[np.ndarray] = []  # per substring: row numbers grouped by bucket (uint32)
        self._lows: list[np.ndarray] = []  # per substring: low bits beside each row (uint16)
        # Delta part: appended hashes waiting for the next merge.
        self._dcodes = np.empty((0, self.words), dtype=np.uint64)
        self._dids = np.empty(0, dtype=np.int64)
        self._dn = 0
        self._source: tuple[str, bool] | None = None  # (dir, mmap) while unchanged since load
        self._broken: str | None = None  # set while a merge is in progress
        self._set_prefix_bits(MIN_PREFIX_BITS)

    # -- construction ----------------------------------------------------------------------
    def _set_prefix_bits(self, p: int) -> None:
        """Use 2**p buckets per substring table (only while the tables are empty)."""
        if not MIN_PREFIX_BITS <= p <= PREFIX_BITS:
            raise ValueError(f"prefix bits must be in [{MIN_PREFIX_BITS}, {PREFIX_BITS}], got {p}")
        self.p = p
        # Bits of each substring below its bucket prefix, kept beside each row (uint16).
        self.low_bits = [length - p for length in self.lengths]
        self._masks, self._mask_count = self._flip_masks()
        self._mask_weight = self._mask_weights(len(self._masks))

    def _flip_masks(self) -> tuple[np.ndarray, list[int]]:
        """All p-bit masks with <= MAX_PROBE_RADIUS set bits, ordered by weight, and the count
        of masks of weight <= r for each r (so the masks for radius r are a prefix)."""
        out: list[int] = []
        counts = []
        for w in range(MAX_PROBE_RADIUS + 1):
            for bitset in combinations(range(self.p), w):
                out.append(sum(1 << b for b in bitset))
            counts.append(len(out))
        return np.array(out, dtype=np.int64), counts

    def _mask_weights(self, n: int) -> np.ndarray:
        weights = np.zeros(n, dtype=np.int64)
        for w in range(1, MAX_PROBE_RADIUS + 1):
            weights[self._mask_count[w - 1] : min(n, self._mask_count[w])] = w
        return weights

    def _substring(self, codes: np.ndarray, j: int) -> np.ndarray:
        """Substring j of every code as int64 (substrings never straddle a 64-bit word)."""
        bit, length = self._starts[j], self.lengths[j]
        word = codes[:, bit // 64]
        return ((word >> np.uint64(bit % 64)) & np.uint64((1 << length) - 1)).astype(np.int64)

    def add(self, ids: Sequence[int], hashes_hex: Sequence[str]) -> None:
        """Add hashes (hex) under ids; ValueError naming the first bad hash."""
        codes = parse_hex_many(hashes_hex, self.bits)
        self.add_codes(ids, codes)

    def add_codes(self, ids: Sequence[int] | np.ndarray, codes: np.ndarray) -> None:
        """Add already decoded hashes: ``codes`` is (n, bits/64) uint64 as ``parse_hex`` makes.
        Large batches go straight into the tables; small ones into the delta buffer. A batch
        that builds an empty index is kept without copying (10M PDQ codes are 320 MB), so the
        caller must not modify ``codes`` afterwards."""
        codes = np.asarray(codes)
        if codes.dtype != np.uint64 or codes.ndim != 2 or codes.shape[1] != self.words:
            raise ValueError(f"codes must be (n, {self.words}) uint64, got {codes.dtype} {codes.shape}")
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if id_arr.shape[0] != codes.shape[0]:
            raise ValueError(f"{id_arr.shape[0]} ids for {codes.shape[0]} hashes")
        if codes.shape[0] == 0:
            return
        self._check_usable()
        self._source = None
        if self._dn + codes.shape[0] >= self.merge_threshold:
            self._merge(
                np.concatenate([self._dcodes[: self._dn], codes]) if self._dn else codes,
                np.concatenate([self._dids[: self._dn], id_arr]) if self._dn else id_arr,
            )
            self._dn = 0
            self._dcodes = np.empty((0, self.words), dtype=np.uint64)
            self._dids = np.empty(0, dtype=np.int64)
            return
        self._reserve_delta(self._dn + codes.shape[0])
        self._dcodes[self._dn : self._dn + codes.shape[0]] = codes
        self._dids[self._dn : self._dn + codes.shape[0]] = id_arr
        self._dn += codes.shape[0]

    def add_one(self, id: int, hash_hex: str) -> None:
        """Add one hash without rebuilding anything (it goes to the delta buffer)."""
        words = parse_hex(hash_hex, self.bits)
        self._check_usable()
        if self._dn + 1 >= self.merge_threshold:
            self.add_codes([id], words.reshape(1, -1))
            return
        self._source = None
        self._reserve_delta(self._dn + 1)
        self._dcodes[self._dn] = words
        self._dids[self._dn] = id
        self._dn += 1

    def _reserve_delta(self, need: int) -> None:
        if need <= self._dcodes.shape[0]:
            return
        cap = min(max(need, 2 * self._dcodes.shape[0], 1024), self.merge_threshold)
        codes = np.empty((cap, self.words), dtype=np.uint64)
        ids = np.empty(cap, dtype=np.int64)
        codes[: self._dn] = self._dcodes[: self._dn]
        ids[: self._dn] = self._dids[: self._dn]
        self._dcodes, self._dids = codes, ids

    def _merge(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Insert new rows into every substring table, keeping each bucket's rows contiguous.

        Tables are replaced one at a time so the transient extra memory is one table (~60 MB at
        10M), not a second copy of the index. A failure part-way (out of memory) leaves the
        tables inconsistent, so the index then refuses further use until reloaded.
        """
        base = self._codes.shape[0]
        if base + codes.shape[0] >= 2**32:
            raise ValueError("index is limited to 2**32 - 1 hashes (row numbers are uint32)")
        p = prefix_bits_for(base + codes.shape[0])
        if p != self.p:
            # The index has outgrown its buckets (at most PREFIX_BITS - MIN_PREFIX_BITS times,
            # each once the size has doubled, so together about one more build): re-bucket it all.
            if base:
                codes, ids = np.concatenate([self._codes, codes]), np.concatenate([self._ids, ids])
                base = 0
            self._offsets, self._rows, self._lows = None, [], []
            self._codes = np.empty((0, self.words), dtype=np.uint64)
            self._ids = np.empty(0, dtype=np.int64)
            self._set_prefix_bits(p)
        self._broken = "a merge into this index failed part-way; load it again from disk"
        nbuckets = 1 << self.p
        offsets = np.zeros((self.m, nbuckets + 1), dtype=np.uint32)
        if self._offsets is None:
            self._rows, self._lows = [None] * self.m, [None] * self.m  # type: ignore[list-item]
        for j in range(self.m):
            low_bits = self.low_bits[j]
            key = self._substring(codes, j)
            top = key >> low_bits
            order = np.argsort(top, kind="stable")
            top_sorted = top[order]
            new_rows = (order + base).astype(np.uint32)
            new_lows = (key[order] & ((1 << low_bits) - 1)).astype(np.uint16) if low_bits else None
            del key, top, order
            grown = np.zeros(nbuckets + 1, dtype=np.int64)
            np.cumsum(np.bincount(top_sorted, minlength=nbuckets), out=grown[1:])
            if self._offsets is None:
                self._rows[j], self._lows[j] = new_rows, new_lows
                offsets[j] = grown
            else:
                # Insert each new row at the end of its bucket: np.insert places equal positions
                # in the order given, so buckets stay contiguous and row-ordered.
                at = self._offsets[j][top_sorted + 1].astype(np.int64)
                self._rows[j] = np.insert(self._rows[j], at, new_rows)
                if low_bits:
                    self._lows[j] = np.insert(self._lows[j], at, new_lows)
                offsets[j] = self._offsets[j].astype(np.int64) + grown
        self._codes = np.concatenate([self._codes, codes]) if base else np.ascontiguousarray(codes)
        self._ids = np.concatenate([self._ids, ids]) if base else np.ascontiguousarray(ids)
        self._offsets = offsets
        self._broken = None

    def _check_usable(self) -> None:
        if self._broken:
            raise RuntimeError(self._broken)

    def compact(self) -> None:
        """Merge the delta buffer into the tables now (e.g. before ``save`` for many readers)."""
        if self._dn:
            self._source = None
            self._merge(self._dcodes[: self._dn].copy(), self._dids[: self._dn].copy())
            self._dn = 0
            self._dcodes = np.empty((0, self.words), dtype=np.uint64)
            self._dids = np.empty(0, dtype=np.int64)

    # -- search ----------------------------------------------------------------------------
    def search(self, hash_hex: str, max_distance: int) -> list[tuple[int, int]]:
        """(id, distance) of every hash within ``max_distance`` bits, nearest first, ties by id."""
        if not isinstance(max_distance, (int, np.integer)) or max_distance < 0:
            raise ValueError(f"max_distance must be a non-negative integer, got {max_distance!r}")
        query = parse_hex(hash_hex, self.bits)
        return self.search_codes(query, int(max_distance))

    def search_many(self, hashes_hex: Sequence[str], max_distance: int) -> list[list[tuple[int, int]]]:
        """``search`` for each hash, in order."""
        return [self.search(h, max_distance) for h in hashes_hex]

    def search_codes(self, query: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
        """``search`` for an already decoded query (bits/64 uint64 words)."""
        self._check_usable()
        ids_parts, dist_parts = [], []
        if self._codes.shape[0]:
            rows = self._candidate_rows(query, max_distance)
            if rows is None:  # radius too large for probing: exact linear scan
                dist = self._distances(self._codes, query)
                rows = np.flatnonzero(dist <= max_distance)
                dist = dist[rows]
            else:
                dist = self._distances(self._codes[rows], query)
                keep = dist <= max_distance
                rows, dist = rows[keep], dist[keep]
            ids_parts.append(self._ids[rows])
            dist_parts.append(dist)
        if self._dn:
            dist = self._distances(self._dcodes[: self._dn], query)
            keep = np.flatnonzero(dist <= max_distance)
            ids_parts.append(self._dids[keep])
            dist_parts.append(dist[keep])
        if not ids_parts:
            return []
        ids = np.concatenate(ids_parts)
        dist = np.concatenate(dist_parts)
        order = np.lexsort((ids, dist))
        return list(zip(ids[order].tolist(), dist[order].tolist()))

    def _distances(self, codes: np.ndarray, query: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
        """Hamming distance of each code to the query, in chunks to bound temporary memory."""
        out = np.empty(codes.shape[0], dtype=np.int64)
        for start in range(0, codes.shape[0], chunk):
            block = codes[start : start + chunk]
            out[start : start + block.shape[0]] = _popcount(block ^ query).sum(axis=1, dtype=np.int64)
        return out

    def _candidate_rows(self, query: np.ndarray, max_distance: int) -> np.ndarray | None:
        """Rows that share a near substring with the query (a superset of the true matches)."""
        radii = substring_radii(max_distance, self.m)
        if max(radii) > MAX_PROBE_RADIUS:
            return None
        qcodes = query.reshape(1, -1)
        parts = []
        for j, r in enumerate(radii):
            if r < 0:
                continue
            qkey = int(self._substring(qcodes, j)[0])
            n = self._mask_count[r]  # masks of weight <= r are a prefix
            low_bits = self.low_bits[j]
            buckets = (qkey >> low_bits) ^ self._masks[:n]
            offs = self._offsets[j]
            starts = offs[buckets].astype(np.int64)
            lens = offs[buckets + 1].astype(np.int64) - starts
            nonempty = lens > 0
            starts, lens = starts[nonempty], lens[nonempty]
            total = int(lens.sum())
            if total == 0:
                continue
            # Flatten the bucket ranges into one index array without a Python loop.
            pos = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(total)
            if low_bits:
                budget = np.repeat(r - self._mask_weight[:n][nonempty], lens)
                low_dist = _popcount(self._lows[j][pos] ^ np.uint16(qkey & ((1 << low_bits) - 1)))
                pos = pos[low_dist <= budget]
            parts.append(self._rows[j][pos])
        if not parts:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(parts)).astype(np.int64)

    # -- size, persistence -----------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._codes.shape[0]) + self._dn

    def nbytes(self) -> int:
        """Bytes held by codes, ids and every index structure (mapped files included)."""
        arrays = [self._codes, self._ids, self._dcodes, self._dids, self._masks, *self._rows]
        arrays += [a for a in self._lows if a is not None]
        if self._offsets is not None:
            arrays.append(self._offsets)
        return int(sum(a.nbytes for a in arrays))

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the index as .npy files plus meta.json (written last, so a reader never sees a
        half-written index); each file is replaced atomically, also while mapped by readers."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "codes": self._codes,
            "ids": self._ids,
            "delta_codes": self._dcodes[: self._dn],
            "delta_ids": self._dids[: self._dn],
        }
        if self._offsets is not None:
            arrays["offsets"] = self._offsets
            for j in range(self.m):
                arrays[f"rows_{j}"] = self._rows[j]
                if self.low_bits[j]:
                    arrays[f"lows_{j}"] = self._lows[j]
        for name, arr in arrays.items():
            _atomic_write(target / f"{name}.npy", lambda fh, a=arr: np.save(fh, np.ascontiguousarray(a)))
        meta = {
            "format": FORMAT_VERSION,
            "bits": self.bits,
            "substring_bits": self.lengths,
            "prefix_bits": self.p,
            "n_main": int(self._codes.shape[0]),
            "n_delta": self._dn,
            "merge_threshold": self.merge_threshold,
        }
        _atomic_write(target / "meta.json", lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str], mmap: bool = True) -> "BinaryHashIndex":
        """Open a saved index; with ``mmap`` the bulk arrays are mapped read-only and shared
        between processes (a later add copies what it changes into private memory)."""
        source = Path(directory)
        try:
            meta = json.loads((source / "meta.json").read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no hash index at {source} (meta.json missing)") from None
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"hash index at {source} has format {meta.get('format')!r}, expected {FORMAT_VERSION}")
        index = cls(meta["bits"], merge_threshold=meta["merge_threshold"])
        if index.lengths != meta["substring_bits"] or not MIN_PREFIX_BITS <= meta["prefix_bits"] <= PREFIX_BITS:
            raise ValueError(f"hash index at {source} uses a layout this version does not build")
        index._set_prefix_bits(meta["prefix_bits"])

        def read(name: str, mapped: bool) -> np.ndarray:
            return np.load(source / f"{name}.npy", mmap_mode="r" if mapped else None)

        if meta["n_main"]:
            index._codes, index._ids = read("codes", mmap), read("ids", mmap)
            index._offsets = read("offsets", mmap)
            index._rows = [read(f"rows_{j}", mmap) for j in range(index.m)]
            index._lows = [read(f"lows_{j}", mmap) if index.low_bits[j] else None for j in range(index.m)]
        if meta["n_delta"]:
            index._dcodes, index._dids = read("delta_codes", False), read("delta_ids", False)
            index._dn = meta["n_delta"]
        if len(index) != meta["n_main"] + meta["n_delta"] or index._codes.shape[0] != meta["n_main"]:
            raise ValueError(f"hash index at {source} is inconsistent with its meta.json")
        index._source = (str(source.resolve()), mmap)
        return index

    def __getstate__(self) -> dict[str, Any]:
        # A Ray worker or subprocess receiving an unchanged on-disk index reopens (and maps)
        # the files instead of receiving ~1 GB of arrays.
        if self._source is not None:
            return {"_load_from": self._source}
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_load_from" in state:
            directory, mmap = state["_load_from"]
            state = BinaryHashIndex.load(directory, mmap=mmap).__dict__
        self.__dict__.update(state)


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "BinaryHashIndex",
    "MAX_PROBE_RADIUS",
    "parse_hex",
    "parse_hex_many",
    "substring_radii",
    "to_hex",
]
