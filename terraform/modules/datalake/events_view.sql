-- The events view: the lake as recloop's readers see it (recloop.lake.manifest), each event of
-- an hour once, whether its hour is raw, compacted, rolled up into its day, or mid-compaction.
-- Templated by Terraform (aws_athena_named_query.events_view); tests/unit/test_lake_athena.py
-- runs this same text with DuckDB over a lake's objects and compares it with Lake.read_events.
-- Query it with a dt range (partition pruning) and a "timestamp" range, e.g.
--   SELECT count(*) FROM events WHERE dt BETWEEN '2024-03-01' AND '2024-03-28'
--     AND "timestamp" >= TIMESTAMP '2024-03-01 00:00:00' AND "timestamp" < TIMESTAMP '2024-03-29 00:00:00'
CREATE OR REPLACE VIEW events AS
WITH heads AS (
  -- the committed generation of each unit (an hour, or hour = 'day'): its newest marker
  SELECT dt, hour, max(generation) AS generation
  FROM lake_manifests WHERE kind = 'data' GROUP BY dt, hour
),
head_tokens AS (
  SELECT DISTINCT m.dt, m.hour, m.generation, m.token
  FROM lake_manifests m
  JOIN heads h ON m.dt = h.dt AND m.hour = h.hour AND m.generation = h.generation
  WHERE m.kind = 'data'
),
committed AS (
  -- the lines of the committed generations only: a sources file of a run that lost or
  -- crashed carries another token
  SELECT m.dt, m.hour, m.kind, '${root}/' || m.key AS path
  FROM lake_manifests m
  JOIN head_tokens t
    ON m.dt = t.dt AND m.hour = t.hour AND m.generation = t.generation AND m.token = t.token
),
day_sources AS (SELECT path FROM committed WHERE hour = 'day' AND kind = 'source'),
hour_sources AS (SELECT path FROM committed WHERE hour <> 'day' AND kind = 'source'),
compacted_objects AS (
  SELECT path, 0 AS tier FROM committed WHERE hour = 'day' AND kind = 'data'
  UNION ALL
  SELECT path, 1 AS tier FROM committed
  WHERE hour <> 'day' AND kind = 'data' AND path NOT IN (SELECT path FROM day_sources)
),
candidates AS (
  SELECT ${columns}, c.dt, o.tier, c."$path" AS path
  FROM events_compacted c JOIN compacted_objects o ON c."$path" = o.path
  UNION ALL
  -- raw objects no committed compaction covers (never compacted, or arrived after it)
  SELECT ${columns}, r.dt, 2 AS tier, r."$path" AS path
  FROM events_raw r
  WHERE r."$path" NOT IN (SELECT path FROM hour_sources)
    AND r."$path" NOT IN (SELECT path FROM day_sources)
)
SELECT ${columns}, dt
FROM (
  SELECT *, row_number() OVER (
    PARTITION BY date_trunc('hour', "timestamp"), event_id ORDER BY tier, path
  ) AS copy
  FROM candidates
) AS ranked
WHERE copy = 1
