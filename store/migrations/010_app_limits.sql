-- Per-app resource limits for app processes (Docker runtime); NULL = the server-wide default.
ALTER TABLE apps ADD COLUMN memory_limit bigint CHECK (memory_limit IS NULL OR memory_limit >= 6291456);
ALTER TABLE apps ADD COLUMN cpu_limit real CHECK (cpu_limit IS NULL OR (cpu_limit > 0 AND cpu_limit <= 256));
