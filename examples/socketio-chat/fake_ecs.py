#!/usr/bin/env python3
"""A fake ECS on 127.0.0.1: the control plane tether polls, and the agent that runs
the tasks.

    python3 fake_ecs.py --count 3 --redis-socket PATH [--log-dir DIR]

Runs COUNT tasks of the service `chat` in the cluster `chat`, each a real
`node server.js chat-N` on a free port, and prints "LISTENING <port>" once they run.
Tasks are in bridge network mode with a dynamic host port, as on an EC2 container
instance: the container port is 3000, the host port the one the server bound, and
the container instance resolves (DescribeContainerInstances, then EC2
DescribeInstances) to 127.0.0.1.

The ECS and EC2 calls tether makes (selected by `X-Amz-Target`, as the AWS SDK sends
them; EC2 form-encoded with an XML answer):
    ListTasks, DescribeTasks, DescribeContainerInstances, ListServices,
    DescribeServices, EC2 DescribeInstances.

The deployment side (plain JSON over HTTP, what the ECS scheduler and agent do):
    GET  /fake/tasks             every task: arn, name, revision, port, statuses
    POST /fake/tasks?revision=N  start a task (PENDING, then RUNNING once it listens)
    POST /fake/stop?task=ARN     desiredStatus STOPPED (it still runs: the LB drains it)
    POST /fake/kill?task=ARN     SIGTERM the task; lastStatus STOPPED once it exited

A task whose process dies on its own becomes STOPPED too. Stopped tasks stay
listed (desiredStatus STOPPED) for a minute, as ECS keeps them for a while.
SIGTERM or SIGINT stops every task, then the fake (the tasks stay in the fake's
process group, so `run` stops them too if the fake itself is killed).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
REGION = "us-east-1"
ACCOUNT = "000000000000"
CLUSTER = "chat"
SERVICE = "chat"
CONTAINER = "chat"
CONTAINER_PORT = 3000
INSTANCE_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{CLUSTER}/loopback"
EC2_INSTANCE = "i-0000000000loopback"
TARGET_GROUP_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/chat/0000000000000000"
STOPPED_KEPT_SECONDS = 60


class Task:
    def __init__(self, number, revision):
        self.arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{uuid.uuid4().hex}"
        self.name = f"chat-{number}"
        self.revision = revision
        self.last = "PROVISIONING"
        self.desired = "RUNNING"
        self.port = 0
        self.proc = None
        self.stopped_at = None

    def view(self):
        return {
            "taskArn": self.arn,
            "name": self.name,
            "revision": self.revision,
            "hostPort": self.port,
            "pid": self.proc.pid if self.proc else None,
            "lastStatus": self.last,
            "desiredStatus": self.desired,
        }

    def described(self):
        return {
            "taskArn": self.arn,
            "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
            "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/chat:{self.revision}",
            "group": f"service:{SERVICE}",
            "launchType": "EC2",
            "lastStatus": self.last,
            "desiredStatus": self.desired,
            "healthStatus": "UNKNOWN",
            "containerInstanceArn": INSTANCE_ARN,
            "containers": [{
                "name": CONTAINER,
                "lastStatus": self.last,
                "networkBindings": [{
                    "bindIP": "0.0.0.0",
                    "containerPort": CONTAINER_PORT,
                    "hostPort": self.port,
                    "protocol": "tcp",
                }] if self.port else [],
            }],
        }


class FakeEcs:
    def __init__(self, redis_socket, log_dir):
        self.redis_socket = redis_socket
        self.log_dir = log_dir
        self.tasks = []
        self.started = 0
        self.lock = threading.Lock()

    # === the agent ===

    def start_task(self, revision):
        with self.lock:
            self.started += 1
            task = Task(self.started, revision)
            self.tasks.append(task)
        env = dict(os.environ, PORT="0", REDIS_SOCKET=self.redis_socket)
        log = open(os.path.join(self.log_dir, f"{task.name}.log"), "ab")
        task.last = "PENDING"
        task.proc = subprocess.Popen(
            ["node", os.path.join(HERE, "server.js"), task.name],
            stdout=subprocess.PIPE, stderr=log, env=env)
        threading.Thread(target=self._watch, args=(task,), daemon=True).start()
        return task

    def _watch(self, task):
        for line in task.proc.stdout:
            words = line.decode(errors="replace").split()
            if len(words) == 2 and words[0] == "LISTENING":
                with self.lock:
                    task.port = int(words[1])
                    task.last = "RUNNING"
                log(f"{task.name} RUNNING on 127.0.0.1:{task.port} ({short(task.arn)})")
        task.proc.wait()
        with self.lock:
            task.last = "STOPPED"
            task.desired = "STOPPED"
            task.stopped_at = time.time()
        log(f"{task.name} STOPPED (exit {task.proc.returncode})")

    def stop_task(self, arn):
        with self.lock:
            task = self.find(arn)
            if task and task.desired == "RUNNING":
                # lastStatus stays RUNNING: the task still serves, the LB drains it.
                task.desired = "STOPPED"
                log(f"{task.name} desiredStatus STOPPED")
        return task

    def kill_task(self, arn):
        with self.lock:
            task = self.find(arn)
        if task and task.proc and task.proc.poll() is None:
            task.desired = "STOPPED"
            task.last = "STOPPING"
            task.proc.terminate()
        return task

    def stop_all(self):
        with self.lock:
            procs = [t.proc for t in self.tasks if t.proc and t.proc.poll() is None]
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()

    def find(self, arn):
        return next((t for t in self.tasks if t.arn == arn), None)

    def listed(self):
        now = time.time()
        return [t for t in self.tasks
                if t.stopped_at is None or now - t.stopped_at < STOPPED_KEPT_SECONDS]

    # === the ECS and EC2 API ===

    def ecs(self, op, request):
        with self.lock:
            if op == "ListTasks":
                desired = request.get("desiredStatus", "RUNNING")
                if request.get("serviceName") not in (None, SERVICE):
                    return {"taskArns": []}
                return {"taskArns": [t.arn for t in self.listed() if t.desired == desired]}
            if op == "DescribeTasks":
                wanted = set(request.get("tasks") or [])
                return {"tasks": [t.described() for t in self.listed() if t.arn in wanted],
                        "failures": []}
            if op == "DescribeContainerInstances":
                return {"containerInstances": [
                    {"containerInstanceArn": INSTANCE_ARN, "ec2InstanceId": EC2_INSTANCE, "status": "ACTIVE"}
                ] if INSTANCE_ARN in (request.get("containerInstances") or []) else [], "failures": []}
            if op == "ListServices":
                return {"serviceArns": [f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{SERVICE}"]}
            if op == "DescribeServices":
                return {"services": [{
                    "serviceName": SERVICE,
                    "status": "ACTIVE",
                    "loadBalancers": [{"targetGroupArn": TARGET_GROUP_ARN,
                                       "containerName": CONTAINER,
                                       "containerPort": CONTAINER_PORT}],
                }], "failures": []}
        return None

    @staticmethod
    def ec2_describe_instances():
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            "<requestId>fake</requestId><reservationSet><item><reservationId>r-fake</reservationId>"
            f"<instancesSet><item><instanceId>{EC2_INSTANCE}</instanceId>"
            "<privateIpAddress>127.0.0.1</privateIpAddress></item></instancesSet>"
            "</item></reservationSet></DescribeInstancesResponse>"
        )


def short(arn):
    return arn.rsplit("/", 1)[-1][:8]


def log(message):
    print(f"fake-ecs: {message}", file=sys.stderr, flush=True)


def handler_for(fake):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body, content_type="application/json"):
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if urlparse(self.path).path == "/fake/tasks":
                with fake.lock:
                    return self.reply(200, [t.view() for t in fake.listed()])
            self.reply(404, {"message": "not found"})

        def do_POST(self):
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            if url.path == "/fake/tasks":
                task = fake.start_task(int(query.get("revision", "1")))
                return self.reply(200, task.view())
            if url.path in ("/fake/stop", "/fake/kill"):
                act = fake.stop_task if url.path == "/fake/stop" else fake.kill_task
                task = act(query.get("task", ""))
                if task is None:
                    return self.reply(404, {"message": "no such task"})
                return self.reply(200, task.view())
            target = self.headers.get("x-amz-target")
            if target is None:
                if b"Action=DescribeInstances" in raw:
                    return self.reply(200, fake.ec2_describe_instances(), "text/xml")
                return self.reply(400, "<Response><Errors><Error><Code>InvalidAction</Code>"
                                       "</Error></Errors></Response>", "text/xml")
            try:
                request = json.loads(raw or b"{}")
            except ValueError:
                request = {}
            answer = fake.ecs(target.rsplit(".", 1)[-1], request)
            if answer is None:
                return self.reply(400, {"__type": "InvalidParameterException", "message": target},
                                  "application/x-amz-json-1.1")
            self.reply(200, answer, "application/x-amz-json-1.1")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--redis-socket", required=True)
    parser.add_argument("--log-dir", default=".")
    args = parser.parse_args()

    fake = FakeEcs(args.redis_socket, args.log_dir)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
    server.daemon_threads = True

    def stop(*_):
        fake.stop_all()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(args.count):
        fake.start_task(1)
    deadline = time.time() + 30
    while time.time() < deadline:
        with fake.lock:
            if all(t.last == "RUNNING" for t in fake.tasks):
                break
        time.sleep(0.05)
    else:
        log("tasks did not start in 30 s")
        stop()
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
