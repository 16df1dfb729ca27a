"""A TCP relay to a real server that can go silent, as a NAT or firewall that forgets a flow.

Going silent is what makes a connection half-open: both ends keep their sockets, bytes
sent go nowhere, nothing comes back, and no FIN or RST ever arrives. Only a timeout (or
TCP keepalive, minutes later) can tell. This is the one failure Dovecot cannot be asked
to produce, so the tests put this relay between the worker and Dovecot.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

_CHUNK = 65536


@dataclass
class _Flow:
    client: socket.socket
    upstream: socket.socket | None
    silenced: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


class SilentRelay:
    """Relays a port of its own on `host` to the server; `silence()` black-holes every flow.

    Flows opened while silenced are black holes too (no server greeting ever comes).
    After `restore()`, new flows reach the server again; silenced flows stay dead.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        # Same address as the server, other port: its certificate still names the host.
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._silent = threading.Event()
        self._flows: list[_Flow] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="silent-relay", daemon=True).start()

    def silence(self) -> None:
        with self._lock:
            self._silent.set()
            for flow in self._flows:
                flow.silenced.set()

    def restore(self) -> None:
        self._silent.clear()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for flow in self._flows:
                flow.close()

    def __enter__(self) -> SilentRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                silent = self._silent.is_set()
            upstream = None if silent else socket.create_connection(self._target, timeout=5)
            if upstream is not None:
                upstream.settimeout(None)
            flow = _Flow(client, upstream)
            if silent:
                flow.silenced.set()
            with self._lock:
                self._flows.append(flow)
            threading.Thread(target=self._pump, args=(flow, client, upstream), daemon=True).start()
            if upstream is not None:
                threading.Thread(
                    target=self._pump, args=(flow, upstream, client), daemon=True
                ).start()

    @staticmethod
    def _pump(flow: _Flow, source: socket.socket, sink: socket.socket | None) -> None:
        """Copy bytes one way until either side closes; swallow them once silenced."""
        try:
            while data := source.recv(_CHUNK):
                if sink is not None and not flow.silenced.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        if not flow.silenced.is_set():
            flow.close()  # a real close is passed on; a silenced flow never tells
