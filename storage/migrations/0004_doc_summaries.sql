-- 0004 (issue 17): a small summary per document, kept by the node that owns the store (a
-- technician's device lists its jobs from these instead of loading every document).
--
-- A summary describes the document as its stored chunks hold it. The node writes a new one
-- in the same transaction as the chunk that changes the document; an incremental chunk
-- stored without one (by anyone: an older build, a tool, a write whose summary was not
-- ready) deletes the old summary, so a summary is current or absent, never stale. A
-- snapshot holds exactly what the chunks it replaces held (compaction), so storing one
-- leaves the summary as it is.

CREATE TABLE doc_summaries (
    doc_id TEXT PRIMARY KEY CHECK (length(doc_id) > 0),
    body   BLOB NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TRIGGER doc_summaries_outdated AFTER INSERT ON doc_chunks
WHEN NEW.kind = 'incremental'
BEGIN
    DELETE FROM doc_summaries WHERE doc_id = NEW.doc_id;
END;
