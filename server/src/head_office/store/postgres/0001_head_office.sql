-- 0001: head office's archive on PostgreSQL: the tables of the SQLite store's migration
-- 0003 (storage/migrations/0003_head_office.sql), with the same columns, keys and indexes,
-- so both backends answer the same queries. A month's statistics select by `month` (and look
-- back by `serial` and `signed_at`), each an index, so the query touches the month's rows
-- and not the whole archive.
CREATE TABLE ho_reports (
    report_id    TEXT   NOT NULL PRIMARY KEY,
    report_doc   TEXT   NOT NULL,
    branch_id    TEXT   NOT NULL,
    job_id       TEXT   NOT NULL,
    month        TEXT   NOT NULL,
    customer_id  TEXT   NOT NULL,
    product_type TEXT   NOT NULL,
    serial       TEXT   NOT NULL,
    supersedes   TEXT,
    signed_at    BIGINT NOT NULL,
    verified_at  BIGINT NOT NULL,
    report       TEXT   NOT NULL,
    -- What a month's statistics read (`stats::ReportFacts`), computed when the report is
    -- archived, in the same row; NULL `kind`: not kept (the statistics read `report`).
    kind         TEXT,
    billing      TEXT,
    people       BIGINT,
    days_on_site BIGINT,
    parts        BIGINT,
    labour       BIGINT,
    travel       BIGINT,
    cost         BIGINT,
    customer_pays BIGINT,
    training     BOOLEAN,
    acknowledged BOOLEAN,
    attitude     BIGINT,
    skill        BIGINT,
    punctuality  BIGINT,
    service_items BIGINT,
    suggestion   BOOLEAN,
    fault        TEXT
);

CREATE INDEX ho_reports_by_month ON ho_reports (month, signed_at);
CREATE INDEX ho_reports_by_customer ON ho_reports (customer_id, signed_at);
CREATE INDEX ho_reports_by_product ON ho_reports (product_type, signed_at);
CREATE INDEX ho_reports_by_branch ON ho_reports (branch_id, signed_at);
CREATE INDEX ho_reports_by_serial ON ho_reports (serial, signed_at);
CREATE INDEX ho_reports_by_doc ON ho_reports (report_doc);
CREATE INDEX ho_reports_superseding ON ho_reports (supersedes) WHERE supersedes IS NOT NULL;

CREATE TABLE ho_reports_aside (
    report_doc TEXT   NOT NULL PRIMARY KEY,
    status     TEXT   NOT NULL CHECK (status IN ('pending', 'rejected')),
    report_id  TEXT,
    at         BIGINT NOT NULL,
    body       TEXT   NOT NULL
);

CREATE INDEX ho_reports_aside_by_report ON ho_reports_aside (report_id);

CREATE TABLE ho_complaints (
    key       TEXT   NOT NULL PRIMARY KEY,
    branch_id TEXT   NOT NULL,
    month     TEXT   NOT NULL,
    revision  BIGINT NOT NULL,
    body      TEXT   NOT NULL
);

CREATE INDEX ho_complaints_by_month ON ho_complaints (month, branch_id);

CREATE TABLE ho_complaints_rejected (
    document TEXT   NOT NULL PRIMARY KEY,
    at       BIGINT NOT NULL,
    body     TEXT   NOT NULL
);

-- `fieldsync archive retry` moves the generation on; every head-office process watches it and
-- verifies again the reports taken out of the rejected list.
CREATE TABLE ho_retry (
    one        INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
    generation BIGINT  NOT NULL
);

INSERT INTO ho_retry VALUES (1, 0);
