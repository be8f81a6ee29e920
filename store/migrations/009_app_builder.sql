-- Which builder an app uses: NULL = detect from the repository (`builder:set APP auto`), otherwise a
-- buildpack name or 'dockerfile', which beats detection.
ALTER TABLE apps ADD COLUMN builder text
  CHECK (builder IN ('dockerfile', 'node', 'python', 'go', 'rust', 'static', 'generic'));
