"""Real local receivers for alert tests: an SMTP server (aiosmtpd), an HTTP receiver for apprise's
``json://`` (http.server), and an SMTP server that accepts connections and never answers. All on
loopback, on free ports; nothing leaves the machine."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout_s: float = 20.0, step_s: float = 0.05):
    """Poll ``pred`` until it returns something truthy (returned) or the time is up (None)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step_s)
    return None


class SmtpServer:
    """aiosmtpd on 127.0.0.1: ``messages`` holds ``email.message.EmailMessage`` objects."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self.envelopes: list = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.envelopes.append(envelope)
                outer.messages.append(email.message_from_bytes(envelope.content,
                                                               policy=email.policy.default))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def url(self, to: str = "ops@example.org") -> str:
        return (f"mailto://127.0.0.1:{self.port}?mode=insecure&from=tenmon@example.org"
                f"&to={to}")

    @staticmethod
    def text(msg) -> str:
        """Subject and every text part of a message, decoded."""
        parts = [str(msg["Subject"])]
        for part in msg.walk():
            if part.get_content_type() == "text/plain":
                parts.append(part.get_content())
        return "\n".join(parts)

    def texts(self) -> list[str]:
        return [self.text(m) for m in self.messages]

    def stop(self) -> None:
        self.controller.stop()


class HttpReceiver:
    """An HTTP server for apprise's ``json://`` target: ``posts`` holds the decoded bodies."""

    def __init__(self, status: int = 200):
        self.posts: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    outer.posts.append(json.loads(body))
                except ValueError:
                    outer.posts.append({"raw": body.decode("utf-8", "replace")})
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "alerts") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HangingSmtp:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (a wedged mail server)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted.append(conn)

    def url(self) -> str:
        return (f"mailto://127.0.0.1:{self.port}?mode=insecure&from=tenmon@example.org"
                "&to=ops@example.org")

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(2)
        for c in self.accepted:
            c.close()
        self.sock.close()
