#!/usr/bin/env python3
"""The fault drill's history checker: what the clients saw against the log and the read models.

    python3 tests/drill/check.py --dir DIR --bootstrap-servers HOST:PORT,... \
        --postgres "host=127.0.0.1 port=P user=cauce dbname=cauce" [--password-file F]

reads DIR/history.jsonl, replays.jsonl, streams.jsonl (tests/drill/load.py) and faults.jsonl
(scripts/drill: one line per fault, {"name", "t"}), then `cauce.events` twice (read_committed,
and read_uncommitted to find what aborted transactions wrote) and the read models (psql), and
verifies:

  acknowledged   every acknowledged command's event is in the log exactly once, at the version
                 it was acknowledged with (an update's at If-Match + 1)
  unknown        a command whose outcome stayed unknown is in the log at most once
  rejected       a rejected command (4xx) appended nothing
  versions       each aggregate's versions are 1, 2, 3, ... without gap or repeat; no event twice
  occ            no two acknowledged commands had the same expected version (If-Match)
  aborted        nothing written by an aborted transaction is in the read models
  read_model     the contacts read model, the events table and the contacts notifications equal a
                 fresh fold of the log
  streams        each stream client, over all its resumed connections, got every contacts
                 notification from its first to its last exactly once, in order
  replays        a re-sent acknowledged command got its original answer, marked replayed

and prints, per fault (and the warm-up), the commands sent, the seconds in which some request got
no definite answer (a 5xx, a timeout, a refused connection), the unknown outcomes and the
violations. Exits 1 when there is any violation. `check()` is pure: tests/drill/check_selftest.py
feeds it doctored histories.
"""

import argparse
import bisect
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict


# ---- the checks (pure) -------------------------------------------------------------------------

def violation(kind, detail, t=None):
    return {"kind": kind, "detail": detail, "t": t}


def first_t(record):
    return record["attempts"][0]["t0"] if record.get("attempts") else None


def fold_contacts(events):
    """contact id -> the read model row a fresh fold of the log gives (the fields checked)."""
    contacts = {}
    for e in sorted(events, key=lambda e: (e["aggregate_id"], e["version"])):
        if e["aggregate_type"] != "contact":
            continue
        data, cid = e["data"], e["aggregate_id"]
        if e["type"] == "contact.registered":
            contacts[cid] = {"name": data["name"], "phone": data["phone"],
                             "notes": data.get("notes"), "status": "active"}
        elif cid in contacts:
            c = contacts[cid]
            if e["type"] == "contact.updated":
                for field in ("name", "phone", "notes"):
                    if field in data:
                        c[field] = data[field]
            elif e["type"] == "contact.archived":
                c["status"] = "archived"
        if cid in contacts:
            contacts[cid]["version"] = e["version"]
    return contacts


