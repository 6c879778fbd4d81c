#!/usr/bin/env python3
"""Captures a VNC server's screen with vncdotool (a real RFB client) asking for ONE
encoding, and writes it to OUT: a PNG when OUT ends in .png, else the screen's RGB bytes
(width * height * 3, row-major).

With --nocursor vncdotool also lists the cursor pseudo-encoding and ignores the shapes it
gets: the capture is the screen without the pointer (a server draws the pointer into the
screen only for viewers that do not take cursor shapes).

usage: vncdo_encoding.py HOST::PORT raw|hextile|zrle OUT [--nocursor]
"""
import sys
import tempfile

from PIL import Image
from vncdotool import api
from vncdotool.client import VNCDoToolClient, VNCDoToolFactory
from vncdotool.const import Encoding

server, encoding, out, *flags = sys.argv[1:]
VNCDoToolClient.encoding = {
    "raw": Encoding.RAW,
    "hextile": Encoding.HEXTILE,
    "zrle": Encoding.ZRLE,
}[encoding]
if flags == ["--nocursor"]:
    VNCDoToolFactory.nocursor = True
elif flags:
    sys.exit(f"unknown flags {flags}")
client = api.connect(server, password=None, timeout=30)
try:
    with tempfile.NamedTemporaryFile(suffix=".png") as png:
        client.captureScreen(png.name)
        img = Image.open(png.name).convert("RGB")
        if out.endswith(".png"):
            img.save(out)
        else:
            with open(out, "wb") as f:
                f.write(img.tobytes())
finally:
    client.disconnect()
    api.shutdown()
