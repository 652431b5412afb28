"""A minimal WebSocket broadcaster (RFC 6455, server side): enough for ``dejavu live`` to push JSON to pages.

Text frames from the server to every connected page; client frames are read only to answer pings and
notice closes. No extensions, no fragmentation (pages send nothing we need). Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import struct
import threading

log = logging.getLogger(__name__)

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, final server frame (opcode 1: text, 8: close, 10: pong)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


class Broadcaster:
    """Accepts WebSocket clients on (host, port) in a thread; :meth:`send` pushes a text message to all.

    ``port`` 0 picks a free port (``self.port`` says which). ``clients_connected`` is set once a page is in.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8765):
        self.sock = socket.create_server((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.clients: list[socket.socket] = []
        self.lock = threading.Lock()
        self.clients_connected = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    raise ConnectionError("closed during handshake")
                data += chunk
            headers = {}
            for line in data.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            key = headers.get("sec-websocket-key")
            if headers.get("upgrade", "").lower() != "websocket" or not key:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                conn.close()
                return
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode())
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small messages: no Nagle delay
        except (OSError, ConnectionError, UnicodeDecodeError):
            conn.close()
            return
        with self.lock:
            self.clients.append(conn)
        self.clients_connected.set()
        self._read_loop(conn)

    def _read_loop(self, conn: socket.socket) -> None:
        """Read client frames: answer pings, drop the client on close or error."""
        try:
            while True:
                b = _recv_exact(conn, 2)
                opcode, n = b[0] & 0x0F, b[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", _recv_exact(conn, 2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", _recv_exact(conn, 8))[0]
                mask = _recv_exact(conn, 4) if b[1] & 0x80 else b"\0\0\0\0"
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(_recv_exact(conn, n)))
                if opcode == 0x8:
                    break
                if opcode == 0x9:
                    with self.lock:
                        conn.sendall(frame(payload, 0xA))
        except (OSError, ConnectionError):
            pass
        self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with self.lock:
            if conn in self.clients:
                self.clients.remove(conn)
        try:
            conn.close()
        except OSError:
            pass

    def send(self, text: str) -> int:
        """Send ``text`` to every client; the number reached."""
        data = frame(text.encode())
        with self.lock:
            clients = list(self.clients)
        sent = 0
        for conn in clients:
            try:
                with self.lock:
                    conn.sendall(data)
                sent += 1
            except OSError:
                self._drop(conn)
        return sent

    def close(self) -> None:
        self._closed = True
        with self.lock:
            clients, self.clients = list(self.clients), []
        for conn in clients:
            try:
                conn.sendall(frame(b"", 0x8))
                conn.close()
            except OSError:
                pass
        self.sock.close()


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A client connection to a :class:`Broadcaster` after the opening handshake (benchmarks and tests)."""
    conn = socket.create_connection((host, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall((f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed during handshake")
        reply += chunk
    if not reply.startswith(b"HTTP/1.1 101") or accept_key(key).encode() not in reply:
        raise ConnectionError(f"handshake refused: {reply.splitlines()[0]!r}")
    conn.settimeout(None)
    return conn


def receive(conn: socket.socket) -> str | None:
    """The next text message a server sends on ``conn`` (unmasked frames), or None once it closes."""
    try:
        b = _recv_exact(conn, 2)
        n = b[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", _recv_exact(conn, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", _recv_exact(conn, 8))[0]
        payload = _recv_exact(conn, n)
    except (OSError, ConnectionError):
        return None
    return None if b[0] & 0x0F == 0x8 else payload.decode()


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf
