#!/usr/bin/env python3
"""Image checks for the end-to-end suite (Pillow).

compare A B        -> {"equal": bool, "size_a": [w, h], "size_b": [w, h], "bbox": [...] | null, "differing": n}
lit A Y0 Y1        -> {"lit": n}  count of pixels brighter than mid-grey in rows Y0..Y1
xwd IN OUT         -> {"size": [w, h]}  an `xwd -root` dump (32-bit TrueColor) as a PNG
rgb IN OUT         -> {"size": [w, h]}  an image's RGB bytes (w * h * 3, row-major) to OUT
region A B X0 Y0 X1 Y1 -> {"differing": n, "colours_a": n, "colours_b": n}  within the box
                      (X1, Y1 excluded): the pixels that differ, the colours in each image
crop IN OUT X0 Y0 X1 Y1 -> {"size": [w, h]}  the box (X1, Y1 excluded) of IN as a PNG
"""
import json
import struct
import sys

from PIL import Image, ImageChops


def compare(a, b):
    ia = Image.open(a).convert("RGB")
    ib = Image.open(b).convert("RGB")
    out = {"size_a": list(ia.size), "size_b": list(ib.size)}
    if ia.size != ib.size:
        out.update({"equal": False, "bbox": None, "differing": -1})
    else:
        diff = ImageChops.difference(ia, ib)
        bbox = diff.getbbox()
        differing = sum(1 for px in diff.getdata() if px != (0, 0, 0)) if bbox else 0
        out.update({"equal": bbox is None, "bbox": list(bbox) if bbox else None, "differing": differing})
    print(json.dumps(out))


def lit(a, y0, y1):
    im = Image.open(a).convert("L")
    w, h = im.size
    n = 0
    for y in range(int(y0), min(int(y1), h)):
        for x in range(w):
            if im.getpixel((x, y)) > 128:
                n += 1
    print(json.dumps({"lit": n}))


def rgb(src, out):
    im = Image.open(src).convert("RGB")
    with open(out, "wb") as f:
        f.write(im.tobytes())
    print(json.dumps({"size": list(im.size)}))


def xwd(src, out):
    data = open(src, "rb").read()
    h = struct.unpack(">25I", data[:100])
    header_size, width, height = h[0], h[4], h[5]
    byte_order, bpp, bytes_per_line = h[7], h[11], h[12]
    masks, ncolors = h[14:17], h[19]
    if bpp != 32 or masks != (0xFF0000, 0xFF00, 0xFF):
        sys.exit(f"xwd: {bpp} bits a pixel, masks {masks}: only 32-bit xRGB is read")
    start = header_size + ncolors * 12
    mode = "BGRX" if byte_order == 0 else "XRGB"
    im = Image.frombuffer("RGB", (width, height), data[start:], "raw", mode, bytes_per_line, 1)
    im.save(out)
    print(json.dumps({"size": [width, height]}))


def region(a, b, x0, y0, x1, y1):
    box = tuple(int(v) for v in (x0, y0, x1, y1))
    ia = Image.open(a).convert("RGB").crop(box)
    ib = Image.open(b).convert("RGB").crop(box)
    pa, pb = list(ia.getdata()), list(ib.getdata())
    print(json.dumps({
        "differing": sum(1 for p, q in zip(pa, pb) if p != q),
        "colours_a": len(set(pa)),
        "colours_b": len(set(pb)),
    }))


def crop(src, out, x0, y0, x1, y1):
    im = Image.open(src).convert("RGB").crop(tuple(int(v) for v in (x0, y0, x1, y1)))
    im.save(out)
    print(json.dumps({"size": list(im.size)}))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"compare": compare, "lit": lit, "xwd": xwd, "rgb": rgb, "region": region, "crop": crop}[cmd](*args)
