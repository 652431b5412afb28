"""MediaPipe's start-up lines (written by C++ to file descriptor 2) are kept out of the terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_native_stderr_silenced_only_inside_the_block():
    code = (
        "import os, sys\n"
        "from dejavu.track.native_log import native_stderr_silenced\n"
        "os.write(2, b'before\\n')\n"
        "with native_stderr_silenced():\n"
        "    os.write(2, b'native noise\\n')\n"
        "    print('python noise', file=sys.stderr)\n"
        "os.write(2, b'after\\n')\n"
        "print('still python', file=sys.stderr)\n"
    )
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err.split() == ["before", "after", "still", "python"]


def test_native_stderr_silenced_keeps_exceptions():
    from dejavu.track.native_log import native_stderr_silenced

    with pytest.raises(ValueError, match="kept"):
        with native_stderr_silenced():
            raise ValueError("kept")


def test_mediapipe_start_up_lines_are_silenced():
    """Detecting and segmenting a real face prints nothing of MediaPipe's own to stderr."""
    pytest.importorskip("mediapipe")
    pytest.importorskip("skimage")
    code = (
        "import sys\n"
        "from skimage.data import astronaut\n"
        "from dejavu.track.landmarks import LandmarkDetector\n"
        "from dejavu.track.segment import PersonSegmenter\n"
        "img = astronaut()\n"
        "with LandmarkDetector(video=True) as det:\n"
        "    assert det(img) is not None and det(img) is not None\n"
        "seg = PersonSegmenter()\n"
        "assert seg(img).max() > 0.5\n"
        "seg.close()\n"
        "print('done', file=sys.stderr)\n"
    )
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err.strip() == "done", err
