"""A loopback TCP proxy in front of PostgreSQL that counts round trips.

A round trip is a flight of the client's: bytes it sends with no reply from the server in
between. psycopg and libpq talk through the proxy unchanged; the count is what the client waited
for, whatever the driver does underneath.
"""

from __future__ import annotations

import socket
import threading


class RoundTrips:
    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._last: dict[int, str] = {}  # per connection: who sent last
        self.count = 0
        self._sockets: list[socket.socket] = [self._listener]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            for end in (client, server):
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            key = client.fileno()
            for source, target, side in ((client, server, "client"), (server, client, "server")):
                thread = threading.Thread(target=self._pump, args=(source, target, side, key), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, target: socket.socket, side: str, key: int) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    target.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self._lock:
                if side == "client" and self._last.get(key) != "client":
                    self.count += 1
                self._last[key] = side
            target.sendall(data)

    def close(self) -> None:
        for end in self._sockets:  # shutdown wakes the threads blocked on them; close alone may not
            for step in (lambda: end.shutdown(socket.SHUT_RDWR), end.close):
                try:
                    step()
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(timeout=5)
