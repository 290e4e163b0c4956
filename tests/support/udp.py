"""A real UDP listener on a random loopback port that collects datagrams."""

from __future__ import annotations

import socket
import time


class UdpListener:
    """Receives statsd datagrams on 127.0.0.1:<random port>.

    A datagram sent by a process that has exited is already queued in the
    socket buffer, so collecting after the process ends needs only a short
    settle period to be sure nothing else is on its way.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.host, self.port = self.sock.getsockname()

    def collect(self, expect: int = 0, settle: float = 0.3, deadline: float = 5.0) -> list[bytes]:
        """Return the datagrams received so far.

        Waits until at least ``expect`` datagrams have arrived (at most
        ``deadline`` seconds), then keeps listening until ``settle`` seconds
        pass without a new one, so extra datagrams are seen too.
        """
        received: list[bytes] = []
        give_up = time.monotonic() + deadline
        while True:
            wait = settle if len(received) >= expect else max(0.0, give_up - time.monotonic())
            if wait <= 0:
                return received
            self.sock.settimeout(wait)
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                if len(received) >= expect or time.monotonic() >= give_up:
                    return received
                continue
            received.append(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "UdpListener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
