"""Loopback HTTP servers that misbehave on purpose, for deadline tests (the outside world is
the one thing tests may fake).

:class:`TrickleServer` reads one HTTP request per connection and answers it slowly: with
``mode="headers"`` it sends a status line and then one header line every ``interval_s``
seconds, never ending the headers; with ``mode="body"`` it sends complete headers for a long
body and then one byte of it every ``interval_s`` seconds. Each single read of the client
therefore succeeds quickly, which is what defeats a per-read socket timeout.
"""

from __future__ import annotations

import socket
import threading
import time


class TrickleServer:
    def __init__(self, mode: str, interval_s: float = 0.05, limit_s: float = 60.0):
        if mode not in ("headers", "body"):
            raise ValueError(f"mode must be 'headers' or 'body', got {mode!r}")
        self.mode = mode
        self.interval_s = interval_s
        self.limit_s = limit_s  # a safety net so a test bug cannot leave a thread for ever
        self.requests = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._closed = threading.Event()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/search"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._read_request(conn)
                self.requests += 1
                end = time.monotonic() + self.limit_s
                if self.mode == "headers":
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    chunk = b"X-Padding: trickle\r\n"
                else:
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000000\r\n\r\n"
                    )
                    chunk = b" "
                while not self._closed.is_set() and time.monotonic() < end:
                    conn.sendall(chunk)
                    time.sleep(self.interval_s)
            except OSError:
                return  # the client hung up: what a deadline should make it do

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                raise OSError("client closed before sending a request")
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            piece = conn.recv(65536)
            if not piece:
                break
            body += piece

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
