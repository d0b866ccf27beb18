-- 0001: the first schema. Doc chunks in the style of automerge-repo's storage, persisted
-- sync states per (peer, document), and a small key-value table for records.
--
-- Released migrations are never edited: a change to the schema is a new numbered file.

-- Per document: incremental change chunks and compacted snapshots. `key` is the SHA-256 of
-- `data`, so appending the same bytes twice keeps one row. `id` keeps arrival order.
CREATE TABLE doc_chunks (
    id     INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL CHECK (length(doc_id) > 0),
    kind   TEXT NOT NULL CHECK (kind IN ('incremental', 'snapshot')),
    key    BLOB NOT NULL CHECK (length(key) = 32),
    data   BLOB NOT NULL,
    UNIQUE (doc_id, key)
) STRICT;

-- The automerge sync state we hold for a peer (by its storage id) and a document, so that a
-- reconnecting peer resumes where it left off instead of starting over.
CREATE TABLE sync_states (
    peer_storage_id TEXT NOT NULL CHECK (length(peer_storage_id) > 0),
    doc_id          TEXT NOT NULL CHECK (length(doc_id) > 0),
    state           BLOB NOT NULL,
    PRIMARY KEY (peer_storage_id, doc_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX sync_states_by_doc ON sync_states (doc_id);

-- Small records grouped by namespace (device registry, revocations, assignments, ...).
CREATE TABLE meta (
    namespace TEXT NOT NULL CHECK (length(namespace) > 0),
    key       TEXT NOT NULL,
    value     BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
) STRICT, WITHOUT ROWID;
