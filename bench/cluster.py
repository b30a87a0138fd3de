#!/usr/bin/env python3
"""bench/cluster: commands/s and latency of `cauce serve` processes, and a processor's takeover.

    python3 bench/cluster.py load --urls URL1,URL2 --key-file F [--connections 32] [--seconds 20]
    python3 bench/cluster.py takeover --urls URL_SURVIVOR --key-file F --pid PID_TO_KILL
        [--partitions 12] [--connections 16]

`load`: closed loop, each connection (a thread with a keep-alive HTTP connection, the instances
taken in turn) registers contacts back to back (`POST /v1/contacts`, a client-chosen id and an
Idempotency-Key, as a client that retries must); prints one JSON line: commands/s (2xx answers
per second of the measurement), p50/p95/p99 of the 2xx latencies in ms, and the other answers.

`takeover`: the same load on the survivor only, aggregates spread over every partition of the
commands topic (murmur2 of the id, as the processor places them); after a few seconds SIGKILL of
`--pid` (the other api,processor process). The takeover time of a partition is from the kill to
the first 2xx of a command on it sent after the kill; prints the slowest and the median over
the partitions the killed process had (those whose commands stalled past the kill), in ms.

Run by `scripts/bench cluster` (bench/README.md); the figures are the service's, measured from
Python's http.client: at a few hundred commands/s the clients are not what limits them (the
bench prints the client's own CPU time so that this can be checked).
"""

import argparse
import http.client
import json
import os
import signal
import threading
import time
import urllib.parse
import uuid


def murmur2(data):
    """Kafka's murmur2 (Java clients' and librdkafka's murmur2 partitioner)."""
    m, r, length = 0x5BD1E995, 24, len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = data[length - rest:]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_of(key, partitions):
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Worker(threading.Thread):
    def __init__(self, urls, key, stop, results, partitions=None, partition=None):
        super().__init__(daemon=True)
        self.urls, self.key, self.stop, self.results = urls, key, stop, results
        self.partitions, self.partition = partitions, partition

    def contact_id(self):
        while True:
            cid = str(uuid.uuid4())
            if self.partition is None or partition_of(cid, self.partitions) == self.partition:
                return cid

    def run(self):
        conns, n = {}, 0
        while not self.stop.is_set():
            url = self.urls[n % len(self.urls)]
            n += 1
            cid = self.contact_id()
            body = json.dumps({"id": cid, "name": "Bench", "phone": "+351912345678"}).encode()
            headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json",
                       "Idempotency-Key": cid}
            t0 = time.monotonic()
            try:
                if url not in conns:
                    u = urllib.parse.urlsplit(url)
                    conns[url] = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                conns[url].request("POST", "/v1/contacts", body=body, headers=headers)
                response = conns[url].getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conns.pop(url).close()
                status = None
            self.results.append((t0, time.monotonic(), status, self.partition))
            if status is None or status >= 500:
                time.sleep(0.05)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def load(args, key):
    stop, results = threading.Event(), []
    workers = [Worker(args.urls.split(","), key, stop, results) for _ in range(args.connections)]
    for w in workers:
        w.start()
    time.sleep(args.warmup)
    begin, cpu0 = time.monotonic(), time.process_time()
    time.sleep(args.seconds)
    end, cpu1 = time.monotonic(), time.process_time()
    stop.set()
    for w in workers:
        w.join(timeout=15)
    measured = [r for r in results if begin <= r[1] <= end]
    ok = sorted((r[1] - r[0]) * 1000 for r in measured if r[2] is not None and 200 <= r[2] < 300)
    print(json.dumps({
        "connections": args.connections, "seconds": args.seconds,
        "commands_per_s": round(len(ok) / (end - begin), 1),
        "p50_ms": round(percentile(ok, 50), 1) if ok else None,
        "p95_ms": round(percentile(ok, 95), 1) if ok else None,
        "p99_ms": round(percentile(ok, 99), 1) if ok else None,
        "other_answers": len(measured) - len(ok),
        "client_cpu_share": round((cpu1 - cpu0) / (end - begin), 2)}))


def takeover(args, key):
    stop, results = threading.Event(), []
    workers = [Worker([args.urls], key, stop, results, args.partitions, p % args.partitions)
               for p in range(max(args.connections, args.partitions))]
    for w in workers:
        w.start()
    time.sleep(args.warmup)
    killed = time.monotonic()
    os.kill(args.pid, signal.SIGKILL)
    time.sleep(args.seconds)
    stop.set()
    for w in workers:
        w.join(timeout=15)
    per_partition = {}
    for p in range(args.partitions):
        after = sorted(r for r in results if r[3] == p and r[0] >= killed and r[2] is not None
                       and 200 <= r[2] < 300)
        # Commands in flight at the kill on this partition that took longer than a normal answer
        # mark it as one that moved; its takeover ends with the first 2xx sent after the kill.
        stalled = any(r[3] == p and r[0] < killed < r[1] and r[1] - killed > 1.0 for r in results)
        first = after[0][1] - killed if after else None
        per_partition[p] = (stalled or first is None or first > 1.0, first)
    moved = sorted(v[1] for v in per_partition.values() if v[0] and v[1] is not None)
    never = sum(1 for v in per_partition.values() if v[0] and v[1] is None)
    print(json.dumps({
        "partitions_moved": len(moved) + never,
        "takeover_median_ms": round(percentile(moved, 50) * 1000) if moved else None,
        "takeover_max_ms": round(moved[-1] * 1000) if moved else None,
        "partitions_not_back": never}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["load", "takeover"])
    parser.add_argument("--urls", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--pid", type=int)
    parser.add_argument("--partitions", type=int, default=12)
    args = parser.parse_args()
    with open(args.key_file) as f:
        key = f.read().strip()
    (load if args.mode == "load" else takeover)(args, key)


if __name__ == "__main__":
    main()
