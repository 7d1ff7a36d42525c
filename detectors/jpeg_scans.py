"""The DC scans of a progressive JPEG, alone: what a 1/8-scale decode reads, without the rest.

A 1/8-scale JPEG decode (what pHash needs: one value per 8x8 block) uses only each block's DC
coefficient. In a baseline JPEG those are interleaved with the AC coefficients in one Huffman-
coded stream, so every coefficient must still be entropy-decoded to reach them: the decode
floor `bench/hash_throughput.py` measures. A progressive JPEG, which social platforms serve for
their photos, stores the DC coefficients of every block in scans of their own, first (and, with
successive approximation, a one-bit-per-block refinement scan later): usually a tenth of the
file. `dc_scans_only` rewrites such a file into a valid progressive JPEG that holds every marker
segment (tables, EXIF orientation), the DC scans, and for each component one made-up AC scan
that says, in a few bytes of end-of-band runs, "every AC coefficient is zero". That last part
matters: libjpeg-turbo smooths a progressive image whose AC coefficients have not arrived yet
(DC included, for a nicer preview), so the DC scans alone decode to different pixels; with
every coefficient accounted for it does not, and its 1x1 inverse DCT at 1/8 scale reads nothing
but DC: the pixels equal the whole file's (tests/test_jpeg_scans.py compares them).

The walk also checks that the file is whole (every scan ends in a marker, an EOI closes it):
a truncated or odd file gets None, and the caller decodes it the ordinary way, which reports it.
"""
from __future__ import annotations

from dataclasses import dataclass

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
PROGRESSIVE_HUFFMAN = 0xC2  # SOF2
# Other frame types (baseline, extended, lossless, hierarchical, arithmetic): not rewritten.
_OTHER_FRAMES = {0xC0, 0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_RESTARTS = range(0xD0, 0xD8)
# Below this on either side libjpeg's smallest scale that keeps 64 px is 1/4 or more, which
# reads AC coefficients too: such images (cheap anyway) are decoded whole.
MIN_SIDE = 512


def dc_scans_only(data: bytes, min_side: int = MIN_SIDE) -> bytes | None:
    """`data` rewritten to its marker segments and DC scans, or None when it is not a whole
    progressive (Huffman) JPEG at least `min_side` pixels on each side."""
    if data[:2] != b"\xff\xd8":
        return None
    kept = [b"\xff\xd8"]
    frame: _Frame | None = None
    restarts = False
    dc_scans = 0
    pos, end = 2, len(data)
    while pos + 1 < end:
        if data[pos] != 0xFF:
            return None  # not a marker where one must be
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == EOI:
            if frame is None or not dc_scans:
                return None
            return b"".join(kept) + _zero_ac_scans(frame, restarts) + b"\xff\xd9"
        if marker == SOI or marker in _RESTARTS or pos + 4 > end:
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segment_end = pos + 2 + length
        if length < 2 or segment_end > end:
            return None
        segment = data[pos:segment_end]
        if marker in _OTHER_FRAMES:
            return None
        if marker == PROGRESSIVE_HUFFMAN:
            frame = _Frame.parse(segment)
            if frame is None or min(frame.width, frame.height) < min_side:
                return None
        if marker == 0xDD:  # DRI
            restarts = length >= 4 and int.from_bytes(segment[4:6], "big") > 0
        if marker != SOS:
            kept.append(segment)
            pos = segment_end
            continue
        if frame is None:
            return None  # a scan before the frame header
        scan_end = _entropy_end(data, segment_end)
        if scan_end is None:
            return None  # truncated inside a scan
        components = segment[4]
        if length < 6 + 2 * components:
            return None
        spectral_start = segment[5 + 2 * components]
        if spectral_start == 0:  # a DC scan: first pass or a refinement
            kept.append(data[pos:scan_end])
            dc_scans += 1
        pos = scan_end
    return None  # ran out of bytes before EOI: truncated


def _entropy_end(data: bytes, pos: int) -> int | None:
    """Where the entropy-coded bytes starting at `pos` end: the next marker that is neither a
    stuffed 0xFF00 nor a restart marker inside the scan; None when the data ends first."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return None
        following = data[pos + 1]
        if following == 0x00 or following in _RESTARTS or following == 0xFF:
            pos += 1 if following == 0xFF else 2
            continue
        return pos


@dataclass(frozen=True)
class _Frame:
    width: int
    height: int
    components: tuple[tuple[int, int, int], ...]  # (id, horizontal, vertical sampling factor)

    @classmethod
    def parse(cls, segment: bytes) -> "_Frame | None":
        if len(segment) < 10:
            return None
        count = segment[9]
        if len(segment) < 10 + 3 * count or count == 0:
            return None
        comps = tuple((segment[10 + 3 * i], segment[11 + 3 * i] >> 4, segment[11 + 3 * i] & 15) for i in range(count))
        if any(h == 0 or v == 0 for _, h, v in comps):
            return None
        return cls(int.from_bytes(segment[7:9], "big"), int.from_bytes(segment[5:7], "big"), comps)

    def blocks(self, h: int, v: int) -> int:
        """8x8 blocks of a component in a non-interleaved scan (the component's own size, not
        padded to whole MCUs)."""
        hmax = max(c[1] for c in self.components)
        vmax = max(c[2] for c in self.components)
        width = -(-self.width * h // hmax)
        height = -(-self.height * v // vmax)
        return -(-width // 8) * -(-height // 8)


# An AC Huffman table (class 1, slot 3) of the 15 end-of-band-run symbols EOB0..EOB14
# (run/size 0xn0), all 4-bit codes: symbol EOBn gets code n.
_EOB_TABLE = bytes([0xFF, 0xC4, 0x00, 2 + 1 + 16 + 15, 0x13]) + bytes([0, 0, 0, 15] + [0] * 12) + bytes(n << 4 for n in range(15))
_MAX_EOB_RUN = 2 ** 15 - 1


def _zero_ac_scans(frame: _Frame, restarts: bool) -> bytes:
    """One AC scan (coefficients 1-63, full precision) per component, every block an end of band."""
    out = [b"\xff\xdd\x00\x04\x00\x00"] if restarts else []  # restart intervals off for these scans
    out.append(_EOB_TABLE)
    for comp_id, h, v in frame.components:
        out.append(bytes([0xFF, SOS, 0x00, 0x08, 0x01, comp_id, 0x03, 1, 63, 0x00]))
        out.append(_eob_runs(frame.blocks(h, v)))
    return b"".join(out)


def _eob_runs(blocks: int) -> bytes:
    """Entropy-coded bytes that end the band of `blocks` blocks in a row, in runs of <= 32767."""
    bits: list[str] = []
    while blocks > 0:
        run = min(blocks, _MAX_EOB_RUN)
        n = run.bit_length() - 1
        bits.append(format(n, "04b"))
        if n:
            bits.append(format(run - (1 << n), f"0{n}b"))
        blocks -= run
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad the last byte with 1 bits, as the standard asks
    data = int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b""
    return data.replace(b"\xff", b"\xff\x00")
