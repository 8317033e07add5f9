"""JPEG structure checks made before any pixel is decoded (hostile files are normal input).

Two kinds of JPEG cost far more than their size suggests, and libjpeg decodes both "fine":

* a progressive JPEG with thousands of scans: libjpeg re-runs the whole image for every scan
  (27 KB took 17 s); ordinary encoders write about 10 scans, so more than :data:`MAX_SCANS`
  is refused, and so is more than :data:`MAX_SCAN_PIXELS` scans x frame pixels, since the
  cost is their product (100 scans of 50 Mpx, 447 KB, took 31.6 s here);
* a header that claims far more pixels than the data holds (1.2 KB claiming 7000x7000):
  libjpeg fills the missing blocks with grey and only warns. A Huffman-coded JPEG spends at
  least one bit on every 8x8 block of its first component (the shortest Huffman code), so
  entropy-coded data shorter than that cannot be a complete picture. An arithmetic-coded
  frame has no such floor (a flat 7000x7000 one holds 12 bytes of coded data, and libjpeg
  zero-fills past the data without a warning), so those are refused outright, as web
  browsers do: they do not decode arithmetic-coded JPEGs at all.

The walk below reads the marker segments (cheap: a regular-expression search finds each
scan's end), never the pixels.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SCANS = 100
# Decode time of a progressive JPEG ~ scans x pixels (~6.5 ns each on the 2-core dev machine):
# 1e9 admits 10 scans of 100 Mpx (an ordinary encoder at the largest size Pillow accepts),
# 20 of 50 Mpx or 100 of 10 Mpx, and bounds the worst accepted decode at ~7 s there.
MAX_SCAN_PIXELS = 1_000_000_000
# SOF markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC). C9-CB, CD-CF are arithmetic-coded.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7}
# The end of entropy-coded data: 0xFF followed by anything but a stuffed 0x00, a restart
# marker (D0-D7) or another 0xFF (fill bytes before a marker).
_NEXT_MARKER = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


@dataclass(frozen=True)
class JpegLayout:
    """What the marker segments say: frame size, sampling, number of scans, data bytes."""

    sof: int
    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]  # (h, v) per component
    scans: int
    entropy_bytes: int

    @property
    def arithmetic(self) -> bool:
        return self.sof not in _HUFFMAN_SOF

    @property
    def scan_pixels(self) -> int:
        """What a progressive decode costs: every scan passes over the whole frame."""
        return self.scans * self.width * self.height

    @property
    def min_entropy_bytes(self) -> int:
        """The fewest bytes of coded data a complete Huffman-coded frame can have."""
        if self.sof not in _HUFFMAN_SOF or not self.sampling:
            return 0
        hmax = max(h for h, _ in self.sampling)
        vmax = max(v for _, v in self.sampling)
        h0, v0 = self.sampling[0]
        # blocks of the first component (its own sampling), one bit each at least
        bw = -(-self.width * h0 // (8 * hmax))
        bh = -(-self.height * v0 // (8 * vmax))
        return bw * bh // 8


def read_layout(data: bytes) -> JpegLayout | None:
    """Walk the marker segments of a JPEG; None when there is no frame header to read."""
    n, pos = len(data), 2
    sof = width = height = scans = entropy = 0
    sampling: tuple[tuple[int, int], ...] = ()
    while pos + 1 < n:
        if data[pos] != 0xFF:
            break  # not a marker where one must be: let the decoder report the corruption
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            continue
        if pos + 2 > n:
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        segment = data[pos + 2:pos + length]
        if marker in _SOF and len(segment) >= 6:
            sof = marker
            height = int.from_bytes(segment[1:3], "big")
            width = int.from_bytes(segment[3:5], "big")
            count = segment[5]
            comps = segment[6:6 + 3 * count]
            sampling = tuple((comps[i + 1] >> 4, comps[i + 1] & 15)
                             for i in range(0, len(comps) - 2, 3))
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker
            scans += 1
            found = _NEXT_MARKER.search(data, pos)
            end = found.start() if found else n
            entropy += end - pos
            pos = end
    if not sof:
        return None
    return JpegLayout(sof, width, height, sampling, scans, entropy)
