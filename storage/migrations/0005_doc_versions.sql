-- 0005 (issue 17): which documents changed since a worker last looked. A server's workers
-- (the desk's approvals queue, the report signer, the desk's follower of the jobs) derive
-- state from stored documents. Instead of reading every stored document at start to find
-- what changed while they were not running, each keeps a watermark (`doc_watermarks`) and
-- reads only the documents whose `seq` is above it.
--
-- `doc_versions` has one row per document: `seq` is the position of its last stored change
-- in one sequence over every document, set by the trigger below in the transaction that
-- stores the change, so a change is never durable without its row being moved on. Only
-- incremental chunks count: a snapshot (compaction) holds nothing that was not stored
-- before. Rows are never deleted, so a `seq` is never handed out twice.
CREATE TABLE doc_versions (
    doc_id TEXT PRIMARY KEY CHECK (length(doc_id) > 0),
    seq    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE UNIQUE INDEX doc_versions_by_seq ON doc_versions (seq);

-- The documents stored before this step, numbered in the order of their last chunk: a
-- worker without a watermark (0) reads them all once, at the first start of this version.
INSERT INTO doc_versions (doc_id, seq)
    SELECT doc_id, ROW_NUMBER() OVER (ORDER BY last_id)
    FROM (SELECT doc_id, MAX(id) AS last_id FROM doc_chunks GROUP BY doc_id);

CREATE TRIGGER doc_versions_on_change AFTER INSERT ON doc_chunks
WHEN NEW.kind = 'incremental'
BEGIN
    INSERT INTO doc_versions (doc_id, seq)
        VALUES (NEW.doc_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM doc_versions))
        ON CONFLICT (doc_id) DO UPDATE SET seq = excluded.seq;
END;

-- Per worker, the `seq` up to which every document's changes have been taken in.
CREATE TABLE doc_watermarks (
    worker TEXT PRIMARY KEY CHECK (length(worker) > 0),
    seq    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
