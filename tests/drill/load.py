#!/usr/bin/env python3
"""The fault drill's clients: a mixed load of commands and stream readers that records everything.

    python3 tests/drill/load.py --urls http://127.0.0.1:P1,http://127.0.0.1:P2 \
        --key-file CLUSTER/admin.key --out DIR [--clients 8] [--streams 2]

runs until DIR/stop exists (or SIGTERM), then writes, in DIR:

  history.jsonl   one line per command as the client saw it: what it sent (op, aggregate id,
                  If-Match, Idempotency-Key, the marker that its event carries in `notes`), every
                  attempt (start, end, instance, HTTP status or "timeout"/"error"), and its
                  outcome: "ok" (2xx, with the version), "rejected" (4xx: nothing may be appended)
                  or "unknown" (no definite answer after every retry)
  replays.jsonl   deliberate re-sends of an acknowledged command with its key: the answer must be
                  the original status and version, with Idempotent-Replayed: true
  streams.jsonl   one line per SSE notification a stream client received (client, connection,
                  id, aggregate id, version), and one per connection (how it resumed)

Every command carries an Idempotency-Key; a timeout, a refused connection, a 5xx or a 429 is
retried with the same key (and body) on the other instance, with backoff. Creations choose their
id (`id` in the body); updates carry `If-Match` with the version the client last saw, on a shared
pool of contacts with a few hot ones, so that clients race for the same versions.
"""

import argparse
import http.client
import json
import os
import random
import signal
import threading
import time
import urllib.parse
import uuid

TIMEOUT_S = 8.0  # above commands.reply_timeout_ms (4 s): a stalled request ends in a 503 first
ATTEMPTS = 8
UNAVAILABLE = "unavailable"  # an attempt without a definite answer


class Instance:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.url, self.host, self.port = url, u.hostname, u.port


class Connection:
    """One keep-alive HTTP connection to one instance, re-opened after any failure."""

    def __init__(self, instance, key):
        self.instance, self.key, self.conn = instance, key, None

    def request(self, method, path, body=None, headers=None, timeout=TIMEOUT_S):
        """(status, headers, json body) or (None, reason) when there is no answer."""
        h = {"Authorization": f"Bearer {self.key}"}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.instance.host, self.instance.port,
                                                       timeout=timeout)
            self.conn.request(method, path, body=data, headers=h)
            response = self.conn.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return None, "timeout" if isinstance(e, TimeoutError) else "error", None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None


class Recorder:
    def __init__(self, out):
        self.lock = threading.Lock()
        self.files = {name: open(os.path.join(out, f"{name}.jsonl"), "a", buffering=1)
                      for name in ("history", "replays", "streams")}

    def write(self, name, record):
        line = json.dumps(record, separators=(",", ":"))
        with self.lock:
            self.files[name].write(line + "\n")

    def close(self):
        for f in self.files.values():
            f.close()


