"""Local fake gateways for messaging tests and bench: an SMTP server (aiosmtpd) and an HTTP SMS/WeChat gateway.

Both bind 127.0.0.1 on a free port. The HTTP gateway answers by path: /ok (200, deduplicates by
Idempotency-Key like a real gateway), /fail (500), /reject (400), /hang (sleeps past any client timeout).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpSink:
    messages: list[Any] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)  # the client end of the connection each message came on

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        self.messages.append(envelope)
        self.peers.append(session.peer)
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server(port: int | None = None) -> Iterator[tuple[int, SmtpSink]]:
    """A local SMTP server (on `port`, to restart one in place, or a free one); stopping it drops its clients."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    port = port or free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, sink
    finally:
        controller.stop()


@dataclass
class HttpLog:
    requests: list[dict[str, Any]] = field(default_factory=list)
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(log: HttpLog, hang_seconds: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
            return

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            key = self.headers.get("Idempotency-Key", "")
            with log.lock:
                log.requests.append({"path": self.path, "body": body, "key": key,
                                     "auth": self.headers.get("Authorization")})
            if self.path == "/hang":
                time.sleep(hang_seconds)
                return self._answer(200, {"id": "late"})
            if self.path == "/fail":
                return self._answer(500, {"error": "internal"})
            if self.path == "/reject":
                return self._answer(400, {"error": "bad number"})
            with log.lock:
                log.delivered.setdefault(key, body)
            return self._answer(200, {"id": f"gw-{key}"})

        def _answer(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout test)

    return Handler


@contextmanager
def http_gateway(hang_seconds: float = 3.0) -> Iterator[tuple[str, HttpLog]]:
    log = HttpLog()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(log, hang_seconds))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
