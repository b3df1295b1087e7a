"""An image file's width and height, read from its header without decoding it.

A small file can declare an enormous image (an 875 KB PNG decodes to 30000 x 30000: 5.3 GB
and 22 s), so the size is checked before OpenCV decodes anything. PNG, JPEG, BMP, GIF, WebP,
TIFF and PNM (PPM/PGM/PBM) headers are read; for another format the size is unknown (None).
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

HEAD_BYTES = 64 * 1024  # JPEG's frame header can follow a large EXIF block


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) the file declares, or None when its format is not one read here."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        for reader in (_png, _jpeg, _bmp, _gif, _webp, _pnm):
            try:
                size = reader(head)
            except (struct.error, IndexError, ValueError):
                size = None
            if size is not None:
                return size
        try:
            return _tiff(head, f)
        except (struct.error, IndexError, ValueError, OSError):
            return None


def _png(b: bytes) -> tuple[int, int] | None:
    if b[:8] != b"\x89PNG\r\n\x1a\n" or b[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", b[16:24])


def _jpeg(b: bytes) -> tuple[int, int] | None:
    if b[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            i += 1
            continue
        marker = b[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", b[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
            height, width = struct.unpack(">HH", b[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def _bmp(b: bytes) -> tuple[int, int] | None:
    if b[:2] != b"BM":
        return None
    header = struct.unpack("<I", b[14:18])[0]
    if header == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", b[18:22])
    else:
        width, height = struct.unpack("<ii", b[18:26])
    return abs(width), abs(height)


def _gif(b: bytes) -> tuple[int, int] | None:
    if b[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    return struct.unpack("<HH", b[6:10])


def _webp(b: bytes) -> tuple[int, int] | None:
    if b[:4] != b"RIFF" or b[8:12] != b"WEBP":
        return None
    chunk = b[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(b[24:27], "little") + 1
        height = int.from_bytes(b[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(b[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", b[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _tiff(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    """TIFF's first directory may be anywhere in the file (OpenCV writes it at the end)."""
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or struct.unpack(order + "H", head[2:4])[0] != 42:
        return None
    f.seek(struct.unpack(order + "I", head[4:8])[0])
    count = struct.unpack(order + "H", f.read(2))[0]
    directory = f.read(12 * min(count, 4096))
    found: dict[int, int] = {}
    for k in range(len(directory) // 12):
        entry = directory[12 * k:12 * k + 12]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"),
                                       entry[8:10] if kind == 3 else entry[8:12])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _pnm(b: bytes) -> tuple[int, int] | None:
    if b[:1] != b"P" or b[1:2] not in b"123456":
        return None
    words: list[int] = []
    for line in b[2:].split(b"\n"):
        for word in line.split(b"#", 1)[0].split():
            words.append(int(word))
            if len(words) == 2:
                return words[0], words[1]
    return None
