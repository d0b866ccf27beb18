-- 0002: versioned records, for what a node keeps that is not an automerge document (the
-- service desk's service requests, complaints, requisitions, tools, ...; issue #6).
--
-- The body is JSON owned by the program that writes it; this crate does not interpret it.
-- `revision` makes every write a compare-and-set: a write of revision n succeeds only over
-- revision n - 1 (or over nothing, for n = 1), so two writers that read the same revision
-- cannot both win and a record's history (e.g. a complaint's ordered steps) is never lost.
CREATE TABLE records (
    kind     TEXT    NOT NULL CHECK (length(kind) > 0),
    id       TEXT    NOT NULL CHECK (length(id) > 0),
    revision INTEGER NOT NULL CHECK (revision >= 1),
    -- A secondary key records are looked up by (e.g. a product serial), or NULL.
    lookup   TEXT,
    -- 1 while the record still needs attention (an open request, a tool on loan).
    open     INTEGER NOT NULL CHECK (open IN (0, 1)),
    body     BLOB    NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX records_by_lookup ON records (kind, lookup) WHERE lookup IS NOT NULL;
CREATE INDEX records_open ON records (kind, open);
