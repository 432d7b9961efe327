"""A bound on the size of a request's head (request line + headers).

uvicorn's httptools protocol has none: a client could send megabytes of headers
and the server would buffer them all. This protocol counts the bytes received
while a request's head is incomplete and answers 431 (OpenAI's error shape)
once they pass the limit, closing the connection, before the request reaches
the app.

The limit is a class attribute because uvicorn builds the protocol itself:
``bounded_protocol(limit)`` makes the class to pass as ``uvicorn.Config(http=...)``.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from genarm.server.errors import error_body
from genarm.server.json_safe import json_bytes


class BoundedHeadProtocol(HttpToolsProtocol):
    max_head_bytes = 64 * 1024

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between requests, the next bytes start a head
        self._unparsed_head_bytes = 0  # received while the head is incomplete
        self._parsed_head_bytes = 0  # the URL and headers the parser has handed over
        self._completed = 0  # requests whose message has ended
        self._refused = False

    # Two counts, one per way a head can grow: a head that never ends (raw bytes
    # while it is incomplete) and a head that ends in the read that also carries
    # its last headers (the parser's callbacks, before the request is dispatched).

    def on_message_begin(self) -> None:
        self._parsed_head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._parsed_head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._unparsed_head_bytes = 0
        if self._parsed_head_bytes > self.max_head_bytes:
            self._refuse_head()  # before uvicorn dispatches the request
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._in_head = True
        self._completed += 1

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # Count ``data`` only if a head was incomplete before and after it, with no
        # request ending in between: then every byte of it was head.
        was_in_head, completed = self._in_head, self._completed
        super().data_received(data)
        if self._refused or not (was_in_head and self._in_head and completed == self._completed):
            return
        self._unparsed_head_bytes += len(data)
        if self._unparsed_head_bytes > self.max_head_bytes:
            self._refuse_head()

    def _refuse_head(self) -> None:
        message = f"request line and headers larger than {self.max_head_bytes} bytes"
        body = json_bytes(error_body(431, message, None, "headers_too_large"))
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n"
        )
        self._refused = True
        if not self.transport.is_closing():
            self.transport.write(head + body)
            self.transport.close()  # asyncio reads no more from it


def bounded_protocol(max_head_bytes: int) -> type[BoundedHeadProtocol]:
    return type("BoundedHeadProtocol", (BoundedHeadProtocol,), {"max_head_bytes": max_head_bytes})
