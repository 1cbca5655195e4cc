"""What the proxies talk to besides the fast upstream Envoy (envoy.upstream_bootstrap):
the echo server probes use, and the ext_authz peer's verifier process."""

import http.server
import subprocess
import threading

from .common import BenchError
from .signer import SECRET


class EchoServer:
    """Answers every POST with the body it received (probe requests only:
    the proxies route a request carrying envoy.ECHO_HEADER here)."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Verifier:
    """The ext_authz peer's verifier (bench/ext-authz-verifier), pinned with
    the proxy it serves: its CPU counts as that proxy's."""

    def __init__(self, binary, cpus, tolerance_s=3600):
        cmd = [str(binary), "127.0.0.1:0", SECRET, str(tolerance_s)]
        if cpus:
            cmd = ["taskset", "-c", cpus] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise BenchError(f"ext-authz-verifier did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(line.rsplit(":", 1)[1])
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
