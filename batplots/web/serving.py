"""The HTTP server's own limits, for a server exposed directly (no proxy in front).

uvicorn's default parser (httptools) takes a request line and headers of any size and
waits for them forever; batplots serves with h11 and these limits instead:

- MAX_HEADER_BYTES: the request line and headers together; more is 431, and the
  connection is closed (at most that much is ever buffered per connection).
- HEADER_TIMEOUT_S: from a connection's first byte (or from its opening, or from the
  first byte of a kept-alive connection's next request) until its headers are complete;
  later, the connection is closed without an answer.
- KEEP_ALIVE_S: how long an idle kept-alive connection stays open.
- MAX_CONNECTIONS: connections and requests at once; past it, 503.

Request bodies are bounded by the app (batplots.web.app.MAX_BODY_BYTES). A reverse
proxy in front (docs/security.md) brings its own limits and TLS.
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 1024


class LimitedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request line and headers."""

    header_timeout_s = HEADER_TIMEOUT_S  # read when a deadline is armed (tests shorten it)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # no answer: the client never finished asking

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm()  # a new request begins (on a kept-alive connection too)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if len(self.conn.trailing_data[0]) > MAX_HEADER_BYTES:
            self._refuse(431, f"the request line and headers are over {MAX_HEADER_BYTES} bytes; at most "
                              f"{MAX_HEADER_BYTES} are accepted")
            return
        super().send_400_response(msg)

    def _refuse(self, status: int, msg: str) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        self.transport.write(self.conn.send(h11.Response(status_code=status, headers=headers)))
        self.transport.write(self.conn.send(h11.Data(data=msg.encode("ascii"))))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()


def server_config(app, host: str, port: int, **extra) -> uvicorn.Config:
    """The uvicorn.Config batplots serves with: h11 with the limits above."""
    return uvicorn.Config(app, host=host, port=port, http=LimitedH11, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                          timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=MAX_CONNECTIONS, **extra)
