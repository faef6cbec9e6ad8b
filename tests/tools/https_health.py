#!/usr/bin/env python3
"""Test double for `https://<domain>/health`.

Usage: https_health.py --port P --cert server.pem --key server.key [--fail-first N] [--status S]
Answers GET /health with 200 (after N answers of 503 when --fail-first N), anything else 404.
Prints "listening <port>" once ready. Stdlib only (http.server + ssl)."""
import argparse, http.server, ssl, sys, threading
p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True); p.add_argument("--cert", required=True)
p.add_argument("--key", required=True); p.add_argument("--fail-first", type=int, default=0)
p.add_argument("--status", type=int, default=200)
a = p.parse_args()
lock = threading.Lock(); seen = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with lock:
            seen["n"] += 1; n = seen["n"]
        if self.path != "/health":
            code = 404
        else:
            code = 503 if n <= a.fail_first else a.status
        body = b'{"status":"ok"}' if code == 200 else b'{"status":"starting"}'
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.headers.get("Host"), fmt % args))
srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(a.cert, a.key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("listening", a.port, flush=True)
srv.serve_forever()
