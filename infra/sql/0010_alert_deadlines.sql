-- Alert deadlines (issue 16): an alert's pending deadline is a row of the workers' due-time table
-- (kind 'alert', step 'deadline'), the mechanism that already schedules job retries
-- (workers/README.md "Deadlines"). The row keeps the level whose deadline it is and the instant,
-- which due_at may leave behind when a runner puts the row off.
ALTER TABLE worker_jobs
  ADD COLUMN deadline_level text,
  ADD COLUMN deadline_at    timestamptz;