def check(history, replays, committed, uncommitted, read_model, streams):
    """Violations (dicts with kind, detail and, when a command caused it, its start time t).

    history     load.py's records; committed / uncommitted: envelopes read from the event log
    read_model  {"contacts": {id: row}, "event_ids": set, "notifications": [(id, aggregate_id,
                version)] of topic contacts}
    streams     load.py's stream records
    """
    out = []

    # The log itself: no event twice, versions contiguous per aggregate.
    ids = Counter(e["event_id"] for e in committed)
    for event_id, n in ids.items():
        if n > 1:
            out.append(violation("versions", f"event {event_id} is in the log {n} times"))
    by_aggregate = defaultdict(list)
    for e in committed:
        by_aggregate[(e["aggregate_type"], e["aggregate_id"])].append(e["version"])
    for (kind, aid), versions in by_aggregate.items():
        versions.sort()
        if versions != list(range(1, len(versions) + 1)):
            repeated = sorted(v for v, n in Counter(versions).items() if n > 1)
            missing = sorted(set(range(1, max(versions) + 1)) - set(versions))
            out.append(violation("versions", f"{kind} {aid}: versions {versions[:3]}..{versions[-1]}"
                                 f" ({len(versions)} events): repeated {repeated[:5]},"
                                 f" missing {missing[:5]}"))

    # Commands against the log, by the marker each one's event carries in `notes`.
    by_marker = defaultdict(list)
    for e in committed:
        if e["aggregate_type"] == "contact" and isinstance(e["data"].get("notes"), str):
            by_marker[e["data"]["notes"]].append(e)
    expected_versions = defaultdict(list)
    for r in history:
        found, t = by_marker.get(r["marker"], []), first_t(r)
        what = f"{r['op']} {r['marker']} on {r['aggregate_id']}"
        if r["outcome"] == "ok":
            if len(found) != 1:
                out.append(violation("acknowledged", f"{what}: acknowledged ({r.get('status')},"
                                     f" version {r.get('version')}) but {len(found)} events"
                                     " in the log", t))
        elif r["outcome"] == "unknown":
            if len(found) > 1:
                out.append(violation("unknown", f"{what}: outcome unknown, {len(found)} events", t))
        elif found:
            out.append(violation("rejected", f"{what}: rejected ({r.get('status')}) but"
                                 f" {len(found)} events in the log", t))
        for e in found:
            want = 1 if r["op"] == "create" else (r["if_match"] or 0) + 1
            if e["aggregate_id"] != r["aggregate_id"] or e["version"] != want:
                out.append(violation("occ", f"{what}: its event is {e['aggregate_id']} version"
                                     f" {e['version']}, expected version {want}", t))
            if r["outcome"] == "ok" and r.get("version") != e["version"]:
                out.append(violation("acknowledged", f"{what}: acknowledged version"
                                     f" {r.get('version')}, the log has {e['version']}", t))
        if r["outcome"] == "ok" and r["op"] == "update":
            expected_versions[(r["aggregate_id"], r["if_match"])].append(r)
    for (aid, v), rs in expected_versions.items():
        if len(rs) > 1:
            out.append(violation("occ", f"{len(rs)} updates of {aid} acknowledged against"
                                 f" version {v}: {[r['marker'] for r in rs]}", first_t(rs[0])))

    # Aborted transactions: what read_uncommitted saw and read_committed did not.
    committed_ids = set(ids)
    aborted = {e["event_id"]: e for e in uncommitted if e["event_id"] not in committed_ids}
    for event_id, e in aborted.items():
        if event_id in read_model["event_ids"]:
            out.append(violation("aborted", f"event {event_id} of an aborted transaction is in"
                                 " the events read model"))
        notes = e["data"].get("notes") if e["aggregate_type"] == "contact" else None
        row = read_model["contacts"].get(e["aggregate_id"])
        if notes and notes not in by_marker and row and row.get("notes") == notes:
            out.append(violation("aborted", f"contact {e['aggregate_id']}: notes {notes} of an"
                                 " aborted transaction are in the read model"))

    # Read models against a fresh fold of the log.
    folded = fold_contacts(committed)
    rows = read_model["contacts"]
    for cid, want in folded.items():
        got = rows.get(cid)
        if got is None:
            out.append(violation("read_model", f"contact {cid} (version {want['version']}) is"
                                 " not in the read model"))
            continue
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        if diff:
            out.append(violation("read_model", f"contact {cid}: read model vs log {diff}"))
    for cid in rows.keys() - folded.keys():
        out.append(violation("read_model", f"contact {cid} is in the read model, not in the log"))
    missing = committed_ids - read_model["event_ids"]
    extra = read_model["event_ids"] - committed_ids
    if missing or extra:
        out.append(violation("read_model", f"events read model: {len(missing)} events of the log"
                             f" missing (e.g. {sorted(missing)[:2]}), {len(extra)} not in the"
                             f" log (e.g. {sorted(extra)[:2]})"))
    log_notes = Counter((e["aggregate_id"], e["version"]) for e in committed
                        if e["aggregate_type"] == "contact")
    table_notes = Counter((aid, v) for _, aid, v in read_model["notifications"])
    if log_notes != table_notes:
        lost, more = log_notes - table_notes, table_notes - log_notes
        out.append(violation("read_model", f"contacts notifications: {sum(lost.values())} events"
                             f" without one (e.g. {list(lost)[:2]}), {sum(more.values())} extra"
                             f" (e.g. {list(more)[:2]})"))

    # Stream clients: every notification between the first and the last received, once, in order.
    notification_ids = sorted(n for n, _, _ in read_model["notifications"])
    received = defaultdict(list)
    for s in streams:
        if "id" in s:
            received[s["client"]].append(s["id"])
        elif "reset" in s:
            out.append(violation("streams", f"stream client {s['client']} was reset: {s['reset']}"))
    for client, got in sorted(received.items()):
        dup = sorted(n for n, k in Counter(got).items() if k > 1)
        if dup:
            out.append(violation("streams", f"stream client {client} got {len(dup)} notifications"
                                 f" more than once (e.g. {dup[:3]})"))
        if any(b <= a for a, b in zip(got, got[1:])):
            out.append(violation("streams", f"stream client {client}: ids out of order"))
        lo = bisect.bisect_left(notification_ids, got[0])
        hi = bisect.bisect_right(notification_ids, got[-1])
        lost = sorted(set(notification_ids[lo:hi]) - set(got))
        if lost:
            out.append(violation("streams", f"stream client {client} missed {len(lost)}"
                                 f" notifications between {got[0]} and {got[-1]}"
                                 f" (e.g. {lost[:3]})"))

    for r in replays:
        if (r["status"] != r["expected_status"] or r["version"] != r["expected_version"]
                or not r["replayed"]):
            out.append(violation("replays", f"re-sent {r['key']}: got {r['status']} version"
                                 f" {r['version']} replayed={r['replayed']}, expected"
                                 f" {r['expected_status']} version {r['expected_version']}",
                                 r["t0"]))
    return out


