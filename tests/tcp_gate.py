"""A TCP forwarder a test can shut and open: a database (or any server) "down" and back; or
whose carried connections it can make go silent: a half-open link (a partition)."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpGate:
    """A TCP forwarder in front of a server (an address, or a Unix socket's path) that can be
    shut: a process connecting through it while shut finds the server down (connection
    refused, as in a restart). ``silence`` makes the connections carried so far go silent
    instead (what is sent is swallowed, nothing comes back, nothing is closed) while new
    ones are carried, as after a partition that healed for new flows only."""

    def __init__(self, target: tuple[str, int] | str, *, open: bool = False):
        self.target = target
        self.open = threading.Event()
        if open:
            self.open.set()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.links: list = []
        self.lock = threading.Lock()
        self.flags: list[dict] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            # Under the lock: a connection accepted as the gate shuts is dropped with the
            # others, never carried on past it.
            with self.lock:
                if not self.open.is_set():
                    client.close()  # the server is "down"
                    continue
                upstream = self._connect()
                flag = {"silent": False}
                self.links += [client, upstream]
                self.flags.append(flag)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b, flag), daemon=True).start()

    def _connect(self) -> socket.socket:
        if isinstance(self.target, str):  # a Unix socket (the tests' embedded Redis)
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            return upstream
        return socket.create_connection(self.target)

    @staticmethod
    def _pipe(a, b, flag):
        try:
            while data := a.recv(65536):
                if not flag["silent"]:
                    b.sendall(data)
        except OSError:
            pass
        finally:
            # shutdown before close, as in ``shut``: the other direction's thread waits in
            # recv on these sockets, and a close alone does nothing while it does (the
            # server never saw the connection end, and a later test counted it).
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def silence(self):
        """Every connection carried so far goes silent; later ones are carried."""
        with self.lock:
            for flag in self.flags:
                flag["silent"] = True

    def shut(self):
        with self.lock:
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
