#!/usr/bin/env python3
"""The drill's checker must be able to fail: a clean synthetic history passes, and each doctored
copy (a duplicated event, a version gap, a lost acknowledged command, ...) is reported as the
violation it is. A `unit` test (ctest DrillCheckerSelfTest): no servers, under a second."""

import copy
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402


def event(aid, version, kind, data, n):
    return {"event_id": str(uuid.UUID(int=n)), "type": kind, "aggregate_type": "contact",
            "aggregate_id": aid, "version": version, "data": data}


def attempt(t, status):
    return {"t0": t, "t1": t + 0.1, "url": "http://a", "status": status}


class World:
    """Two contacts, a few updates, an unknown that did land, an unknown that did not, a 412."""

    def __init__(self):
        a, b = str(uuid.UUID(int=1001)), str(uuid.UUID(int=1002))
        self.a, self.b = a, b
        self.history = [
            {"op": "create", "marker": "m1", "aggregate_id": a, "if_match": None, "outcome": "ok",
             "status": 201, "version": 1, "attempts": [attempt(10, 201)]},
            {"op": "create", "marker": "m2", "aggregate_id": b, "if_match": None, "outcome": "ok",
             "status": 201, "version": 1, "attempts": [attempt(11, 503), attempt(12, 201)]},
            {"op": "update", "marker": "m3", "aggregate_id": a, "if_match": 1, "outcome": "ok",
             "status": 200, "version": 2, "attempts": [attempt(13, 200)]},
            {"op": "update", "marker": "m4", "aggregate_id": a, "if_match": 1,
             "outcome": "rejected", "status": 412, "attempts": [attempt(14, 412)]},
            {"op": "update", "marker": "m5", "aggregate_id": a, "if_match": 2,
             "outcome": "unknown", "attempts": [attempt(15, "timeout")]},
            {"op": "update", "marker": "m6", "aggregate_id": b, "if_match": 1,
             "outcome": "unknown", "attempts": [attempt(16, "error")]},
        ]
        self.committed = [
            event(a, 1, "contact.registered", {"name": "A", "phone": "+351911111111",
                                               "notes": "m1", "tags": []}, 1),
            event(b, 1, "contact.registered", {"name": "B", "phone": "+351922222222",
                                               "notes": "m2", "tags": []}, 2),
            event(a, 2, "contact.updated", {"notes": "m3"}, 3),
            event(a, 3, "contact.updated", {"notes": "m5"}, 4),
        ]
        aborted = event(b, 2, "contact.updated", {"notes": "m6"}, 99)
        self.uncommitted = self.committed[:3] + [aborted] + self.committed[3:]
        self.read_model = {
            "contacts": {
                a: {"name": "A", "phone": "+351911111111", "notes": "m5", "status": "active",
                    "version": 3},
                b: {"name": "B", "phone": "+351922222222", "notes": "m2", "status": "active",
                    "version": 1}},
            "event_ids": {e["event_id"] for e in self.committed},
            "notifications": [(101, a, 1), (102, b, 1), (103, a, 2), (104, a, 3)],
        }
        self.streams = [
            {"client": 0, "connection": 1, "resume_after": None},
            {"client": 0, "connection": 1, "id": 101}, {"client": 0, "connection": 1, "id": 102},
            {"client": 0, "connection": 2, "resume_after": 102},
            {"client": 0, "connection": 2, "id": 103}, {"client": 0, "connection": 2, "id": 104},
        ]
        self.replays = [{"t0": 20, "key": "m3-key", "expected_status": 200,
                         "expected_version": 2, "status": 200, "version": 2, "replayed": True}]

    def check(self):
        return check.check(self.history, self.replays, self.committed, self.uncommitted,
                           self.read_model, self.streams)


class CheckerTest(unittest.TestCase):
    def assert_reports(self, world, kind):
        found = world.check()
        self.assertTrue(any(v["kind"] == kind for v in found),
                        f"no {kind} violation reported; got {found}")

    def test_a_clean_history_passes(self):
        self.assertEqual(World().check(), [])

    def test_a_duplicated_event_is_reported(self):
        w = World()
        w.committed.append(copy.deepcopy(w.committed[2]))
        self.assert_reports(w, "versions")
        self.assert_reports(w, "acknowledged")  # m3 is in the log twice

    def test_a_version_gap_is_reported(self):
        w = World()
        w.committed[3]["version"] = 4  # a's versions 1, 2, 4
        self.assert_reports(w, "versions")

    def test_a_lost_acknowledged_command_is_reported(self):
        w = World()
        del w.committed[2]  # m3 acknowledged, not in the log
        self.assert_reports(w, "acknowledged")

    def test_an_unknown_outcome_appended_twice_is_reported(self):
        w = World()
        w.committed.append(event(w.b, 2, "contact.updated", {"notes": "m5"}, 5))
        self.assert_reports(w, "unknown")

    def test_a_rejected_command_in_the_log_is_reported(self):
        w = World()
        w.committed.append(event(w.b, 2, "contact.updated", {"notes": "m4"}, 5))
        self.assert_reports(w, "rejected")

    def test_two_successes_against_one_expected_version_are_reported(self):
        w = World()
        w.history[3].update(outcome="ok", status=200, version=3)
        self.assert_reports(w, "occ")

    def test_an_aborted_event_in_the_read_model_is_reported(self):
        w = World()
        w.read_model["event_ids"].add(str(uuid.UUID(int=99)))
        w.read_model["contacts"][w.b].update(notes="m6")
        self.assert_reports(w, "aborted")

    def test_a_read_model_that_differs_from_the_fold_is_reported(self):
        w = World()
        w.read_model["contacts"][w.a]["version"] = 2
        self.assert_reports(w, "read_model")

    def test_a_missing_notification_is_reported(self):
        w = World()
        del w.read_model["notifications"][3]
        self.assert_reports(w, "read_model")

    def test_a_stream_gap_and_a_stream_duplicate_are_reported(self):
        w = World()
        del w.streams[4]  # client 0 never got 103
        self.assert_reports(w, "streams")
        w = World()
        w.streams.append({"client": 0, "connection": 3, "id": 104})
        self.assert_reports(w, "streams")

    def test_a_replay_with_another_answer_is_reported(self):
        w = World()
        w.replays[0]["replayed"] = False
        self.assert_reports(w, "replays")

    def test_violations_are_counted_in_the_window_of_their_fault(self):
        w = World()
        del w.committed[2]
        violations = w.check()
        rows, unattributed = check.report(w.history, [{"name": "kill", "t": 12.5}], violations,
                                          20)
        self.assertEqual([r["name"] for r in rows], ["warm-up (no fault)", "kill"])
        self.assertEqual(rows[1]["violations"], 1)  # m3 started at 13
        self.assertEqual(rows[0]["violations"], 0)
        self.assertEqual(rows[0]["unknown"], 0)
        self.assertEqual(rows[1]["unknown"], 2)
        self.assertEqual(len(rows[0]["unavailable"]), 1)  # the 503 at 11


if __name__ == "__main__":
    unittest.main()