# ---- the report --------------------------------------------------------------------------------

def report(history, faults, violations, load_end):
    """Rows per window (warm-up, then each fault until the next): figures and violations."""
    windows = [{"name": "warm-up (no fault)", "t": min((first_t(r) for r in history if
                                                        first_t(r)), default=0)}]
    windows += sorted(faults, key=lambda f: f["t"])
    starts = [w["t"] for w in windows]

    def window_of(t):
        return max(0, bisect.bisect_right(starts, t) - 1) if t is not None else None

    rows = [{"name": w["name"], "commands": 0, "acknowledged": 0, "unknown": 0,
             "unavailable": set(), "no_answer": 0, "violations": 0,
             "length": (starts[i + 1] if i + 1 < len(starts) else load_end) - w["t"]}
            for i, w in enumerate(windows)]
    for r in history:
        row = rows[window_of(first_t(r))]
        row["commands"] += 1
        row["acknowledged"] += r["outcome"] == "ok"
        row["unknown"] += r["outcome"] == "unknown"
        for a in r["attempts"]:
            if not isinstance(a["status"], int) or a["status"] >= 500:
                rows[window_of(a["t1"])]["unavailable"].add(int(a["t1"]))
                rows[window_of(a["t1"])]["no_answer"] += 1
    unattributed = 0
    for v in violations:
        if v["t"] is None:
            unattributed += 1
        else:
            rows[window_of(v["t"])]["violations"] += 1
    return rows, unattributed


def print_report(rows, unattributed, violations):
    print("| window | length s | commands | acknowledged | unavailable s (5xx/timeouts) |"
          " attempts without answer | unknown outcomes | violations |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['length']:.0f} | {r['commands']} | {r['acknowledged']} |"
              f" {len(r['unavailable'])} | {r['no_answer']} | {r['unknown']} | {r['violations']} |")
    print(f"| whole run (log and read models) | | {sum(r['commands'] for r in rows)} |"
          f" {sum(r['acknowledged'] for r in rows)} | {sum(len(r['unavailable']) for r in rows)} |"
          f" {sum(r['no_answer'] for r in rows)} | {sum(r['unknown'] for r in rows)} |"
          f" {unattributed} (+{len(violations) - unattributed} above) |")
    by_kind = Counter(v["kind"] for v in violations)
    print(f"\nviolations: {len(violations)}" +
          (" (" + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())) + ")" if by_kind else ""))
    for v in violations[:50]:
        print(f"  {v['kind']}: {v['detail']}")
    if len(violations) > 50:
        print(f"  ... and {len(violations) - 50} more")


