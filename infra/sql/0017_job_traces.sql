-- Traces across processes (issue 18, part 6): a job's row keeps the W3C traceparent of the event
-- that last wrote it (the envelope's trace_parent), so that the command a runner sends for the
-- job's next step continues that trace in a span of its own (workers/README.md "Traces"). NULL for
-- rows written from events that carry none (appended before traces were carried).
ALTER TABLE worker_jobs ADD COLUMN trace_parent text;
