"""`dejavu live`: the WebSocket broadcaster, the per-frame tracker's messages, and the page following a stream."""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import threading

import numpy as np
import pytest

from dejavu.web.websocket import Broadcaster, accept_key, frame


def test_accept_key_is_rfc6455():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3


@pytest.mark.parametrize("n", [5, 300, 70000])
def test_frame_lengths(n):
    data = frame(b"x" * n)
    assert data[0] == 0x81
    if n < 126:
        assert data[1] == n and len(data) == n + 2
    elif n < 65536:
        assert data[1] == 126 and int.from_bytes(data[2:4], "big") == n
    else:
        assert data[1] == 127 and int.from_bytes(data[2:10], "big") == n


def test_broadcaster_handshake_and_send():
    hub = Broadcaster("127.0.0.1", 0)
    try:
        client = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        client.sendall((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += client.recv(4096)
        assert reply.startswith(b"HTTP/1.1 101") and accept_key(key).encode() in reply
        assert hub.clients_connected.wait(5)
        assert hub.send('{"frame": 1}') == 1
        head = client.recv(2)
        assert head[0] == 0x81 and client.recv(head[1]) == b'{"frame": 1}'
        client.close()
    finally:
        hub.close()


def test_message_carries_every_parameter():
    import torch

    from dejavu.web.live import message

    p = {"expression": torch.rand(1, 6), "jaw": torch.zeros(1, 3), "eyes": torch.zeros(1, 6),
         "pose6": torch.tensor([[0.0, 0.3, 0.0, 0.0, 0.0, 1.0]])}
    m = json.loads(message(7, p, 12.5))
    assert m["frame"] == 7 and len(m["expression"]) == 6 and len(m["eyes"]) == 6 and m["latency_ms"] == 12.5
    np.testing.assert_allclose(m["head_rotation"], [0.3, 0.0, 0.0], atol=1e-5)  # pitch about +X


def _rolling_video(path, n: int = 60):
    """The astronaut (the one face allowed in the repo) tilting steadily from 0 to 15 degrees, 640x480."""
    from PIL import Image
    from skimage import data

    from dejavu.io import write_video

    img = Image.fromarray(data.astronaut())
    frames = []
    for t in range(n):
        canvas = Image.new("RGB", (640, 480), (90, 90, 90))
        canvas.paste(img.rotate(15.0 * t / (n - 1), resample=Image.BILINEAR, center=(250, 170)).resize((480, 480)),
                     (80, 0))
        frames.append(np.asarray(canvas))
    return write_video(path, frames, fps=25)


@pytest.mark.slow
def test_live_stream_moves_the_page(browser, tmp_path, procedural_head):
    from dejavu.io import read_image
    from dejavu.web.browser import run_page
    from dejavu.web.live import LiveConfig, run_live
    from tests.web.test_browser import _coloured_avatar

    avatar, _ = _coloured_avatar(procedural_head, 48)
    avatar.save(tmp_path / "avatar")
    n = 60
    video = _rolling_video(tmp_path / "roll.mp4", n)
    ready, box = threading.Event(), {}

    def on_ready(url):
        box["url"] = url
        ready.set()

    def serve():
        try:
            box["summary"] = run_live(str(video), tmp_path / "avatar", LiveConfig(realtime=True), port=0, ws_port=0,
                                      wait_client=120, site_dir=tmp_path / "site", progress=False, on_ready=on_ready)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(300) and "error" not in box, box.get("error")
    url = box["url"].replace("index.html?", "index.html?size=256&")
    run_page(url, [{"op": "waitLive", "frames": 1, "timeout_ms": 240000},
                   {"op": "screenshot", "path": str(tmp_path / "early.png")},
                   {"op": "waitLive", "frames": n, "timeout_ms": 240000},
                   {"op": "settle", "n": 8},
                   {"op": "screenshot", "path": str(tmp_path / "late.png")}], size=256)
    thread.join(60)
    summary = box["summary"]
    assert summary["frames_tracked"] == n and summary["frames_without_face"] == 0
    assert summary["fps"] > 0 and math.isfinite(summary["latency_ms_median"])
    early, late = read_image(tmp_path / "early.png"), read_image(tmp_path / "late.png")
    changed = np.abs(early - late).max(-1) > 0.1
    assert changed.mean() > 0.005, f"the page barely changed between the stream's first and last frames ({changed.mean():.4f})"
