"""Silence what MediaPipe's C++ graphs write straight to the process's stderr when they start.

Its TFLite and absl start-up lines ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager
requires a model with a single signature inference", "Using NORM_RECT without IMAGE_DIMENSIONS") go to
file descriptor 2, around Python's ``sys.stderr``, and would break into the progress bars of every
command that tracks. ``GLOG_minloglevel`` (set in ``dejavu/__init__.py``) does not reach them: absl logs
before its own initialisation. They are harmless and come once per graph: when it starts and on the
first face it finds.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at the null device for the block (a no-op where stderr has no descriptor,
    as under pytest's capture). Python-level errors raised inside still propagate as usual."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def started_quietly(make: Callable[[], T]) -> T:
    """``make()`` a MediaPipe solution and run it once on a small blank frame, silenced: its graph opens
    its models on threads of its own after construction, so the lines would otherwise come whenever the
    first real frame (or something else) happens to be running."""
    with native_stderr_silenced():
        solution = make()
        solution.process(np.zeros((64, 64, 3), np.uint8))
    return solution
