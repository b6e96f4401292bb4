-- The registry's tables. They live in the schema named by MCP_DYNAMIC_PG_SCHEMA:
-- every connection starts with search_path set to that schema alone, so no name
-- here is schema-qualified (see src/store/postgres/connect.rs).

-- Exactly one row: the catalog version, bumped by every write in the same
-- transaction. Each write locks this row first, which puts the writes of all
-- replicas in one order and makes "count, then insert" safe for the tool limit.
CREATE TABLE catalog (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL CHECK (version >= 0)
);
INSERT INTO catalog (singleton, version) VALUES (true, 0);

-- One row per tool. "C" collation: listings sort by bytes, as the file store does.
CREATE TABLE tools (
    name text COLLATE "C" PRIMARY KEY,
    title text,
    description text NOT NULL,
    image text NOT NULL,
    timeout_ms integer NOT NULL CHECK (timeout_ms > 0),
    dependencies jsonb NOT NULL,
    code text NOT NULL,
    -- So listings can report the size without reading the code.
    code_size_bytes bigint GENERATED ALWAYS AS (octet_length(code)) STORED,
    enabled boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    revision bigint NOT NULL CHECK (revision >= 1)
);

-- The latest changes, one row per catalog version (older ones are pruned).
-- Each replica's change listener reads them after a notification or a
-- reconnect and turns them into change events; a delete's row keeps the
-- tool's last state, which the tools table no longer has. No code here.
CREATE TABLE tool_changes (
    catalog_version bigint PRIMARY KEY CHECK (catalog_version >= 1),
    kind text NOT NULL CHECK (kind IN ('created', 'updated', 'deleted', 'enabled', 'disabled')),
    name text COLLATE "C" NOT NULL,
    title text,
    description text NOT NULL,
    image text NOT NULL,
    timeout_ms integer NOT NULL,
    dependencies jsonb NOT NULL,
    code_size_bytes bigint NOT NULL,
    enabled boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    revision bigint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
