-- The response bandwidth the router lets an app use, in body bytes per second through each router
-- (RouteSettings.bandwidthBytesPerSecond). Set by billing for apps of Free orgs past their month's
-- bandwidth allowance, whose traffic is slowed instead of billed; NULL = no throttle. Users cannot set
-- it (router:set leaves it alone).
ALTER TABLE apps ADD COLUMN throttle_bytes_per_second bigint CHECK (throttle_bytes_per_second IS NULL OR throttle_bytes_per_second > 0);
