#!/usr/bin/env python3
"""A token-bucket proxy in front of moto, for bench/throttle.sh: it admits
RATE requests a second with a burst of RATE (a full bucket to start) and
answers every other request as IAM does when it throttles: HTTP 400 with
the `Throttling` error, not forwarded.

    throttle_proxy.py PORT UPSTREAM_URL RATE

`GET /__stats` answers `SENT THROTTLED` (requests received, requests
throttled), `GET /__timeline` when each throttle was answered (seconds
since the reset, one a line), and `POST /__reset` refills the bucket and zeroes the counts;
neither is forwarded. Only the standard library: it runs with any Python 3.
"""

import http.client
import http.server
import sys
import threading
import time
import urllib.parse

THROTTLED = (
    b'<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
    b"<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
    b"</Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
)


class Bucket:
    def __init__(self, rate):
        self.rate = rate
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.tokens = self.rate
            self.at = time.monotonic()
            self.started = self.at
            self.sent = 0
            self.throttled = 0
            self.timeline = []

    def admit(self):
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
            self.at = now
            self.sent += 1
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            self.throttled += 1
            self.timeline.append(now - self.started)
            return False


def handler(upstream, bucket):
    host, port = upstream.hostname, upstream.port or 80
    local = threading.local()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body, content_type="text/plain"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self, body):
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            for attempt in range(2):
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    break
                except (http.client.HTTPException, OSError):
                    conn.close()
                    local.conn = None
                    if attempt:
                        raise
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/__stats":
                with bucket.lock:
                    stats = f"{bucket.sent} {bucket.throttled}\n".encode()
                return self.reply(200, stats)
            if self.path == "/__timeline":
                with bucket.lock:
                    times = "".join(f"{t:.3f}\n" for t in bucket.timeline).encode()
                return self.reply(200, times)
            self.handle_request()

        def do_POST(self):
            if self.path == "/__reset":
                bucket.reset()
                return self.reply(200, b"ok\n")
            self.handle_request()

        def handle_request(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if not bucket.admit():
                return self.reply(400, THROTTLED, "text/xml")
            self.forward(body)

    return Handler


def main():
    port, upstream, rate = int(sys.argv[1]), urllib.parse.urlparse(sys.argv[2]), float(sys.argv[3])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler(upstream, Bucket(rate)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
