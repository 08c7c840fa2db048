"""Versioned schema migrations for the SQLite store; `PRAGMA user_version` records the version.

Append a new script to MIGRATIONS to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the five object tables. `seq` gives creation order (created_at has one-second ties).
    """
    CREATE TABLE assistants (
        seq  INTEGER PRIMARY KEY AUTOINCREMENT,
        id   TEXT NOT NULL UNIQUE,
        body BLOB NOT NULL
    );
    CREATE TABLE threads (
        seq  INTEGER PRIMARY KEY AUTOINCREMENT,
        id   TEXT NOT NULL UNIQUE,
        body BLOB NOT NULL
    );
    CREATE TABLE messages (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        id        TEXT NOT NULL UNIQUE,
        thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        run_id    TEXT,
        body      BLOB NOT NULL
    );
    CREATE INDEX messages_by_thread ON messages(thread_id, seq);
    CREATE INDEX messages_by_run ON messages(run_id) WHERE run_id IS NOT NULL;
    CREATE TABLE runs (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        thread_id    TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        assistant_id TEXT NOT NULL,
        status       TEXT NOT NULL,
        expires_at   INTEGER,
        body         BLOB NOT NULL
    );
    CREATE INDEX runs_by_thread ON runs(thread_id, seq);
    CREATE INDEX runs_active ON runs(status, expires_at)
        WHERE status IN ('queued', 'in_progress', 'requires_action', 'cancelling');
    CREATE TABLE run_steps (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        id        TEXT NOT NULL UNIQUE,
        thread_id TEXT NOT NULL,
        run_id    TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        body      BLOB NOT NULL
    );
    CREATE INDEX run_steps_by_run ON run_steps(run_id, seq);
    """,
    # 2: the ordered event log of each run (frames as sent, ids included), and the gateway's
    # own secrets (the key that signs browser stream tokens), so both survive a restart.
    """
    CREATE TABLE run_events (
        run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq        INTEGER NOT NULL,
        name       TEXT NOT NULL,
        frame      BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX run_events_by_age ON run_events(created_at);
    CREATE TABLE gateway_secrets (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 3: the event log in blocks: one row per run per group commit, holding that run's frames
    # back to back (each frame names its own id), instead of one row per event. A row per
    # event cost SQLite a key, an index entry and a foreign-key check for every text delta.
    # The marker that ends a stream segment is kept as a frame with no data line.
    """
    CREATE TABLE run_event_blocks (
        run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        first_seq  INTEGER NOT NULL,
        last_seq   INTEGER NOT NULL,
        frames     BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (run_id, first_seq)
    ) WITHOUT ROWID;
    CREATE INDEX run_event_blocks_by_age ON run_event_blocks(created_at);
    INSERT INTO run_event_blocks (run_id, first_seq, last_seq, frames, created_at)
        SELECT run_id, seq, seq,
               CASE WHEN name = 'gateway.stream_end'
                    THEN CAST('id: ' || seq || char(10) || 'event: gateway.stream_end'
                              || char(10) || char(10) AS BLOB)
                    ELSE frame END,
               created_at
        FROM run_events;
    DROP TABLE run_events;
    """,
    # 4: projects and API keys. Assistants and threads belong to a project (messages, runs and
    # steps belong to their thread); objects made while the server ran without keys keep the
    # empty project. A key is kept as its id, its project and a SHA-256 of its secret part.
    """
    ALTER TABLE assistants ADD COLUMN project TEXT NOT NULL DEFAULT '';
    ALTER TABLE threads ADD COLUMN project TEXT NOT NULL DEFAULT '';
    CREATE INDEX assistants_by_project ON assistants(project, seq);
    CREATE TABLE api_keys (
        id         TEXT PRIMARY KEY,
        project    TEXT NOT NULL,
        hash       BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    """,
    # 5: idempotency keys. A row is claimed (no status yet) when a request with an
    # Idempotency-Key starts, and holds its response once it ends: the JSON body, or for a
    # streamed create the run whose event log replays it.
    """
    CREATE TABLE idempotency_keys (
        project     TEXT NOT NULL,
        key         TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        status      INTEGER,
        body        BLOB,
        thread_id   TEXT,
        run_id      TEXT,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (project, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);
    """,
    # 6: run leases. The process executing or holding a run (`owner`) renews `lease_until`
    # (Unix seconds) while it lives; another process may take over a run whose lease has
    # passed. `stop_requested` asks the owner to stop the run (a cancel made elsewhere).
    # At most one active run per thread, as the PostgreSQL store has it (the engine already
    # kept to it, so no existing file breaks it).
    """
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_until REAL;
    ALTER TABLE runs ADD COLUMN stop_requested TEXT;
    CREATE UNIQUE INDEX runs_one_active_per_thread ON runs(thread_id)
        WHERE status IN ('queued', 'in_progress', 'requires_action', 'cancelling');
    """,
    # 7: files and their bytes. A file's bytes are chunks of a blob (the file's id, or an
    # upload part's id) in (part, seq) order, kept in the database so every process reads them;
    # a blob with no file is what an interrupted upload left, pruned by age.
    """
    CREATE TABLE files (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        project    TEXT NOT NULL DEFAULT '',
        purpose    TEXT NOT NULL,
        expires_at INTEGER,
        body       BLOB NOT NULL
    );
    CREATE INDEX files_by_project ON files(project, seq);
    CREATE INDEX files_expiring ON files(expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE blob_chunks (
        blob_id    TEXT NOT NULL,
        part       INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        data       BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (blob_id, part, seq)
    ) WITHOUT ROWID;
    """,
    # 8: uploads (the Uploads API) and their parts. A part's bytes are the blob of its id
    # until the upload completes and they become pieces of the file's blob; a pending upload
    # holds its parts from the pruner.
    """
    CREATE TABLE uploads (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        project    TEXT NOT NULL DEFAULT '',
        status     TEXT NOT NULL,
        expires_at INTEGER,
        body       BLOB NOT NULL
    );
    CREATE INDEX uploads_pending ON uploads(expires_at) WHERE status = 'pending';
    CREATE TABLE upload_parts (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        id        TEXT NOT NULL UNIQUE,
        upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        bytes     INTEGER NOT NULL,
        body      BLOB NOT NULL
    );
    CREATE INDEX upload_parts_by_upload ON upload_parts(upload_id, seq);
    """,
    # 9: vector stores, the files in them (keyed "<store>/<file>"; `owner` and `lease_until`
    # claim an ingestion, as runs are claimed), file batches, and the chunks a file was cut
    # into, with their embeddings, searched by words through an FTS5 index over their text.
    """
    CREATE TABLE vector_stores (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        project    TEXT NOT NULL DEFAULT '',
        expires_at INTEGER,
        body       BLOB NOT NULL
    );
    CREATE INDEX vector_stores_by_project ON vector_stores(project, seq);
    CREATE TABLE vector_store_files (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        vector_store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE,
        file_id         TEXT NOT NULL,
        batch_id        TEXT,
        status          TEXT NOT NULL,
        owner           TEXT,
        lease_until     REAL,
        body            BLOB NOT NULL
    );
    CREATE INDEX vector_store_files_by_store ON vector_store_files(vector_store_id, seq);
    CREATE INDEX vector_store_files_by_file ON vector_store_files(file_id);
    CREATE INDEX vector_store_files_by_batch ON vector_store_files(batch_id, seq)
        WHERE batch_id IS NOT NULL;
    CREATE INDEX vector_store_files_waiting ON vector_store_files(seq)
        WHERE status = 'in_progress';
    CREATE TABLE file_batches (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        vector_store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE,
        status          TEXT NOT NULL,
        body            BLOB NOT NULL
    );
    CREATE TABLE vs_chunks (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        vector_store_id TEXT NOT NULL,
        file_id         TEXT NOT NULL,
        position        INTEGER NOT NULL,
        text            TEXT NOT NULL,
        tokens          INTEGER NOT NULL,
        embedding       BLOB
    );
    CREATE INDEX vs_chunks_by_file ON vs_chunks(vector_store_id, file_id, position);
    CREATE VIRTUAL TABLE vs_chunks_fts USING fts5(
        text, content='vs_chunks', content_rowid='seq', tokenize='porter unicode61'
    );
    CREATE TRIGGER vs_chunks_indexed AFTER INSERT ON vs_chunks BEGIN
        INSERT INTO vs_chunks_fts(rowid, text) VALUES (new.seq, new.text);
    END;
    CREATE TRIGGER vs_chunks_unindexed AFTER DELETE ON vs_chunks BEGIN
        INSERT INTO vs_chunks_fts(vs_chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text);
    END;
    """,
    # 10: the chunks' full-text index names each chunk's store, so that a search matches only
    # the stores it asks for (a large store no longer slows every other store's searches).
    """
    DROP TRIGGER vs_chunks_indexed;
    DROP TRIGGER vs_chunks_unindexed;
    DROP TABLE vs_chunks_fts;
    CREATE VIRTUAL TABLE vs_chunks_fts USING fts5(
        text, vector_store_id, content='vs_chunks', content_rowid='seq',
        tokenize='porter unicode61'
    );
    INSERT INTO vs_chunks_fts(vs_chunks_fts) VALUES ('rebuild');
    CREATE TRIGGER vs_chunks_indexed AFTER INSERT ON vs_chunks BEGIN
        INSERT INTO vs_chunks_fts(rowid, text, vector_store_id)
            VALUES (new.seq, new.text, new.vector_store_id);
    END;
    CREATE TRIGGER vs_chunks_unindexed AFTER DELETE ON vs_chunks BEGIN
        INSERT INTO vs_chunks_fts(vs_chunks_fts, rowid, text, vector_store_id)
            VALUES ('delete', old.seq, old.text, old.vector_store_id);
    END;
    """,
    # 11: each store's chunk count and a version that every added or removed chunk moves, kept
    # by triggers in the writing transaction: a search's check that its cached vectors are up to
    # date reads one row instead of counting the store's chunks (13 ms at 100,000).
    """
    CREATE TABLE vs_chunk_stamps (
        vector_store_id TEXT PRIMARY KEY,
        chunks          INTEGER NOT NULL,
        version         INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO vs_chunk_stamps (vector_store_id, chunks, version)
        SELECT vector_store_id, count(*), count(*) FROM vs_chunks GROUP BY vector_store_id;
    CREATE TRIGGER vs_chunks_counted AFTER INSERT ON vs_chunks BEGIN
        INSERT INTO vs_chunk_stamps (vector_store_id, chunks, version)
            VALUES (new.vector_store_id, 1, 1)
            ON CONFLICT (vector_store_id) DO UPDATE SET chunks = chunks + 1, version = version + 1;
    END;
    CREATE TRIGGER vs_chunks_uncounted AFTER DELETE ON vs_chunks BEGIN
        UPDATE vs_chunk_stamps SET chunks = chunks - 1, version = version + 1
            WHERE vector_store_id = old.vector_store_id;
    END;
    CREATE TRIGGER vector_stores_unstamped AFTER DELETE ON vector_stores BEGIN
        DELETE FROM vs_chunk_stamps WHERE vector_store_id = old.id;
    END;
    """,
)
