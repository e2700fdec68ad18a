#!/usr/bin/env python3
"""Draws the 14 link icons of the WHM plugins: 48x48 palette PNGs (a rounded tile in the link
group's colour with a white glyph), small enough to ride in every `create_integration_link`
command (cPanel's `base64_png_image`). Run from this directory: `python3 generate.py`.
Deterministic: the same files every run. No dependencies beyond the standard library."""

import math
import struct
import zlib

SIZE = 48
# Palette: 0 transparent, 1 tile, 2 glyph (white).
GROUP_COLOURS = {
    "ordering": (0x2E, 0x7D, 0x32),
    "support": (0x15, 0x65, 0xC0),
    "account": (0x6A, 0x1B, 0x9A),
}


class Canvas:
    def __init__(self):
        self.px = [[0] * SIZE for _ in range(SIZE)]

    def set(self, x, y, c):
        if 0 <= x < SIZE and 0 <= y < SIZE:
            self.px[y][x] = c

    def rect(self, x0, y0, x1, y1, c=2):
        for y in range(y0, y1):
            for x in range(x0, x1):
                self.set(x, y, c)

    def frame(self, x0, y0, x1, y1, w=2, c=2):
        self.rect(x0, y0, x1, y0 + w, c)
        self.rect(x0, y1 - w, x1, y1, c)
        self.rect(x0, y0, x0 + w, y1, c)
        self.rect(x1 - w, y0, x1, y1, c)

    def disc(self, cx, cy, r, c=2):
        for y in range(SIZE):
            for x in range(SIZE):
                if (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r:
                    self.set(x, y, c)

    def ring(self, cx, cy, r, w=2, c=2):
        for y in range(SIZE):
            for x in range(SIZE):
                d = math.hypot(x + 0.5 - cx, y + 0.5 - cy)
                if r - w <= d <= r:
                    self.set(x, y, c)

    def line(self, x0, y0, x1, y1, w=2, c=2):
        steps = int(max(abs(x1 - x0), abs(y1 - y0)) * 2) + 1
        for i in range(steps + 1):
            t = i / steps
            x = x0 + (x1 - x0) * t
            y = y0 + (y1 - y0) * t
            self.rect(int(x - w / 2), int(y - w / 2), int(x - w / 2) + w, int(y - w / 2) + w, c)

    def triangle(self, pts, c=2):
        (ax, ay), (bx, by), (cx_, cy) = pts
        def side(px, py, qx, qy, rx, ry):
            return (px - rx) * (qy - ry) - (qx - rx) * (py - ry)
        for y in range(SIZE):
            for x in range(SIZE):
                px, py = x + 0.5, y + 0.5
                d1 = side(px, py, ax, ay, bx, by)
                d2 = side(px, py, bx, by, cx_, cy)
                d3 = side(px, py, cx_, cy, ax, ay)
                neg = d1 < 0 or d2 < 0 or d3 < 0
                pos = d1 > 0 or d2 > 0 or d3 > 0
                if not (neg and pos):
                    self.set(x, y, c)


def tile(c):
    """The rounded tile the glyph sits on."""
    r = 9
    for y in range(SIZE):
        for x in range(SIZE):
            dx = max(r - x, x - (SIZE - 1 - r), 0)
            dy = max(r - y, y - (SIZE - 1 - r), 0)
            if dx * dx + dy * dy <= r * r:
                c.set(x, y, 1)


def arrow_up(c):
    c.triangle([(24, 9), (12, 23), (36, 23)])
    c.rect(20, 22, 28, 38)


def globe_plus(c):
    c.ring(20, 22, 12)
    c.rect(8, 21, 32, 23)
    c.rect(19, 10, 21, 34)
    c.rect(32, 30, 42, 34)
    c.rect(35, 27, 39, 37)


def transfer(c):
    c.rect(10, 15, 32, 19)
    c.triangle([(38, 17), (30, 10), (30, 24)])
    c.rect(16, 29, 38, 33)
    c.triangle([(10, 31), (18, 24), (18, 38)])


def bubble(c):
    c.rect(9, 11, 39, 31)
    c.triangle([(14, 30), (24, 30), (14, 39)])


def bubble_plus(c):
    bubble(c)
    c.rect(22, 14, 26, 28, 1)
    c.rect(17, 19, 31, 23, 1)


def bubble_lines(c):
    bubble(c)
    for y in (15, 20, 25):
        c.rect(13, y, 35, y + 2, 1)


def megaphone(c):
    c.rect(9, 19, 15, 29)
    c.triangle([(14, 24), (36, 10), (36, 38)])
    c.rect(36, 16, 39, 32)
    c.rect(15, 29, 19, 38)


def arrow_down(c):
    c.rect(20, 8, 28, 22)
    c.triangle([(24, 33), (12, 21), (36, 21)])
    c.rect(10, 35, 38, 39)


def book(c):
    c.rect(9, 11, 23, 37)
    c.rect(25, 11, 39, 37)
    for y in (16, 21, 26):
        c.rect(12, y, 20, y + 2, 1)
        c.rect(28, y, 36, y + 2, 1)


def signal(c):
    for i, h in enumerate((8, 14, 20, 26)):
        x = 10 + i * 8
        c.rect(x, 38 - h, x + 5, 38)


def person(c):
    c.disc(24, 17, 7)
    c.disc(24, 40, 14)
    c.rect(0, 38, SIZE, SIZE, 0)
    tile_bottom(c)


def tile_bottom(c):
    # Keep the tile whole where the person's body was cut straight.
    r = 9
    for y in range(38, SIZE):
        for x in range(SIZE):
            if c.px[y][x] == 0:
                dx = max(r - x, x - (SIZE - 1 - r), 0)
                dy = max(r - y, y - (SIZE - 1 - r), 0)
                if dx * dx + dy * dy <= r * r:
                    c.set(x, y, 1)


def document(c):
    c.rect(12, 8, 36, 40)
    for y in (14, 19, 24, 29):
        c.rect(16, y, 32, y + 2, 1)


def card(c):
    c.rect(7, 13, 41, 35)
    c.rect(7, 18, 41, 22, 1)
    c.rect(11, 27, 21, 30, 1)


def envelope(c):
    c.rect(8, 13, 40, 35)
    c.line(9, 14, 24, 25, 2, 1)
    c.line(39, 14, 24, 25, 2, 1)


def invoice(c):
    document(c)
    c.rect(16, 29, 32, 31, 2)
    c.ring(24, 31, 5, 2, 1)


# The 14 links, in the links table's order: file name, group, glyph.
ICONS = [
    ("upgrade", "ordering", arrow_up),
    ("domain_register", "ordering", globe_plus),
    ("domain_transfer", "ordering", transfer),
    ("submit_ticket", "support", bubble_plus),
    ("tickets", "support", bubble_lines),
    ("announcements", "support", megaphone),
    ("downloads", "support", arrow_down),
    ("knowledgebase", "support", book),
    ("network_status", "support", signal),
    ("profile", "account", person),
    ("product_details", "account", document),
    ("billing_info", "account", card),
    ("emails", "account", envelope),
    ("invoices", "account", invoice),
]


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(canvas, colour):
    raw = b"".join(b"\x00" + bytes(row) for row in canvas.px)
    palette = bytes((0, 0, 0)) + bytes(colour) + bytes((255, 255, 255))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", SIZE, SIZE, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", palette)
        + chunk(b"tRNS", b"\x00")
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main():
    for name, group, glyph in ICONS:
        canvas = Canvas()
        tile(canvas)
        glyph(canvas)
        data = png(canvas, GROUP_COLOURS[group])
        with open(f"{name}.png", "wb") as f:
            f.write(data)
        print(f"{name}.png {len(data)} bytes")


if __name__ == "__main__":
    main()
