"""A minimal ECS API endpoint on 127.0.0.1 for the discovery scenario of `run`.

Answers ListTasks and DescribeTasks (JSON selected by the `X-Amz-Target` header, as
the real aws-sdk-ecs client sends them) with awsvpc tasks whose ENI addresses are
loopback addresses given by the caller. With `churn` on, every DescribeTasks flips the
last task in or out, so each discovery poll changes tether's targets (a routing
rebuild, a new target entering through its health check, a leaving one draining).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeEcs:
    def __init__(self, addresses, port):
        self.addresses = addresses  # ENI IPv4 addresses, one task each
        self.port = port  # containerPort
        self.churn = False
        self.flip = False
        self.changes = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    request = {}
                op = (self.headers.get("x-amz-target") or "").rsplit(".", 1)[-1]
                body = fake.answer(op, request)
                data = json.dumps(body).encode()
                self.send_response(400 if "__type" in body else 200)
                self.send_header("content-type", "application/x-amz-json-1.1")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def tasks(self):
        addresses = list(self.addresses)
        if self.flip:
            addresses = addresses[:-1]
        return [(f"arn:aws:ecs:us-east-1:1:task/bench/{i}", ip) for i, ip in enumerate(self.addresses)
                if ip in addresses]

    def answer(self, op, request):
        with self.lock:
            if op == "ListTasks":
                if request.get("desiredStatus") == "STOPPED":
                    return {"taskArns": []}
                return {"taskArns": [arn for arn, _ in self.tasks()]}
            if op == "DescribeTasks":
                # One DescribeTasks per poll: flip here, not in ListTasks (called
                # once per desired status).
                if self.churn:
                    self.flip = not self.flip
                    self.changes += 1
                return {"tasks": [{
                    "taskArn": arn,
                    "group": "service:bench",
                    "lastStatus": "RUNNING",
                    "desiredStatus": "RUNNING",
                    "attachments": [{"type": "ElasticNetworkInterface", "details": [
                        {"name": "privateIPv4Address", "value": ip}]}],
                    "containers": [{"name": "app"}],
                } for arn, ip in self.tasks()], "failures": []}
        return {"__type": "InvalidParameterException", "message": op}
