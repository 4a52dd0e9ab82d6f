"""Bounded, seeded fuzzing of the two parsers that read untrusted bytes: the y4m stream header and
the .vsr.mkv tags. Every mutated input must end in the parser's own error (one clear line) or a
valid result: never another exception, never a hang."""

from __future__ import annotations

import random

import numpy as np
import pytest

from vsr_plugin.baselayer import BaseLayerError, BaseLayerTags, base_size, parse_tags
from vsr_plugin.media import MediaError, TimedFrame, VideoInput, check_y4m_header

GOOD_HEADER = b"YUV4MPEG2 W8 H6 F25:1 Ip A1:1 C420jpeg XYSCSS=420JPEG"
ALPHABET = b"YUV4MPEG2 WHFIACX0123456789:-+.\x00\xff\n\t jpegmpeg420p10"


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:  # replace a byte
            b[min(i, len(b) - 1)] = rng.choice(ALPHABET)
        elif op == 1:  # insert
            b[i:i] = bytes(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6)))
        elif op == 2 and b:  # delete a run
            del b[i:i + rng.randint(1, 5)]
        else:  # a field with an extreme number
            number = rng.choice([0, -1, 10 ** rng.randint(1, 30)])
            b[i:i] = b" " + bytes([rng.choice(b"WHF")]) + str(number).encode()
    return bytes(b)


def test_y4m_header_fuzz(tmp_path):
    rng = random.Random(1234)
    frame = b"FRAME\n" + bytes(8 * 6 + 2 * 4 * 3)
    opened = 0
    for case in range(3000):
        header = _mutate(GOOD_HEADER, rng).split(b"\n")[0]
        try:
            check_y4m_header(header, "fuzz")
        except MediaError as e:
            assert "\n" not in str(e)
            continue
        if case % 5:  # open a share of the accepted ones for real
            continue
        path = tmp_path / f"c{case}.y4m"
        path.write_bytes(header + b"\n" + frame * 2)
        try:
            with VideoInput(path) as inp:
                n = sum(isinstance(t, TimedFrame) for t in inp.items())
                assert n <= 2
                opened += 1
        except (MediaError, ValueError) as e:
            assert "Traceback" not in str(e)
        path.unlink()
    assert opened > 10  # the fuzzer did reach the demuxer


GOOD_TAGS = {"VSR_FORMAT": "vsr-base-layer", "VSR_FORMAT_VERSION": "1", "VSR_SCALE": "2", "VSR_WIDTH": "33",
             "VSR_HEIGHT": "20", "VSR_UPSAMPLER": "x2-default", "VSR_UPSAMPLER_SHA256": "ab" * 32,
             "VSR_DOWNSAMPLER": "x2-down"}
VALUES = ["", "0", "-1", "2", "33", "20", "1e3", " 2", "2 ", "²", "٣", "0x10", "9" * 40, "vsr-base-layer", "ab" * 32,
          "AB" * 32, "ab" * 31, "\x00", "x2-default", "1.0", "NaN"]


def test_base_layer_tag_fuzz():
    rng = random.Random(99)
    accepted = 0
    for _ in range(4000):
        tags = dict(GOOD_TAGS)
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(list(GOOD_TAGS) + ["vsr_width", "VSR_SCALE"])
            action = rng.randrange(3)
            if action == 0:
                tags.pop(key, None)
            elif action == 1:
                tags[key] = rng.choice(VALUES)
            else:
                tags[key.lower()] = tags.pop(key, rng.choice(VALUES))
        try:
            result = parse_tags(tags, base_width=base_size(33), base_height=base_size(20), source="fuzz.vsr.mkv")
        except BaseLayerError as e:
            assert "\n" not in str(e) and str(e).startswith("fuzz.vsr.mkv: ")
            continue
        assert isinstance(result, BaseLayerTags) and result.width > 0 and result.height > 0
        assert base_size(result.width, result.scale) == base_size(33) and len(result.upsampler_sha256) == 64
        accepted += 1
    assert accepted > 50
