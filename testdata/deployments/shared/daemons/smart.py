"""A service that daemonizes itself and writes a pidfile (smart-attach-daemon)."""
import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(("smart daemon on %s\n" % sys.argv[2]).encode())

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
if os.fork():
    os._exit(0)
os.setsid()
with open(sys.argv[1], "w") as f:
    f.write("%d\n" % os.getpid())
server.serve_forever()
