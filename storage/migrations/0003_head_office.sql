-- 0003: head office's archive as tables (issue 16), in place of `meta` namespaces.
--
-- One row per verified report, unique on the report id (a report delivered twice, or to two
-- head-office processes, is archived once), with the columns the R25 lists and the R24
-- statistics select by: month, customer, product type, branch, product serial (R4 repeat
-- repairs look back by serial) and the report it supersedes. `report` is the signed report's
-- JSON as received; the rest of an archive entry is the columns. Reports kept aside and
-- waiting share one table keyed by report document, so a document is in at most one of the
-- two lists. Complaints keep their latest verified revision by `<branch>/<complaint id>`.
--
-- The same tables exist on PostgreSQL (server/src/head_office/store/postgres/), so both
-- backends answer the same queries. Rows already in `meta` are moved here.
CREATE TABLE ho_reports (
    report_id    TEXT    NOT NULL PRIMARY KEY,
    report_doc   TEXT    NOT NULL,
    branch_id    TEXT    NOT NULL,
    job_id       TEXT    NOT NULL,
    month        TEXT    NOT NULL,
    customer_id  TEXT    NOT NULL,
    product_type TEXT    NOT NULL,
    serial       TEXT    NOT NULL,
    supersedes   TEXT,
    signed_at    INTEGER NOT NULL,
    verified_at  INTEGER NOT NULL,
    report       TEXT    NOT NULL,
    -- What a month's statistics read (`stats::ReportFacts`), computed when the report is
    -- archived, in the same row; NULL `kind`: not kept (the statistics read `report`).
    kind         TEXT,
    billing      TEXT,
    people       INTEGER,
    days_on_site INTEGER,
    parts        INTEGER,
    labour       INTEGER,
    travel       INTEGER,
    cost         INTEGER,
    customer_pays INTEGER,
    training     INTEGER,
    acknowledged INTEGER,
    attitude     INTEGER,
    skill        INTEGER,
    punctuality  INTEGER,
    service_items INTEGER,
    suggestion   INTEGER,
    fault        TEXT
) STRICT;

CREATE INDEX ho_reports_by_month ON ho_reports (month, signed_at);
CREATE INDEX ho_reports_by_customer ON ho_reports (customer_id, signed_at);
CREATE INDEX ho_reports_by_product ON ho_reports (product_type, signed_at);
CREATE INDEX ho_reports_by_branch ON ho_reports (branch_id, signed_at);
CREATE INDEX ho_reports_by_serial ON ho_reports (serial, signed_at);
CREATE INDEX ho_reports_by_doc ON ho_reports (report_doc);
CREATE INDEX ho_reports_superseding ON ho_reports (supersedes) WHERE supersedes IS NOT NULL;

CREATE TABLE ho_reports_aside (
    report_doc TEXT    NOT NULL PRIMARY KEY,
    status     TEXT    NOT NULL CHECK (status IN ('pending', 'rejected')),
    report_id  TEXT,
    at         INTEGER NOT NULL,
    body       TEXT    NOT NULL
) STRICT;

CREATE INDEX ho_reports_aside_by_report ON ho_reports_aside (report_id);

CREATE TABLE ho_complaints (
    key       TEXT    NOT NULL PRIMARY KEY,
    branch_id TEXT    NOT NULL,
    month     TEXT    NOT NULL,
    revision  INTEGER NOT NULL,
    body      TEXT    NOT NULL
) STRICT;

CREATE INDEX ho_complaints_by_month ON ho_complaints (month, branch_id);

CREATE TABLE ho_complaints_rejected (
    document TEXT    NOT NULL PRIMARY KEY,
    at       INTEGER NOT NULL,
    body     TEXT    NOT NULL
) STRICT;

-- `fieldsync archive retry` moves the generation on; every receiver on the archive watches it
-- and verifies again the reports taken out of the rejected list.
CREATE TABLE ho_retry (
    one        INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
    generation INTEGER NOT NULL
) STRICT;

INSERT INTO ho_retry
VALUES (1, coalesce((SELECT CAST(CAST(value AS TEXT) AS INTEGER) FROM meta
                     WHERE namespace = 'head_office' AND key = 'retry_generation'), 0));

INSERT INTO ho_reports (report_id, report_doc, branch_id, job_id, month, customer_id,
                        product_type, serial, supersedes, signed_at, verified_at, report)
SELECT key,
       json_extract(v, '$.report_doc'),
       json_extract(v, '$.branch_id'),
       json_extract(v, '$.job_id'),
       json_extract(v, '$.month'),
       json_extract(v, '$.customer_id'),
       json_extract(v, '$.product_type'),
       coalesce(json_extract(v, '$.report.body.content.product.serial'), ''),
       json_extract(v, '$.report.body.supersedes'),
       json_extract(v, '$.signed_at'),
       json_extract(v, '$.verified_at'),
       json(json_extract(v, '$.report'))
FROM (SELECT key, CAST(value AS TEXT) AS v FROM meta WHERE namespace = 'archive');

INSERT OR IGNORE INTO ho_reports_aside
SELECT key,
       CASE namespace WHEN 'pending_reports' THEN 'pending' ELSE 'rejected' END,
       json_extract(CAST(value AS TEXT), '$.report_id'),
       json_extract(CAST(value AS TEXT), '$.at'),
       CAST(value AS TEXT)
FROM meta WHERE namespace IN ('rejected_reports', 'pending_reports');

INSERT INTO ho_complaints
SELECT key,
       json_extract(CAST(value AS TEXT), '$.branch_id'),
       json_extract(CAST(value AS TEXT), '$.month'),
       json_extract(CAST(value AS TEXT), '$.revision'),
       CAST(value AS TEXT)
FROM meta WHERE namespace = 'complaint_archive';

INSERT INTO ho_complaints_rejected
SELECT key, 0, CAST(value AS TEXT)
FROM meta WHERE namespace = 'rejected_complaints';

DELETE FROM meta
WHERE (namespace = 'head_office' AND key = 'retry_generation')
   OR namespace IN ('archive', 'rejected_reports', 'pending_reports', 'complaint_archive',
                    'rejected_complaints')
   OR namespace LIKE 'by\_month:%' ESCAPE '\'
   OR namespace LIKE 'by\_customer:%' ESCAPE '\'
   OR namespace LIKE 'by\_product:%' ESCAPE '\'
   OR namespace LIKE 'complaints\_by\_month:%' ESCAPE '\';
