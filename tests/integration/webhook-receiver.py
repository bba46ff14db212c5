"""A small Flagger webhook receiver for the kubesim Flagger test.

Listens on 127.0.0.1 (ephemeral port, written to the file given as argv[1]), appends
every POST as one JSON line {"path", "body"} to argv[2], and answers with the status
code named by the last path segment when it is a number ("/hook/500"), else 200.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps({"path": self.path, "body": parsed}) + "\n")
        last = self.path.rstrip("/").rsplit("/", 1)[-1]
        code = int(last) if last.isdigit() else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os  # noqa: E402

os.rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.serve_forever()
