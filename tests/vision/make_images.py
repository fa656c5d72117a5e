#!/usr/bin/env python3
"""Writes the committed test images of suite `vision` (tests/vision/images/).

Run with a Python that has Pillow and NumPy (e.g. /root/venv-ref/bin/python):
    python tests/vision/make_images.py
Photos are synthetic (smooth gradients + noise, seeded) so the files stay small and the output is
reproducible for a given Pillow. Bad inputs (truncated, corrupt, unsupported, decompression bomb)
are written next to the good ones; tests/vision/gen_pixels.py computes the reference pixels.
"""
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")


def photo(w, h, seed, noise=12):
    """A smooth colour field with some texture and noise: [h, w, 3] uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / max(w, 1) * 3.1 + seed) * np.cos(y / max(h, 1) * 2.3)
    g = 128 + 90 * np.cos((x + y) / max(w + h, 1) * 5.0 + seed * 0.7)
    b = 128 + 110 * np.sin(y / max(h, 1) * 4.2 - x / max(w, 1) * 1.3)
    img = np.stack([r, g, b], -1)
    img += 40 * (((x // 8 + y // 8) % 2)[..., None] - 0.5)  # edges for the resampler
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def exif_orientation(o):
    """A minimal little-endian TIFF/EXIF blob with IFD0 holding only Orientation = o."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, o, 0) + struct.pack("<I", 0)
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd


