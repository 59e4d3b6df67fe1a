-- id: cosmos_query_injection
-- title: Injection-shaped Cosmos DB queries from one caller
-- severity: high
-- soc2: CC6.1, CC6.8, CC7.2
-- mitre: T1190 Exploit Public-Facing Application
-- window: 1h
-- description: Query text in QueryRuntimeStatistics that has the shape of SQL injection: what
--   Defender for Azure Cosmos DB calls suspected SQL injection. The text is read for its literals
--   first: escaped characters (\') dropped, then every complete string literal ('...' or
--   "...") set aside, so words and quotes inside literals ('or', 'select', "O'Brien") never count.
--   Shapes, outside literals: a tautology (OR followed by a comparison of two literals, OR 1=1,
--   OR 'a'='a'; or a literal followed by OR true), a -- comment holding a quote (the query's own
--   closing quote cut off), a stacked or unioned clause (; DELETE, UNION SELECT), and a string
--   left open (an odd quote). A parameterised query (@name) has none of them, nor has Cosmos
--   DB's default obfuscated text (literal values masked; only accounts with full-text query
--   logging show them). Raises each injection-shaped query of a caller (principal, or account
--   and address for key-based requests) that sent at least min_shaped of them within
--   window_minutes before or after it. The caller is the query's data-plane request (same
--   activity id); a query whose request was not logged counts for its account, and a query
--   logged once per partition key range counts once. Not caught: fewer than min_shaped injected
--   queries, injection into a number (c.age = 1 OR c.x = c.x), obfuscated text, and queries
--   Cosmos DB did not log. Raised wrongly: an apostrophe in a comment (-- the customer's id),
--   a query builder's OR 1=0, from min_shaped such queries of one caller.
-- remediation: Read the query texts (raw record) and find the application that builds queries
--   from user input: concatenated text must become parameters (@name). The principal's token
--   or key is in the caller's hands: revoke its sessions or rotate the key, and check what the
--   widened queries returned (response sizes of the requests).
-- param: min_shaped = 3
--   Injection-shaped queries (distinct activity ids) of one caller within the window.
-- param: window_minutes = 10
--   Minutes before or after each query in which they are counted (at most 60).
WITH queries AS (
    -- One row per query execution: a query over several partition key ranges is logged once per range.
    SELECT
        min(time) AS time,
        arg_min(raw_row, time) AS raw_row,
        any_value(account) AS account,
        arg_min(query_text, time) AS query_text,
        coalesce(activity_id, 'row ' || min(raw_row)) AS execution,
        any_value(activity_id) AS activity_id
    FROM cosmos_queries
    WHERE time >= utc_add($from, - to_minutes($window_minutes))
      AND time < utc_add($to, to_minutes($window_minutes))
      AND query_text IS NOT NULL
    GROUP BY activity_id, CASE WHEN activity_id IS NULL THEN raw_row END
),
requests AS (
    -- One request per activity id: the query's caller.
    SELECT DISTINCT ON (lower(activity_id))
        lower(activity_id) AS activity_id, principal_id, client_ip, status_code
    FROM cosmos_requests
    WHERE time >= utc_add($from, - to_minutes($window_minutes) - INTERVAL 1 HOUR)
      AND time < utc_add($to, to_minutes($window_minutes) + INTERVAL 1 HOUR)
      AND activity_id IS NOT NULL
      -- only the requests of the queries logged: without this, every request of the hours
      -- around (hundreds of thousands on a busy account) was sorted on each pass
      AND lower(activity_id) IN (SELECT activity_id FROM queries WHERE activity_id IS NOT NULL)
    ORDER BY lower(activity_id), time
),
read AS (
    SELECT
        q.*, r.principal_id, r.client_ip, r.status_code,
        request_subject(r.principal_id, q.account, r.client_ip) AS subject,
        -- escaped characters dropped, then each complete string literal becomes §
        regexp_replace(regexp_replace(q.query_text, '\\.', '', 'g'), '''[^'']*''|"[^"]*"', '§', 'g') AS s
    FROM queries q
    LEFT JOIN requests r ON r.activity_id = q.activity_id
),
shaped AS (
    SELECT
        *,
        CASE
            WHEN regexp_matches(
                s, '(?i)\bor\s*\(*\s*(-?\d+(\.\d+)?|§)\s*(=|!=|<>|>=|<=|>|<)\s*(-?\d+(\.\d+)?|§)'
            ) OR regexp_matches(s, '(?i)§\s*or\s+(not\s+false|true)\b') THEN 'tautology'
            WHEN regexp_matches(s, '(?i)(;\s*(select|delete|drop|insert|update|upsert|exec)\b|\bunion\s+(all\s+)?select\b)')
                THEN 'stacked or unioned clause'
            WHEN regexp_matches(s, '--[^\n]*[''"]') THEN 'comment cutting off a quote'
            WHEN regexp_matches(regexp_replace(s, '--[^\n]*', '', 'g'), '[''"]') THEN 'string left open'
        END AS shape
    FROM read
),
scored AS (
    SELECT
        *,
        count(*) OVER (
            PARTITION BY subject ORDER BY time::TIMESTAMP
            RANGE BETWEEN to_minutes($window_minutes) PRECEDING AND to_minutes($window_minutes) FOLLOWING
        ) AS shaped_count
    FROM shaped
    WHERE shape IS NOT NULL
)
SELECT
    time,
    'raw_events' AS evidence_table,
    raw_row AS row_id,
    principal_id,
    'account=' || coalesce(account, '') || CASE WHEN principal_id IS NULL THEN ' ip=' || coalesce(client_ip, '') ELSE '' END
        AS entity,
    shape || ': ' || left(replace(query_text, chr(10), ' '), 160) || ' by ' || coalesce(principal_id, 'a key')
        || ' from ' || coalesce(client_ip, 'an unlogged request')
        || coalesce(' (status ' || status_code || ')', '') || '; ' || shaped_count
        || ' injection-shaped queries within ' || $window_minutes || ' minutes' AS detail
FROM scored
WHERE time >= $from AND time < $to AND shaped_count >= $min_shaped
