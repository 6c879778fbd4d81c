#!/usr/bin/env python3
"""Captures a VNC server's screen with vncdotool (a real RFB client) asking for ONE
encoding, and writes the screen's RGB bytes (width * height * 3, row-major) to OUT.

usage: vncdo_encoding.py HOST::PORT raw|hextile|zrle OUT
"""
import sys
import tempfile

from PIL import Image
from vncdotool import api
from vncdotool.client import VNCDoToolClient
from vncdotool.const import Encoding

server, encoding, out = sys.argv[1:]
VNCDoToolClient.encoding = {
    "raw": Encoding.RAW,
    "hextile": Encoding.HEXTILE,
    "zrle": Encoding.ZRLE,
}[encoding]
client = api.connect(server, password=None, timeout=30)
try:
    with tempfile.NamedTemporaryFile(suffix=".png") as png:
        client.captureScreen(png.name)
        img = Image.open(png.name).convert("RGB")
        with open(out, "wb") as f:
            f.write(img.tobytes())
finally:
    client.disconnect()
    api.shutdown()