def save(name, img, **kw):
    path = os.path.join(OUT, name)
    img.save(path, **kw)
    return path


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def main():
    os.makedirs(OUT, exist_ok=True)
    # JPEG
    save("jpeg_baseline_720x477.jpg", Image.fromarray(photo(720, 477, 1)), quality=85)
    save("jpeg_progressive_640x360.jpg", Image.fromarray(photo(640, 360, 2)), quality=80,
         progressive=True)
    # small progressive ones (colour 4:2:0: the planes path; grey: libjpeg's scanlines):
    # vision-errors repeats their last scan to make scan bombs
    save("jpeg_progressive_64x48.jpg", Image.fromarray(photo(64, 48, 21)), quality=80,
         progressive=True)
    save("jpeg_progressive_gray_64x48.jpg", Image.fromarray(photo(64, 48, 22)).convert("L"),
         quality=80, progressive=True)
    save("jpeg_1280x720.jpg", Image.fromarray(photo(1280, 720, 3, noise=6)), quality=75)
    save("jpeg_1920x1080.jpg", Image.fromarray(photo(1920, 1080, 4, noise=4)), quality=60)
    save("jpeg_gray_100x75.jpg", Image.fromarray(photo(100, 75, 5)).convert("L"), quality=90)
    save("jpeg_cmyk_96x64.jpg", Image.fromarray(photo(96, 64, 6)).convert("CMYK"), quality=90)
    save("jpeg_444_130x90.jpg", Image.fromarray(photo(130, 90, 7)), quality=95, subsampling=0)
    for o in range(2, 9):
        save(f"jpeg_exif{o}_90x60.jpg", Image.fromarray(photo(90, 60, 10 + o)), quality=90,
             exif=exif_orientation(o))
    # EXIF orientation in PNG (eXIf chunk) and WebP (EXIF chunk), also applied by exif_transpose
    save("png_exif6_45x30.png", Image.fromarray(photo(45, 30, 60)), exif=exif_orientation(6))
    save("webp_exif8_48x32.webp", Image.fromarray(photo(48, 32, 61)), lossless=True,
         exif=exif_orientation(8))
    # PNG
    rgba = np.concatenate([photo(120, 90, 20),
                           np.tile(np.linspace(0, 255, 120).astype(np.uint8), (90, 1))[..., None]], -1)
    save("png_rgba_120x90.png", Image.fromarray(rgba, "RGBA"))
    save("png_gray_64x48.png", Image.fromarray(photo(64, 48, 21)).convert("L"))
    la = np.stack([photo(40, 30, 22)[..., 0], np.tile(np.arange(0, 240, 8, dtype=np.uint8)[:, None], (1, 40))], -1)
    save("png_la_40x30.png", Image.fromarray(la, "LA"))
    pal = Image.fromarray(photo(80, 60, 23)).quantize(colors=32)
    save("png_palette_80x60.png", pal)
    trns = bytes([0, 64, 128, 200] + [255] * 28)
    save("png_palette_trns_80x60.png", pal, transparency=trns)
    save("png_1bit_33x21.png", Image.fromarray(photo(33, 21, 24)).convert("1"))
    # 16-bit: RGB (PIL keeps the high byte) and grey (PIL mode I;16, clipped at 255)
    rng = np.random.default_rng(25)
    rgb16 = (photo(50, 40, 25).astype(np.uint16) * 257 + rng.integers(0, 257, (40, 50, 3))).astype(">u2")
    raw = b"".join(b"\0" + rgb16[y].tobytes() for y in range(40))
    with open(os.path.join(OUT, "png_rgb16_50x40.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 50, 40, 16, 2, 0, 0, 0))
                + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    def png16(name, w, h, ctype, arr, extra=b""):
        raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
                    + extra + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    rgba16 = np.concatenate([photo(30, 20, 36).astype(np.uint16) * 257,
                             np.tile(np.linspace(0, 65535, 30).astype(np.uint16), (20, 1))[..., None]], -1)
    png16("png_rgba16_30x20.png", 30, 20, 6, rgba16)
    la16 = np.stack([photo(30, 20, 37)[..., 1].astype(np.uint16) * 257,
                     np.tile(np.linspace(65535, 0, 20).astype(np.uint16)[:, None], (1, 30))], -1)
    png16("png_la16_30x20.png", 30, 20, 4, la16)
    g16 = rng.integers(0, 400, (20, 30)).astype(np.uint16)
    g16[::3, ::3] = 77
    png16("png_gray16_trns_30x20.png", 30, 20, 0, g16, png_chunk(b"tRNS", struct.pack(">H", 77)))
    rgb8 = photo(30, 20, 38)
    rgb8[::4, ::4] = (10, 20, 30)
    save("png_rgb_trns_30x20.png", Image.fromarray(rgb8), transparency=(10, 20, 30))
    save("webp_lossy_alpha_64x48.webp", Image.fromarray(
        np.concatenate([photo(64, 48, 39), np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))[..., None]], -1),
        "RGBA"), quality=80)
    gray16 = np.concatenate([rng.integers(0, 300, (20, 50)), rng.integers(0, 65536, (20, 50))]).astype(np.uint16)
    save("png_gray16_50x40.png", Image.fromarray(gray16))
    save("png_1x1.png", Image.fromarray(photo(1, 1, 27)))
    save("png_28x28.png", Image.fromarray(photo(28, 28, 28)))
    save("png_70x70.png", Image.fromarray(photo(70, 70, 29)))      # 70/28 = 2.5 -> 2 (half to even)
    save("png_42x98.png", Image.fromarray(photo(42, 98, 30)))      # 42/28 = 1.5 -> 2, 98/28 = 3.5 -> 4
    save("png_pano_2000x40.png", Image.fromarray(photo(2000, 40, 31, noise=2)))
    save("png_ratio200_3x600.png", Image.fromarray(photo(3, 600, 32)))
    save("jpeg_448x448.jpg", Image.fromarray(photo(448, 448, 33)), quality=80)  # no resample
    save("png_upscale_30x20.png", Image.fromarray(photo(30, 20, 34)))
    # WebP
    save("webp_lossy_160x120.webp", Image.fromarray(photo(160, 120, 40)), quality=80)
    save("webp_lossless_rgba_100x80.webp", Image.fromarray(
        np.concatenate([photo(100, 80, 41), np.full((80, 100, 1), 180, np.uint8)], -1), "RGBA"),
        lossless=True)
    # video frames (3: an odd count, so the processor repeats the last)
    for i in range(3):
        save(f"video_f{i}_64x48.png", Image.fromarray(photo(64, 48, 50 + i, noise=3)))
    # bad inputs
    bad = os.path.join(OUT, "bad")
    os.makedirs(bad, exist_ok=True)
    jpg = open(os.path.join(OUT, "jpeg_baseline_720x477.jpg"), "rb").read()
    png = open(os.path.join(OUT, "png_28x28.png"), "rb").read()
    webp = open(os.path.join(OUT, "webp_lossy_160x120.webp"), "rb").read()
    files = {
        "truncated.jpg": jpg[: len(jpg) // 2],
        "truncated.png": png[: len(png) - 30],
        "truncated.webp": webp[: len(webp) // 2],
        "corrupt.png": png[:40] + bytes(b ^ 0x5A for b in png[40:80]) + png[80:],
        "corrupt.jpg": jpg[:2] + b"\xff\xc0\x00\x04\x00\x00" + jpg[2:200],
        "empty.jpg": b"",
        "image.gif": b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,"
                     b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
        "image.bmp": b"BM" + bytes(60),
        "text.txt": b"this is not an image at all, just text\n",
        # a valid PNG header claiming 100000 x 100000 RGB and no data: must be refused before
        # any pixel buffer exists
        "bomb_100000x100000.png": b"\x89PNG\r\n\x1a\n" + png_chunk(
            b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(bytes(300001))) + png_chunk(b"IEND", b""),
    }
    for name, data in files.items():
        with open(os.path.join(bad, name), "wb") as f:
            f.write(data)
    # aspect ratio 201 (refused, -ERANGE) is a good PNG
    save("bad/ratio201_1x201.png", Image.fromarray(photo(1, 201, 35)))


if __name__ == "__main__":
    main()
