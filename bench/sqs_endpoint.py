"""A minimal local SQS endpoint (the JSON protocol botocore speaks) whose calls cost the same
at any depth, for ``bench.eventbridge``.

moto's SQS recomputes every queue attribute (three scans of all its messages) for each message
it returns and scans the queue again for each deletion, so on a deep queue moto, not the
consumer, sets the pace. This endpoint keeps SQS's semantics that matter to a consumer (long
polls, up to 10 messages a receive, a message hidden for the visibility timeout and delivered
again unless deleted, receipt handles, ``ApproximateReceiveCount``, batch deletes) with a deque
and a dict, so a drain measures the consumer.

    python -m bench.sqs_endpoint --port 9324
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACCOUNT = "123456789012"


class Queue:
    def __init__(self, arn: str, visibility: int):
        self.arn, self.visibility = arn, visibility
        self.visible: deque = deque()  # messages: {"id", "body", "md5", "receives"}
        self.in_flight: dict[str, tuple[float, dict]] = {}  # receipt handle -> (visible again at, message)
        self.deadlines: deque = deque()  # (visible again at, handle), in the order they were received
        self.changed = threading.Condition()

    def send(self, bodies: list[str]) -> list[dict]:
        sent = []
        with self.changed:
            for body in bodies:
                message = {"id": str(uuid.uuid4()), "body": body, "md5": hashlib.md5(body.encode()).hexdigest()}
                message["receives"] = 0
                self.visible.append(message)
                sent.append(message)
            self.changed.notify_all()
        return sent

    def _reappear(self, now: float) -> bool:
        while self.deadlines and self.deadlines[0][0] <= now:
            _, handle = self.deadlines.popleft()
            entry = self.in_flight.pop(handle, None)
            if entry is not None:
                self.visible.append(entry[1])
        return bool(self.visible)

    def receive(self, count: int, wait: float, visibility: int | None) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + wait
        with self.changed:
            while not self._reappear(time.time()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self.changed.wait(min(left, 1.0))  # 1 s: a hidden message may become visible meanwhile
            hidden_until = time.time() + (self.visibility if visibility is None else visibility)
            taken = []
            while self.visible and len(taken) < count:
                message = self.visible.popleft()
                message["receives"] += 1
                handle = uuid.uuid4().hex
                self.in_flight[handle] = (hidden_until, message)
                self.deadlines.append((hidden_until, handle))
                taken.append((handle, message))
            return taken

    def delete(self, handles: list[str]) -> list[bool]:
        with self.changed:
            return [self.in_flight.pop(handle, None) is not None for handle in handles]

    def counts(self) -> dict:
        with self.changed:
            self._reappear(time.time())
            return {
                "ApproximateNumberOfMessages": str(len(self.visible)),
                "ApproximateNumberOfMessagesNotVisible": str(len(self.in_flight)),
            }


class Endpoint:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.queues: dict[str, Queue] = {}

    def queue(self, request: dict) -> Queue:
        return self.queues[request["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]]

    def CreateQueue(self, request: dict) -> dict:  # the API's action names
        name = request["QueueName"]
        visibility = int(request.get("Attributes", {}).get("VisibilityTimeout", 30))
        self.queues.setdefault(name, Queue(f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}", visibility))
        return {"QueueUrl": f"{self.base_url}/{ACCOUNT}/{name}"}

    def GetQueueAttributes(self, request: dict) -> dict:
        queue = self.queue(request)
        attributes = {"QueueArn": queue.arn, "VisibilityTimeout": str(queue.visibility)}
        return {"Attributes": {**attributes, "MessageRetentionPeriod": "345600", **queue.counts()}}

    def SendMessageBatch(self, request: dict) -> dict:
        entries = request["Entries"]
        sent = self.queue(request).send([e["MessageBody"] for e in entries])
        return {
            "Successful": [
                {"Id": e["Id"], "MessageId": m["id"], "MD5OfMessageBody": m["md5"]} for e, m in zip(entries, sent)
            ]
        }

    def ReceiveMessage(self, request: dict) -> dict:
        taken = self.queue(request).receive(
            min(10, int(request.get("MaxNumberOfMessages", 1))),
            float(request.get("WaitTimeSeconds", 0)),
            request.get("VisibilityTimeout"),
        )
        return {
            "Messages": [
                {
                    "MessageId": m["id"],
                    "ReceiptHandle": handle,
                    "MD5OfBody": m["md5"],
                    "Body": m["body"],
                    "Attributes": {"ApproximateReceiveCount": str(m["receives"])},
                }
                for handle, m in taken
            ]
        }

    def DeleteMessageBatch(self, request: dict) -> dict:
        entries = request["Entries"]
        done = self.queue(request).delete([e["ReceiptHandle"] for e in entries])
        answer: dict = {"Successful": [], "Failed": []}
        for entry, ok in zip(entries, done):
            if ok:
                answer["Successful"].append({"Id": entry["Id"]})
            else:
                answer["Failed"].append({"Id": entry["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid"})
        return answer


def serve(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    endpoint = Endpoint(f"http://{host}:{port}")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: botocore's pool reuses its connections
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
            try:
                status, answer = 200, getattr(endpoint, action)(request)
            except (AttributeError, KeyError) as error:
                status, answer = 400, {"__type": "InvalidAction", "message": f"{action}: {error}"}
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_):  # one line a request would cost more than the request
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port).serve_forever()


if __name__ == "__main__":
    main()
