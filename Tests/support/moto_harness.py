#!/usr/bin/env python3
"""Starts moto_server on a free loopback port with signature checking switched on, and
provisions temporary credentials (an IAM role assumed through STS, with a session token,
as Lambda hands out). Prints one JSON line:
  {"endpoint": "http://127.0.0.1:PORT", "region": ..., "accessKeyId": ..., "secretAccessKey": ..., "sessionToken": ...}
then keeps moto running until its stdin closes (the test process ended), and stops it.
Used by the Swift tests (Tests/TestSupport/MotoServer.swift) and by scripts/bench."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

REGION = "eu-west-1"

# moto_server answers each request on a thread of its own, and its DynamoDB backend checks a
# ConditionExpression and then writes, with nothing in between to stop a concurrent request.
# DynamoDB applies each conditional write atomically, and the tests race several processes on
# one conditional put (the message ledger's claim), so moto runs here with one request at a
# time inside the application (still on threads, so an idle keep-alive connection holds
# nothing up). Without it, two racing claims could both succeed under load.
SERVE_ONE_AT_A_TIME = """
import sys, threading
from moto import server
from moto.moto_server import werkzeug_app
lock = threading.Lock()
dispatch = werkzeug_app.DomainDispatcherApplication.__call__
def one_at_a_time(self, environ, start_response):
    with lock:
        result = dispatch(self, environ, start_response)
        try:
            return list(result)
        finally:
            if hasattr(result, "close"):
                result.close()
werkzeug_app.DomainDispatcherApplication.__call__ = one_at_a_time
server.main(sys.argv[1:])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE_ONE_AT_A_TIME, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).read()
                break
            except Exception:
                if server.poll() is not None:
                    print(json.dumps({"error": "moto_server exited"}), flush=True)
                    return 1
                time.sleep(0.05)
        import boto3  # installed with moto

        def post(path: str, body: str) -> None:
            request = urllib.request.Request(endpoint + path, data=body.encode(), method="POST", headers={"Content-Type": "text/plain"})
            urllib.request.urlopen(request, timeout=30).read()

        # The next 3 actions go through unchecked: just enough to provision a role and assume it.
        post("/moto-api/reset-auth", "3")
        boot = dict(region_name=REGION, endpoint_url=endpoint, aws_access_key_id="AKIDBOOTSTRAP",
                    aws_secret_access_key="bootstrap")
        iam = boto3.client("iam", **boot)
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName="functions", AssumeRolePolicyDocument=json.dumps(trust))
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_role_policy(RoleName="functions", PolicyName="all", PolicyDocument=json.dumps(policy))
        creds = boto3.client("sts", **boot).assume_role(
            RoleArn="arn:aws:iam::123456789012:role/functions", RoleSessionName="tests")["Credentials"]
        # From now on every request must carry a valid signature from known credentials.
        post("/moto-api/reset-auth", "0")
        print(json.dumps({
            "endpoint": endpoint, "region": REGION, "accessKeyId": creds["AccessKeyId"],
            "secretAccessKey": creds["SecretAccessKey"], "sessionToken": creds["SessionToken"],
        }), flush=True)
        sys.stdin.read()  # until the parent goes away
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
