"""The encoder writes the same bytes as when tests/byte_identity.json was recorded (``python tests/byte_identity.py``):
a refactoring changes no file.  A change meant to change files reruns that script and commits the JSON with it."""
import json

import pytest

from byte_identity import CASES, JSON, encode, record

with open(JSON) as f:
    RECORDED = json.load(f)

SLOW = {"tiled-default", "refine2", "refine2-blocks", "target-1bpp"}  # a few seconds or more each on 2 cores


def test_every_case_is_recorded():
    assert sorted(RECORDED) == sorted(CASES)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in sorted(CASES)])
def test_files_are_byte_identical(case):
    assert record(encode(case)) == RECORDED[case], "%s: the encoder's output changed" % case
