import http.server, json, os, socket, subprocess, sys, time, urllib.parse

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path, _, arg = self.path.partition("?")
        arg = urllib.parse.unquote(arg)
        if path == "/drip":
            # An answer that never ends: a byte every half second.
            while True:
                self.wfile.write(b"H")
                self.wfile.flush()
                time.sleep(0.5)
        try:
            if path == "/env":
                body = json.dumps(dict(os.environ))
            elif path == "/pid":
                body = "ok %d" % os.getpid()
            elif path == "/read":
                with open(arg, "rb") as f:
                    body = "ok " + f.read(64).decode(errors="replace")
            elif path == "/write":
                with open(arg, "w") as f:
                    f.write("written")
                body = "ok"
            elif path == "/connect":
                host, port = arg.rsplit(":", 1)
                socket.create_connection((host, int(port)), timeout=2).close()
                body = "ok"
            elif path == "/fork":
                children = []
                try:
                    for _ in range(int(arg)):
                        children.append(subprocess.Popen(["sleep", "60"]))
                except OSError:
                    pass
                for child in children:
                    child.kill()
                    child.wait()
                body = "started %d" % len(children)
            elif path == "/alloc":
                block = bytearray(int(arg) * 1024 * 1024)
                body = "ok %d" % len(block)
            else:
                body = "ok " + self.path
        except Exception as e:
            body = "refused " + type(e).__name__
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

def main():
    if "AGENT_BIND" in os.environ:
        # Started by hand: the agent binds its own socket.
        host, port = os.environ["AGENT_BIND"].rsplit(":", 1)
        sock = socket.create_server((host, int(port)))
    else:
        sock = socket.socket(fileno=3)
    server = http.server.HTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
    server.socket = sock
    print("serving", flush=True)
    server.serve_forever()

if __name__ == "__main__":
    main()
