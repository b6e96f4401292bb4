-- First-class tools: optional fields beyond the seed's, every revision kept,
-- deleted tools kept for a while, and idempotency keys. Existing rows keep
-- working: their extensions are empty, and each tool's current revision
-- becomes its first kept one.

-- The optional fields (schemas, annotations, examples, arguments, isolation,
-- network, secrets) as one camelCase JSON object, as the file store writes them.
ALTER TABLE tools ADD COLUMN extensions jsonb NOT NULL DEFAULT '{}';
ALTER TABLE tool_changes ADD COLUMN extensions jsonb NOT NULL DEFAULT '{}';

-- Every kept revision of every tool name, the current one included; a
-- deleted tool's revisions stay while its row in deleted_tools does.
-- `record` is the whole record (with its code) as the file store writes it.
CREATE TABLE tool_revisions (
    name text COLLATE "C" NOT NULL,
    revision bigint NOT NULL CHECK (revision >= 1),
    kind text NOT NULL,
    actor text NOT NULL,
    changed_fields jsonb NOT NULL DEFAULT '[]',
    rolled_back_to bigint,
    record jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, revision)
);

-- A deleted tool that can still be restored.
CREATE TABLE deleted_tools (
    name text COLLATE "C" PRIMARY KEY,
    revision bigint NOT NULL,
    deleted_at timestamptz NOT NULL,
    deleted_by text NOT NULL
);

-- Keys of recent writes, so a retried write gets its first answer again.
CREATE TABLE idempotency_keys (
    key text PRIMARY KEY,
    fingerprint text NOT NULL,
    name text COLLATE "C" NOT NULL,
    revision bigint NOT NULL,
    catalog_version bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_recorded_at ON idempotency_keys (recorded_at);

INSERT INTO tool_revisions (name, revision, kind, actor, record, recorded_at)
SELECT name, revision, 'migrated', 'migration',
       jsonb_strip_nulls(jsonb_build_object(
           'name', name, 'title', title, 'description', description, 'image', image,
           'timeoutMs', timeout_ms, 'dependencies', dependencies, 'code', code, 'enabled', enabled,
           'createdAt', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'updatedAt', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'revision', revision)),
       updated_at
FROM tools;
