"""Versioned schema migrations for the PostgreSQL store; the table `gateway_schema` records
which have been applied. The tables are those of the SQLite store after its own migrations
(see migrations.py), in PostgreSQL's types: bodies and event frames as bytea, exactly the
bytes the API sends.

Append a new script to MIGRATIONS to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: objects, the run event log in blocks, secrets, API keys and idempotency keys.
    """
    CREATE TABLE assistants (
        seq     BIGSERIAL PRIMARY KEY,
        id      TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL DEFAULT '',
        body    BYTEA NOT NULL
    );
    CREATE INDEX assistants_by_project ON assistants(project, seq);
    CREATE TABLE threads (
        seq     BIGSERIAL PRIMARY KEY,
        id      TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL DEFAULT '',
        body    BYTEA NOT NULL
    );
    CREATE TABLE messages (
        seq       BIGSERIAL PRIMARY KEY,
        id        TEXT NOT NULL UNIQUE,
        thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        run_id    TEXT,
        body      BYTEA NOT NULL
    );
    CREATE INDEX messages_by_thread ON messages(thread_id, seq);
    CREATE INDEX messages_by_run ON messages(run_id) WHERE run_id IS NOT NULL;
    CREATE TABLE runs (
        seq          BIGSERIAL PRIMARY KEY,
        id           TEXT NOT NULL UNIQUE,
        thread_id    TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        assistant_id TEXT NOT NULL,
        status       TEXT NOT NULL,
        expires_at   BIGINT,
        body         BYTEA NOT NULL
    );
    CREATE INDEX runs_by_thread ON runs(thread_id, seq);
    CREATE INDEX runs_active ON runs(status, expires_at)
        WHERE status IN ('queued', 'in_progress', 'requires_action', 'cancelling');
    CREATE TABLE run_steps (
        seq       BIGSERIAL PRIMARY KEY,
        id        TEXT NOT NULL UNIQUE,
        thread_id TEXT NOT NULL,
        run_id    TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        body      BYTEA NOT NULL
    );
    CREATE INDEX run_steps_by_run ON run_steps(run_id, seq);
    CREATE TABLE run_event_blocks (
        run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        first_seq  BIGINT NOT NULL,
        last_seq   BIGINT NOT NULL,
        frames     BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (run_id, first_seq)
    );
    CREATE INDEX run_event_blocks_by_age ON run_event_blocks(created_at);
    CREATE TABLE gateway_secrets (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE api_keys (
        id         TEXT PRIMARY KEY,
        project    TEXT NOT NULL,
        hash       BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE TABLE idempotency_keys (
        project     TEXT NOT NULL,
        key         TEXT NOT NULL,
        fingerprint BYTEA NOT NULL,
        status      INTEGER,
        body        BYTEA,
        thread_id   TEXT,
        run_id      TEXT,
        created_at  BIGINT NOT NULL,
        PRIMARY KEY (project, key)
    );
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);
    """,
    # 2: run leases (see the SQLite store's migration 6), and at most one active run per
    # thread, which several processes cannot keep by themselves.
    """
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_until DOUBLE PRECISION;
    ALTER TABLE runs ADD COLUMN stop_requested TEXT;
    CREATE UNIQUE INDEX runs_one_active_per_thread ON runs(thread_id)
        WHERE status IN ('queued', 'in_progress', 'requires_action', 'cancelling');
    """,
    # 3: files and their bytes (see the SQLite store's migration 7).
    """
    CREATE TABLE files (
        seq        BIGSERIAL PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        project    TEXT NOT NULL DEFAULT '',
        purpose    TEXT NOT NULL,
        expires_at BIGINT,
        body       BYTEA NOT NULL
    );
    CREATE INDEX files_by_project ON files(project, seq);
    CREATE INDEX files_expiring ON files(expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE blob_chunks (
        blob_id    TEXT NOT NULL,
        part       INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        data       BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (blob_id, part, seq)
    );
    """,
    # 4: uploads and their parts (see the SQLite store's migration 8).
    """
    CREATE TABLE uploads (
        seq        BIGSERIAL PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        project    TEXT NOT NULL DEFAULT '',
        status     TEXT NOT NULL,
        expires_at BIGINT,
        body       BYTEA NOT NULL
    );
    CREATE INDEX uploads_pending ON uploads(expires_at) WHERE status = 'pending';
    CREATE TABLE upload_parts (
        seq       BIGSERIAL PRIMARY KEY,
        id        TEXT NOT NULL UNIQUE,
        upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        bytes     BIGINT NOT NULL,
        body      BYTEA NOT NULL
    );
    CREATE INDEX upload_parts_by_upload ON upload_parts(upload_id, seq);
    """,
    # 5: vector stores, their files, file batches and chunks (see the SQLite store's
    # migration 9); a chunk's words are a generated tsvector with a GIN index.
    """
    CREATE TABLE vector_stores (
        seq        BIGSERIAL PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        project    TEXT NOT NULL DEFAULT '',
        expires_at BIGINT,
        body       BYTEA NOT NULL
    );
    CREATE INDEX vector_stores_by_project ON vector_stores(project, seq);
    CREATE TABLE vector_store_files (
        seq             BIGSERIAL PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,
        vector_store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE,
        file_id         TEXT NOT NULL,
        batch_id        TEXT,
        status          TEXT NOT NULL,
        owner           TEXT,
        lease_until     DOUBLE PRECISION,
        body            BYTEA NOT NULL
    );
    CREATE INDEX vector_store_files_by_store ON vector_store_files(vector_store_id, seq);
    CREATE INDEX vector_store_files_by_file ON vector_store_files(file_id);
    CREATE INDEX vector_store_files_by_batch ON vector_store_files(batch_id, seq)
        WHERE batch_id IS NOT NULL;
    CREATE INDEX vector_store_files_waiting ON vector_store_files(seq)
        WHERE status = 'in_progress';
    CREATE TABLE file_batches (
        seq             BIGSERIAL PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,
        vector_store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE,
        status          TEXT NOT NULL,
        body            BYTEA NOT NULL
    );
    CREATE TABLE vs_chunks (
        seq             BIGSERIAL PRIMARY KEY,
        vector_store_id TEXT NOT NULL,
        file_id         TEXT NOT NULL,
        position        INTEGER NOT NULL,
        text            TEXT NOT NULL,
        tokens          INTEGER NOT NULL,
        embedding       BYTEA,
        words           TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
    );
    CREATE INDEX vs_chunks_by_file ON vs_chunks(vector_store_id, file_id, position);
    CREATE INDEX vs_chunks_words ON vs_chunks USING GIN (words);
    """,
    # 6: each store's chunk count and a version that every change of its chunks moves, kept by
    # statement triggers in the writing transaction (one row read instead of a count(*)).
    """
    CREATE TABLE vs_chunk_stamps (
        vector_store_id TEXT PRIMARY KEY,
        chunks          BIGINT NOT NULL,
        version         BIGINT NOT NULL
    );
    INSERT INTO vs_chunk_stamps (vector_store_id, chunks, version)
        SELECT vector_store_id, count(*), count(*) FROM vs_chunks GROUP BY vector_store_id;
    CREATE FUNCTION vs_chunks_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO vs_chunk_stamps (vector_store_id, chunks, version)
            SELECT vector_store_id, count(*), 1 FROM added GROUP BY vector_store_id
            ON CONFLICT (vector_store_id) DO UPDATE
            SET chunks = vs_chunk_stamps.chunks + EXCLUDED.chunks,
                version = vs_chunk_stamps.version + 1;
        RETURN NULL;
    END $$;
    CREATE FUNCTION vs_chunks_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE vs_chunk_stamps s SET chunks = s.chunks - r.n, version = s.version + 1
            FROM (SELECT vector_store_id, count(*) AS n FROM removed GROUP BY vector_store_id) r
            WHERE s.vector_store_id = r.vector_store_id;
        RETURN NULL;
    END $$;
    CREATE FUNCTION vector_stores_unstamp() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM vs_chunk_stamps WHERE vector_store_id = OLD.id;
        RETURN NULL;
    END $$;
    CREATE TRIGGER vs_chunks_counted AFTER INSERT ON vs_chunks
        REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION vs_chunks_added();
    CREATE TRIGGER vs_chunks_uncounted AFTER DELETE ON vs_chunks
        REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION vs_chunks_removed();
    CREATE TRIGGER vector_stores_unstamped AFTER DELETE ON vector_stores
        FOR EACH ROW EXECUTE FUNCTION vector_stores_unstamp();
    """,
)
