"""A web site for the egress tests' own "internet": runs in a container the test
starts on a Docker network it creates (standard library only).

/table.html     an HTML table of three cities
/api/items      the same as JSON
/to-private     302 to http://10.1.2.3/ (a private address)
/bytes/N        N bytes with a Content-Length
/stream/N       N bytes, chunked (no length known in advance)
/echo           what the request looked like (method, path, headers), as JSON
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CITIES = [("Lisbon", 545_000, 100.1), ("Porto", 232_000, 41.4), ("Braga", 193_000, 183.4)]
TABLE = (
    "<!DOCTYPE html><html><head><title>Cities</title></head><body><h1>Cities</h1>"
    "<table id='cities'><thead><tr><th>City</th><th>Population</th><th>Area</th></tr></thead>"
    "<tbody>"
    + "".join(f"<tr><td>{n}</td><td>{p}</td><td>{a}</td></tr>" for n, p, a in CITIES)
    + "</tbody></table></body></html>"
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm
    # holds the body for the client's delayed ACK (40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/table.html":
            self._send(200, TABLE.encode(), "text/html; charset=utf-8")
        elif url.path == "/api/items":
            items = [{"city": n, "population": p, "area_km2": a} for n, p, a in CITIES]
            self._send(200, json.dumps({"items": items}).encode(), "application/json")
        elif url.path == "/to-private":
            self._send(302, b"", "text/plain", Location="http://10.1.2.3/")
        elif url.path.startswith("/bytes/"):
            size = int(url.path.rsplit("/", 1)[1])
            self._send(200, b"x" * size, "application/octet-stream")
        elif url.path.startswith("/stream/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = int(url.path.rsplit("/", 1)[1])
            while left > 0:
                piece = min(left, 65536)
                self.wfile.write(f"{piece:x}\r\n".encode() + b"y" * piece + b"\r\n")
                left -= piece
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/echo":
            seen = {"method": "GET", "path": self.path, "headers": dict(self.headers.items())}
            self._send(200, json.dumps(seen).encode(), "application/json")
        else:
            self._send(404, b"not found", "text/plain")


def serve(ports: list[int]) -> None:
    """Plain HTTP on each port (443 too: a CONNECT tunnel carries whatever the
    client speaks, and the tests speak HTTP through it)."""
    servers = [ThreadingHTTPServer(("0.0.0.0", port), Handler) for port in ports]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    serve([int(port) for port in sys.argv[1:]] or [80])