# ---- reading what happened ---------------------------------------------------------------------

def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_log(bootstrap, topic, isolation):
    """Every record of `topic` from the beginning to its end, as envelopes."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"drill-check-{uuid.uuid4()}",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    events, done = [], set()
    while len(done) < len(partitions):
        message = consumer.poll(5.0)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                done.add(message.partition())
                continue
            raise RuntimeError(f"reading {topic}: {message.error()}")
        e = json.loads(message.value())
        e["partition"], e["offset"] = message.partition(), message.offset()
        events.append(e)
    consumer.close()
    return events


def psql(conninfo, sql):
    out = subprocess.run([os.environ.get("PSQL", "psql"), "-X", "-q", "--csv", "-t", conninfo,
                          "-c", sql], check=True, capture_output=True, text=True).stdout
    import csv
    return list(csv.reader(out.splitlines()))


def read_read_models(conninfo):
    contacts = {}
    for cid, name, phone, notes, status, version in psql(
            conninfo, "SELECT id, name, phone, notes, status, version FROM contacts"):
        contacts[cid] = {"name": name, "phone": phone, "notes": notes or None, "status": status,
                         "version": int(version)}
    event_ids = {row[0] for row in psql(conninfo, "SELECT event_id FROM events")}
    notifications = [(int(n), aid, int(v)) for n, aid, v in psql(
        conninfo, "SELECT id, aggregate_id, version FROM notifications WHERE topic = 'contacts'")]
    return {"contacts": contacts, "event_ids": event_ids, "notifications": notifications}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--events-topic", default="cauce.events")
    parser.add_argument("--postgres", required=True, help="libpq conninfo of the read models")
    parser.add_argument("--password-file")
    parser.add_argument("--wait-s", type=float, default=180,
                        help="how long the read models may take to catch up with the log")
    args = parser.parse_args()
    if args.password_file:
        with open(args.password_file) as f:
            os.environ["PGPASSWORD"] = f.read().strip()

    history = read_jsonl(os.path.join(args.dir, "history.jsonl"))
    replays = read_jsonl(os.path.join(args.dir, "replays.jsonl"))
    streams = read_jsonl(os.path.join(args.dir, "streams.jsonl"))
    faults = read_jsonl(os.path.join(args.dir, "faults.jsonl"))
    # The projections catch up after the load: the log is read again until the read models hold
    # exactly its events (or --wait-s passed; the checks then say what differs).
    deadline = time.time() + args.wait_s
    while True:
        committed = read_log(args.bootstrap_servers, args.events_topic, "read_committed")
        read_model = read_read_models(args.postgres)
        contact_events = sum(1 for e in committed if e["aggregate_type"] == "contact")
        if ({e["event_id"] for e in committed} == read_model["event_ids"]
                and len(read_model["notifications"]) == contact_events) or time.time() > deadline:
            break
        time.sleep(2)
    uncommitted = read_log(args.bootstrap_servers, args.events_topic, "read_uncommitted")
    violations = check(history, replays, committed, uncommitted, read_model, streams)
    load_end = max((a["t1"] for r in history for a in r["attempts"]), default=0)
    rows, unattributed = report(history, faults, violations, load_end)
    aborted = len({e["event_id"] for e in uncommitted} - {e["event_id"] for e in committed})
    print(f"log: {len(committed)} committed events, {aborted} written by aborted transactions;"
          f" {len(history)} commands, {len(replays)} re-sends,"
          f" {sum(1 for s in streams if 'id' in s)} stream notifications received over"
          f" {sum(1 for s in streams if 'resume_after' in s)} connections\n")
    print_report(rows, unattributed, violations)
    with open(os.path.join(args.dir, "violations.json"), "w") as f:
        json.dump(violations, f, indent=1)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
