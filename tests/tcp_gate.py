"""A TCP forwarder a test can shut and open: a database (or any server) "down" and back."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpGate:
    """A TCP forwarder in front of PostgreSQL that can be shut: a worker connecting through
    it while shut finds the database down (connection refused, as in a restart)."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.open = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.links: list = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()  # the database is "down"
                continue
            upstream = socket.create_connection(self.target)
            self.links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def shut(self):
        self.open.clear()
        for s in self.links:  # what is connected drops, as in a restart
            # shutdown first: a close alone, while a pipe thread waits in recv on the
            # socket, sends nothing until that recv returns.
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        self.links.clear()

    def close(self):
        self.shut()
        self.server.close()
