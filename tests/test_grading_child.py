"""labkit.grading.child: a step of grading in a forked child with its own memory and time limits."""
from __future__ import annotations

import os
import time

import pytest

from labkit.grading.child import ChildFailed, in_child


def _grow():
    blocks = []
    while True:
        blocks.append(bytearray(64 << 20))


def _loop():
    while True:
        pass


def test_the_answer_comes_back_as_json():
    assert in_child(lambda a, b: {"sum": a + b, "pid": os.getpid()}, 2, 3)["sum"] == 5
    assert in_child(lambda: os.getpid()) != os.getpid()


@pytest.mark.parametrize("fn, seconds, reason", [
    (_grow, 60, "ran out of its 1 GiB of memory"),  # long enough for a loaded machine to fill 1 GiB
    (lambda: time.sleep(30), 2, "ran past its limit of 2 s"),
    (_loop, 2, "ran past its limit of 2 s"),
    (lambda: 1 / 0, 2, "ZeroDivisionError: division by zero"),
    (lambda: os._exit(3), 2, "gave no answer"),
    (lambda: os.kill(os.getpid(), 9), 2, "was killed"),
])
def test_a_step_that_blows_up_fails_alone_and_says_why(fn, seconds, reason):
    start = time.monotonic()
    with pytest.raises(ChildFailed, match=reason):
        in_child(fn, memory=1 << 30, seconds=seconds)
    assert time.monotonic() - start < max(15, seconds)
