#!/usr/bin/env python3
"""Makes the operator window's bundled assets from nothing but this script (Python's standard
library), so they are the project's own work under the project's licence (assets/LICENSES.md):

- assets/icon.png: the application icon, 256x256 RGBA: a slot card in the window's colours (a
  dark card, an Okabe-Ito sky-blue frame, a bluish-green check mark);
- assets/attention.wav: the attention sound, 16-bit mono PCM at 22050 Hz: two short tones
  (880 Hz then 660 Hz, 0.18 s each with 10 ms fades), about 0.45 s in all.

Run from the repository's root: `python3 scripts/make-assets.py`. The output is deterministic
(the same bytes every run); the window embeds both files with include_bytes!.
"""
import math
import struct
import wave
import zlib
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"

SKY_BLUE = (0x56, 0xB4, 0xE9)
BLUISH_GREEN = (0x00, 0x9E, 0x73)
CARD = (0x1E, 0x2A, 0x33)


def inside_rounded_square(x, y, size, margin, radius):
    low, high = margin, size - 1 - margin
    cx = min(max(x, low + radius), high - radius)
    cy = min(max(y, low + radius), high - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2 and low <= x <= high and low <= y <= high


def distance_to_segment(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def icon_pixel(x, y, size):
    if not inside_rounded_square(x, y, size, 8, 40):
        return (0, 0, 0, 0)
    # The check mark: two thick strokes.
    check = min(
        distance_to_segment(x, y, 70, 132, 112, 176),
        distance_to_segment(x, y, 112, 176, 190, 84),
    )
    if check <= 16:
        return BLUISH_GREEN + (255,)
    if not inside_rounded_square(x, y, size, 22, 28):
        return SKY_BLUE + (255,)
    return CARD + (255,)


def png(width, height, pixel):
    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y, width)) for x in range(width)) for y in range(height)
    )

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def attention_samples(rate=22050):
    samples = []
    for frequency in (880.0, 660.0):
        count = int(0.18 * rate)
        fade = int(0.010 * rate)
        for index in range(count):
            envelope = min(1.0, index / fade, (count - 1 - index) / fade)
            value = 0.55 * envelope * math.sin(2 * math.pi * frequency * index / rate)
            samples.append(int(round(value * 32767)))
        samples.extend([0] * int(0.045 * rate))
    return rate, samples


def main():
    ASSETS.mkdir(exist_ok=True)
    (ASSETS / "icon.png").write_bytes(png(256, 256, icon_pixel))
    rate, samples = attention_samples()
    with wave.open(str(ASSETS / "attention.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(struct.pack("<%dh" % len(samples), *samples))


if __name__ == "__main__":
    main()
