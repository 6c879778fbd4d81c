#!/usr/bin/env python3
"""Image checks for the end-to-end suite (Pillow).

compare A B        -> {"equal": bool, "size_a": [w, h], "size_b": [w, h], "bbox": [...] | null, "differing": n}
lit A Y0 Y1        -> {"lit": n}  count of pixels brighter than mid-grey in rows Y0..Y1
"""
import json
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


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"compare": compare, "lit": lit}[cmd](*args)
