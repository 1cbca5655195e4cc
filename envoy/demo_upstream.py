#!/usr/bin/env python3
"""Demo upstreams for `make run`: each port answers with a JSON echo of the
request it received (method, path, headers, body), so you can see what the
filter forwarded: masked bodies, x-verified-signature, the chosen cluster.

Usage: demo_upstream.py NAME=PORT [NAME=PORT ...]
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handler_for(name):
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _echo(self):
            length = int(self.headers.get("content-length") or 0)
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    body += self.rfile.read(size)
                    self.rfile.readline()
            else:
                body = self.rfile.read(length) if length else b""
            reply = json.dumps(
                {
                    "upstream": name,
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                },
                indent=2,
            ).encode() + b"\n"
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = do_PUT = _echo

        def log_message(self, fmt, *args):
            sys.stderr.write(f"[{name}] {self.command} {self.path}\n")

    return Echo


def main():
    servers = []
    for spec in sys.argv[1:] or ["default=18080"]:
        name, port = spec.split("=")
        server = ThreadingHTTPServer(("127.0.0.1", int(port)), handler_for(name))
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"demo upstream {name} on 127.0.0.1:{port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