class Pool:
    """Contacts whose creation was acknowledged, with the version each client last learnt."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ids, self.versions = [], {}

    def add(self, contact_id, version):
        with self.lock:
            self.ids.append(contact_id)
            self.versions[contact_id] = version

    def learn(self, contact_id, version):
        with self.lock:
            if version is not None and version > self.versions.get(contact_id, 0):
                self.versions[contact_id] = version

    def pick(self, rng):
        with self.lock:
            if not self.ids:
                return None, None
            hot = self.ids[:5]
            contact_id = rng.choice(hot) if rng.random() < 0.3 else rng.choice(self.ids)
            return contact_id, self.versions[contact_id]


class Client(threading.Thread):
    def __init__(self, n, instances, key, recorder, pool, stop):
        super().__init__(name=f"client-{n}", daemon=True)
        self.n, self.recorder, self.pool, self.stop = n, recorder, pool, stop
        self.rng = random.Random(n * 7919 + int(time.time()))
        self.conns = [Connection(i, key) for i in instances]
        self.seq = 0
        self.acknowledged = []  # (method, path, body, headers, status, version) for replays

    def run(self):
        while not self.stop.is_set():
            r = self.rng.random()
            if r < 0.05 and self.acknowledged:
                self.replay()
            elif r < 0.35 or not self.pool.ids:
                self.create()
            else:
                self.update()
        for c in self.conns:
            c.close()

    def marker(self):
        self.seq += 1
        return f"drill-{self.n}-{self.seq}-{uuid.uuid4().hex[:8]}"

    def create(self):
        marker, contact_id = self.marker(), str(uuid.uuid4())
        body = {"id": contact_id, "name": f"Drill {marker}",
                "phone": f"+3519{self.rng.randrange(10**7, 10**8)}", "notes": marker}
        record = self.send("create", "POST", "/v1/contacts", body, contact_id, None, marker)
        if record["outcome"] == "ok":
            self.pool.add(contact_id, record["version"])

    def update(self):
        contact_id, version = self.pool.pick(self.rng)
        if contact_id is None:
            return
        marker = self.marker()
        record = self.send("update", "PATCH", f"/v1/contacts/{contact_id}", {"notes": marker},
                           contact_id, version, marker)
        self.pool.learn(contact_id, record.get("version") or record.get("current_version"))

    def send(self, op, method, path, body, contact_id, if_match, marker):
        key = f"{marker}-key"
        headers = {"Idempotency-Key": key}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        record = {"op": op, "client": self.n, "marker": marker, "aggregate_id": contact_id,
                  "if_match": if_match, "key": key, "attempts": []}
        first = self.rng.randrange(len(self.conns))
        for attempt in range(ATTEMPTS):
            conn = self.conns[(first + attempt) % len(self.conns)]
            t0 = time.time()
            status, answer, parsed = conn.request(method, path, body, headers)
            t1 = time.time()
            a = {"t0": round(t0, 3), "t1": round(t1, 3), "url": conn.instance.url,
                 "status": status if status is not None else answer}
            if status is not None and answer.get("idempotent-replayed") == "true":
                a["replayed"] = True
            record["attempts"].append(a)
            if status is None or status >= 500 or status == 429:
                if self.stop.is_set() and attempt >= 2:
                    break
                time.sleep(min(3.0, 0.25 * 2**attempt) * (0.5 + self.rng.random()))
                continue
            record["status"] = status
            if 200 <= status < 300:
                record["outcome"] = "ok"
                record["version"] = (parsed or {}).get("version")
                self.acknowledged.append((method, path, body, headers, status, record["version"]))
                if len(self.acknowledged) > 200:
                    self.acknowledged.pop(0)
            else:
                record["outcome"] = "rejected"
                if isinstance(parsed, dict) and "current_version" in parsed:
                    record["current_version"] = parsed["current_version"]
            break
        else:
            record["outcome"] = "unknown"
        record.setdefault("outcome", "unknown")
        self.recorder.write("history", record)
        return record

    def replay(self):
        # The same request: method, target, body and headers (If-Match is part of it: the same
        # key with another If-Match is another request, a 422).
        method, path, body, headers, status, version = self.rng.choice(self.acknowledged)
        key = headers["Idempotency-Key"]
        conn = self.rng.choice(self.conns)
        t0 = time.time()
        got, answer, parsed = conn.request(method, path, body, headers)
        if got is None or got >= 500 or got == 429:
            return  # no answer: nothing to compare
        self.recorder.write("replays", {
            "t0": round(t0, 3), "key": key, "url": conn.instance.url, "expected_status": status,
            "expected_version": version, "status": got,
            "version": (parsed or {}).get("version") if isinstance(parsed, dict) else None,
            "replayed": answer.get("idempotent-replayed") == "true"})


class StreamClient(threading.Thread):
    """An SSE reader of topic contacts that reconnects now and then, resuming by Last-Event-ID."""

    def __init__(self, n, instances, key, recorder, stop):
        super().__init__(name=f"stream-{n}", daemon=True)
        self.n, self.instances, self.key, self.recorder, self.stop = n, instances, key, recorder, stop
        self.rng = random.Random(n * 104729 + int(time.time()))
        self.last_id = None

    def run(self):
        connection = 0
        while not self.stop.is_set():
            connection += 1
            instance = self.rng.choice(self.instances)
            self.read(instance, connection, time.time() + self.rng.uniform(8, 25))
            if not self.stop.is_set():
                time.sleep(0.3)

    def read(self, instance, connection, until):
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        self.recorder.write("streams", {"client": self.n, "connection": connection,
                                        "url": instance.url, "resume_after": self.last_id,
                                        "t": round(time.time(), 3)})
        conn = http.client.HTTPConnection(instance.host, instance.port, timeout=40)
        try:
            conn.request("GET", "/v1/stream?topics=contacts", headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                response.read()
                time.sleep(0.5)
                return
            event_id, data, kind = None, [], None
            while not self.stop.is_set() and time.time() < until:
                line = response.readline()
                if not line:
                    return
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if event_id is not None:
                        self.last_id = event_id  # as an EventSource does, with or without data
                    if data and event_id is not None and kind == "contacts":
                        payload = json.loads("\n".join(data))
                        self.recorder.write("streams", {
                            "client": self.n, "connection": connection, "id": event_id,
                            "aggregate_id": payload.get("id"), "version": payload.get("version")})
                    if kind == "reset":
                        self.recorder.write("streams", {"client": self.n, "connection": connection,
                                                        "reset": "\n".join(data)})
                    event_id, data, kind = None, [], None
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "id":
                        event_id = int(value)
                    elif field == "data":
                        data.append(value)
                    elif field == "event":
                        kind = value
        except (OSError, http.client.HTTPException, ValueError):
            pass
        finally:
            conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--streams", type=int, default=2)
    args = parser.parse_args()

    instances = [Instance(u) for u in args.urls.split(",")]
    with open(args.key_file) as f:
        key = f.read().strip()
    os.makedirs(args.out, exist_ok=True)
    recorder, pool, stop = Recorder(args.out), Pool(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [Client(n, instances, key, recorder, pool, stop) for n in range(args.clients)]
    threads += [StreamClient(n, instances, key, recorder, stop) for n in range(args.streams)]
    for t in threads:
        t.start()
    stop_file = os.path.join(args.out, "stop")
    while not stop.is_set():
        if os.path.exists(stop_file):
            stop.set()
        time.sleep(0.2)
    # Commands in flight finish their retries (the stop cuts them short after a few attempts).
    for t in threads:
        t.join(timeout=60)
    recorder.close()


if __name__ == "__main__":
    main()
