#!/usr/bin/env python3
"""Calls per operator per day and alerts per level, from cauce's event log.

An example of the event stream as a public interface (schemas/README.md): a plain Kafka
consumer, no cauce code, reading `cauce.events` with isolation.level=read_committed, checking
every envelope and its data against the JSON Schemas in schemas/, and folding what it needs.

    python3 examples/analytics/analytics.py --bootstrap-servers 127.0.0.1:9092 --until-end

prints one JSON object:

    {"calls_per_operator_per_day": {"op7": {"2026-11-24": 12}},
     "alerts_per_level": {"critical": 2, "info": 5, "warning": 1},
     "events": 1234, "invalid": 0}

Alerts are counted by their current level (alert.escalated moves one up). Calls without an
operator count under "(none)". Without --until-end it keeps reading and prints the figures
every --every seconds.
"""

import argparse
import json
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException
from jsonschema import Draft4Validator

REPO = Path(__file__).resolve().parents[2]


class Schemas:
    """Validators for schemas/<name>.json, loaded on first use."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.validators = {}

    def problem(self, name, document):
        """None when `document` fits schemas/<name>.json, else what is wrong."""
        if name not in self.validators:
            path = self.directory / f"{name}.json"
            if not path.exists():
                self.validators[name] = None
            else:
                self.validators[name] = Draft4Validator(json.loads(path.read_text()))
        validator = self.validators[name]
        if validator is None:
            return f"no schema {name}"
        error = next(iter(validator.iter_errors(document)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"{name}: {where}: {error.message}"


class Figures:
    def __init__(self):
        self.calls = defaultdict(lambda: defaultdict(int))  # operator -> day -> count
        self.alert_level = {}  # alert id -> current level
        self.seen = set()  # event ids: the log is exactly once, our own re-reads are not
        self.events = 0
        self.invalid = 0

    def fold(self, event):
        if event["event_id"] in self.seen:
            return
        self.seen.add(event["event_id"])
        self.events += 1
        kind, data = event["type"], event["data"]
        if kind == "contact.call_logged":
            if event["schema_version"] == 1:  # v1: called_at_us, µs since the epoch
                when = datetime.fromtimestamp(data["called_at_us"] / 1e6, tz=timezone.utc)
                day = when.strftime("%Y-%m-%d")
            else:  # v2: called_at, RFC 3339 UTC
                day = data["called_at"][:10]
            self.calls[data.get("operator", "(none)")][day] += 1
        elif kind == "alert.raised":
            self.alert_level[event["aggregate_id"]] = data["level"]
        elif kind == "alert.escalated":
            self.alert_level[event["aggregate_id"]] = data["to"]

    def report(self):
        levels = defaultdict(int)
        for level in self.alert_level.values():
            levels[level] += 1
        return {
            "calls_per_operator_per_day": {op: dict(sorted(days.items()))
                                           for op, days in sorted(self.calls.items())},
            "alerts_per_level": dict(sorted(levels.items())),
            "events": self.events,
            "invalid": self.invalid,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="cauce.events")
    parser.add_argument("--schemas", default=str(REPO / "schemas"))
    parser.add_argument("--group", default=f"cauce-analytics-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--until-end", action="store_true",
                        help="stop once every partition is read to its end")
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("-X", dest="properties", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a librdkafka property for a secured cluster, e.g. "
                             "-X security.protocol=sasl_ssl -X sasl.mechanism=SCRAM-SHA-512 "
                             "-X sasl.username=analytics -X sasl.password=... "
                             "-X ssl.ca.location=ca.crt (repeatable)")
    args = parser.parse_args()
    extra = {}
    for prop in args.properties:
        key, sep, value = prop.partition("=")
        if not sep or not key:
            parser.error(f"-X {prop}: expected KEY=VALUE")
        extra[key] = value

    schemas = Schemas(args.schemas)
    figures = Figures()
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap_servers,
        "group.id": args.group,
        "isolation.level": "read_committed",  # never see events of aborted transactions
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,  # a report from the start each run
        "enable.partition.eof": True,
        **extra,
    })
    assigned, at_end = set(), set()

    def on_assign(c, partitions):
        assigned.update(p.partition for p in partitions)

    consumer.subscribe([args.topic], on_assign=on_assign)
    last_print = time.monotonic()
    try:
        while True:
            message = consumer.poll(0.5)
            if message is not None:
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition())
                    elif message.error().fatal():
                        raise KafkaException(message.error())
                else:
                    at_end.discard(message.partition())
                    try:
                        event = json.loads(message.value())
                    except (TypeError, ValueError):
                        event = None
                    problem = ("not JSON" if event is None
                               else schemas.problem("envelope.v1", event))
                    if problem is None:
                        problem = schemas.problem(
                            f"{event['type']}.v{event['schema_version']}", event["data"])
                    if problem is None:
                        figures.fold(event)
                    else:
                        figures.invalid += 1
                        print(f"skipped {message.partition()}:{message.offset()}: {problem}",
                              file=sys.stderr)
            if args.until_end and assigned and at_end >= assigned:
                break
            if not args.until_end and time.monotonic() - last_print >= args.every:
                print(json.dumps(figures.report()), flush=True)
                last_print = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    print(json.dumps(figures.report(), indent=2 if sys.stdout.isatty() else None))


if __name__ == "__main__":
    main()
