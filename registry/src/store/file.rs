//! The file backend: one JSON file with exactly one writer, this process,
//! plus one history file per tool name in the directory `<file>.history/`.
//!
//! A write builds the new catalog, writes it whole to a temp file in the same
//! directory, fsyncs it, renames it over the store and fsyncs the directory;
//! only then do readers see the change and the caller get an answer. So a
//! kill at any moment leaves the old or the new file, never a mix, and an
//! acknowledged write is on disk. The catalog file is the commit point: a
//! tool's history file is written (the same way) before it, and on opening,
//! history that the catalog does not vouch for (a write that never finished)
//! is dropped.
//!
//! Format 1 (the seed's, without history) still opens: each tool gets its
//! current revision as its first kept one, and the file is rewritten as
//! format 2 before the store serves anything.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Mutex, broadcast};

use super::{
    Change, StoredCatalog, TombstoneChange, ToolStore, WriteContext, WriteOp, WriteView, Written, committed, decide,
    page, recorded_key, settled,
};
use crate::change::{ChangeEvent, ChangeKind, FEED_CAPACITY};
use crate::error::{RegistryError, StorageError};
use crate::history::{self, History, Retention, Revision, RevisionKind, Tombstone};
use crate::idempotency::RecordedKey;
use crate::quoting::quoted;
use crate::record::{self, ToolRecord};

const FORMAT_VERSION: u32 = 2;
/// The seed's layout: tools only, no history.
const FORMAT_VERSION_WITHOUT_HISTORY: u32 = 1;
/// Who a migrated revision is attributed to.
const MIGRATION_ACTOR: &str = "migration";

/// The file's layout: `{"formatVersion":2,"catalogVersion":N,"tools":[...],
/// "deleted":[...],"idempotencyKeys":[...]}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoreFile<T, D, K> {
    format_version: u32,
    catalog_version: u64,
    tools: Vec<T>,
    #[serde(default)]
    deleted: Vec<D>,
    #[serde(default)]
    idempotency_keys: Vec<K>,
}

/// One tool name's kept revisions, oldest first.
#[derive(Serialize, Deserialize)]
struct HistoryFile {
    name: String,
    revisions: Vec<Revision>,
}

/// Read first, alone, so a file from a newer registry is named as such
/// rather than as broken.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FormatHeader {
    format_version: u32,
}

pub struct FileStore {
    paths: Arc<StorePaths>,
    max_tools: usize,
    retention: Retention,
    state: Arc<Mutex<State>>,
    changes: broadcast::Sender<ChangeEvent>,
    /// Held for its exclusive lock: a second registry on this store refuses to start.
    _lock: File,
}

struct StorePaths {
    file: PathBuf,
    temp: PathBuf,
    lock: PathBuf,
    dir: PathBuf,
    history: PathBuf,
}

#[derive(Default, Clone)]
struct State {
    version: u64,
    tools: BTreeMap<String, Arc<ToolRecord>>,
    deleted: BTreeMap<String, Tombstone>,
    keys: BTreeMap<String, RecordedKey>,
}

impl FileStore {
    /// Opens (or starts) the store at `path`. A missing file is an empty store;
    /// a file that does not parse is refused and left untouched.
    pub fn open(path: &Path, max_tools: usize, retention: Retention) -> Result<Self, StorageError> {
        let paths = StorePaths::new(path)?;
        fs::create_dir_all(&paths.dir).map_err(io_error("create directory", &paths.dir))?;
        let lock = paths.take_lock()?;
        paths.remove_leftover_temp(&paths.temp)?;
        fs::create_dir_all(&paths.history).map_err(io_error("create directory", &paths.history))?;
        let (mut state, format) = load(&paths.file)?;
        let purged = purge(&mut state, &retention, OffsetDateTime::now_utc());
        paths.reconcile_history(&state, &purged)?;
        if format != FORMAT_VERSION || !purged.is_empty() {
            paths.replace_file(&state)?;
            paths.sync_dir(&paths.dir)?;
            if format != FORMAT_VERSION {
                tracing::info!(store = %paths.file.display(), from = format, to = FORMAT_VERSION, "tool store migrated");
            }
        }
        tracing::info!(
            store = %paths.file.display(),
            tools = state.tools.len(),
            deleted = state.deleted.len(),
            catalog_version = state.version,
            "tool store opened"
        );
        Ok(Self {
            paths: Arc::new(paths),
            max_tools,
            retention,
            state: Arc::new(Mutex::new(state)),
            changes: broadcast::channel(FEED_CAPACITY).0,
            _lock: lock,
        })
    }
}

#[async_trait]
impl ToolStore for FileStore {
    /// The records are in memory, so they always carry their code.
    async fn catalog(&self, _include_code: bool) -> Result<StoredCatalog, RegistryError> {
        let state = self.state.lock().await;
        Ok(StoredCatalog {
            tools: state.tools.values().cloned().collect(),
            version: state.version,
        })
    }

    async fn get(&self, name: &str, revision: Option<u64>) -> Result<Arc<ToolRecord>, RegistryError> {
        let state = self.state.lock().await;
        let current = state.tools.get(name);
        match (current, revision) {
            (Some(current), None) => return Ok(Arc::clone(current)),
            (Some(current), Some(revision)) if current.revision == revision => return Ok(Arc::clone(current)),
            (None, None) => return Err(RegistryError::NotFound { name: name.to_owned() }),
            _ => {}
        }
        let Some(revision) = revision else {
            return Err(RegistryError::NotFound { name: name.to_owned() });
        };
        let known = current.is_some() || live_tombstone(&state, name, &self.retention).is_some();
        if !known {
            return Err(RegistryError::NotFound { name: name.to_owned() });
        }
        let found = self
            .paths
            .read_history(name)?
            .into_iter()
            .find(|r| r.tool.revision == revision);
        found
            .map(|r| Arc::new(r.tool))
            .ok_or_else(|| RegistryError::RevisionNotKept {
                name: name.to_owned(),
                revision,
                current: current.map(|c| c.revision),
            })
    }

    async fn history(&self, name: &str, limit: Option<usize>) -> Result<History, RegistryError> {
        let state = self.state.lock().await;
        let deleted = live_tombstone(&state, name, &self.retention).cloned();
        if !state.tools.contains_key(name) && deleted.is_none() {
            return Err(RegistryError::NotFound { name: name.to_owned() });
        }
        let (revisions, more) = page(self.paths.read_history(name)?, limit);
        Ok(History {
            revisions,
            deleted,
            more,
        })
    }

    async fn write(&self, op: WriteOp, ctx: WriteContext) -> Result<Written, RegistryError> {
        let mut state = Arc::clone(&self.state).lock_owned().await;
        let now = record::now();
        let decision = {
            let mut view = FileView {
                state: &state,
                paths: &self.paths,
                retention: &self.retention,
            };
            decide(&mut view, op, &ctx, self.max_tools, &now).await?
        };
        let change = match settled(decision, state.version) {
            Ok(written) => return Ok(written),
            Err(change) => change,
        };
        let paths = Arc::clone(&self.paths);
        let changes = self.changes.clone();
        let retention = self.retention;
        // The durable part runs on a blocking thread that holds the lock to
        // the end, even if the caller goes away, so memory always matches the file.
        let write = tokio::task::spawn_blocking(move || {
            let next = paths.commit(&state, &change, &ctx, &retention)?;
            *state = next.state;
            // From here the file holds the change, so memory keeps it too.
            let synced = paths.sync_dir(&paths.dir).and_then(|()| paths.sync_dir(&paths.history));
            paths.remove_histories(&next.purged);
            // No receivers (no watchers) is fine.
            let _ = changes.send(ChangeEvent {
                catalog_version: state.version,
                kind: change.kind,
                tool: Arc::new(change.tool.without_code()),
            });
            synced?;
            Ok(committed(&change, state.version))
        });
        write.await.map_err(|err| StorageError::WriterFailed(err.to_string()))?
    }

    fn retention(&self) -> Retention {
        self.retention
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    /// A failing disk shows up on the writes themselves, as UNAVAILABLE.
    async fn check_ready(&self) -> Result<(), RegistryError> {
        Ok(())
    }
}

/// What a write reads: memory, and history files on disk.
struct FileView<'a> {
    state: &'a State,
    paths: &'a StorePaths,
    retention: &'a Retention,
}

#[async_trait]
impl WriteView for FileView<'_> {
    async fn current(&mut self, name: &str) -> Result<Option<ToolRecord>, RegistryError> {
        Ok(self.state.tools.get(name).map(|tool| (**tool).clone()))
    }

    async fn tombstone(&mut self, name: &str) -> Result<Option<Tombstone>, RegistryError> {
        Ok(live_tombstone(self.state, name, self.retention).cloned())
    }

    async fn kept(&mut self, name: &str, revision: u64) -> Result<Option<ToolRecord>, RegistryError> {
        Ok(self
            .paths
            .read_history(name)?
            .into_iter()
            .find(|r| r.tool.revision == revision)
            .map(|r| r.tool))
    }

    async fn tool_count(&mut self) -> Result<usize, RegistryError> {
        Ok(self.state.tools.len())
    }

    async fn recorded_key(&mut self, key: &str) -> Result<Option<RecordedKey>, RegistryError> {
        let fresh = |k: &&RecordedKey| !older_than(&k.recorded_at, self.retention.idempotency_for);
        Ok(self.state.keys.get(key).filter(fresh).cloned())
    }
}

fn live_tombstone<'a>(state: &'a State, name: &str, retention: &Retention) -> Option<&'a Tombstone> {
    state
        .deleted
        .get(name)
        .filter(|t| !history::expired(&t.deleted_at, retention, OffsetDateTime::now_utc()))
}

fn older_than(at: &str, age: std::time::Duration) -> bool {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .is_ok_and(|at| at + age <= OffsetDateTime::now_utc())
}

/// Drops tombstones past their retention and keys past theirs; returns the
/// names whose history files are to go.
fn purge(state: &mut State, retention: &Retention, now: OffsetDateTime) -> Vec<String> {
    let expired: Vec<String> = state
        .deleted
        .values()
        .filter(|t| history::expired(&t.deleted_at, retention, now))
        .map(|t| t.name.clone())
        .collect();
    for name in &expired {
        state.deleted.remove(name);
    }
    state
        .keys
        .retain(|_, k| !older_than(&k.recorded_at, retention.idempotency_for));
    expired
}

/// The state after a commit, and the history files it no longer needs.
struct Committed {
    state: State,
    purged: Vec<String>,
}

impl State {
    fn apply(&mut self, change: &Change) {
        self.version += 1;
        let name = &change.tool.name;
        match change.kind {
            ChangeKind::Deleted => {
                self.tools.remove(name);
            }
            _ => {
                self.tools.insert(name.clone(), Arc::new(change.tool.clone()));
            }
        }
        match &change.tombstone {
            TombstoneChange::Keep => {}
            TombstoneChange::Remove => {
                self.deleted.remove(name);
            }
            TombstoneChange::Set(tombstone) => {
                self.deleted.insert(name.clone(), tombstone.clone());
            }
        }
    }
}

impl StorePaths {
    fn new(file: &Path) -> Result<Self, StorageError> {
        let name = file
            .file_name()
            .ok_or_else(|| StorageError::NotAFile(file.to_owned()))?
            .to_string_lossy();
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(Self {
            temp: dir.join(format!("{name}.tmp")),
            lock: dir.join(format!("{name}.lock")),
            history: dir.join(format!("{name}.history")),
            file: file.to_owned(),
            dir,
        })
    }

    fn take_lock(&self) -> Result<File, StorageError> {
        let lock = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.lock)
            .map_err(io_error("open lock file", &self.lock))?;
        match lock.try_lock() {
            Ok(()) => Ok(lock),
            Err(fs::TryLockError::WouldBlock) => Err(StorageError::Locked {
                path: self.file.clone(),
                lock: self.lock.clone(),
            }),
            Err(fs::TryLockError::Error(err)) => Err(io_error("lock", &self.lock)(err)),
        }
    }

    /// A temp file survives only a write that was interrupted before its
    /// rename; that write was never acknowledged, so it is dropped.
    fn remove_leftover_temp(&self, temp: &Path) -> Result<(), StorageError> {
        match fs::remove_file(temp) {
            Ok(()) => {
                tracing::warn!(temp = %temp.display(), "removed a temp file left by an interrupted write");
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error("remove leftover temp file", temp)(err)),
        }
    }

    /// Makes the history directory agree with the catalog: revisions the
    /// catalog does not vouch for are dropped, files of unknown names
    /// removed, and a tool without its current revision (a store from before
    /// history) gets it.
    fn reconcile_history(&self, state: &State, purged: &[String]) -> Result<(), StorageError> {
        self.remove_leftover_temp(&self.history_temp())?;
        self.remove_histories(purged);
        let entries = fs::read_dir(&self.history).map_err(io_error("read directory", &self.history))?;
        for entry in entries {
            let entry = entry.map_err(io_error("read directory", &self.history))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file_name.strip_suffix(".json") else {
                continue;
            };
            let known = state
                .tools
                .get(name)
                .map(|t| t.revision)
                .or_else(|| state.deleted.get(name).map(|t| t.revision));
            let Some(known) = known else {
                tracing::warn!(tool = %name, "removed the history of a tool the catalog does not hold");
                let _ = fs::remove_file(entry.path());
                continue;
            };
            let revisions = self.read_history(name)?;
            let vouched: Vec<Revision> = revisions.iter().filter(|r| r.tool.revision <= known).cloned().collect();
            if vouched.len() != revisions.len() {
                tracing::warn!(tool = %name, "dropped history of a write that never finished");
                self.write_history(name, vouched)?;
            }
        }
        for tool in state.tools.values() {
            let mut revisions = self.read_history(&tool.name)?;
            if !revisions.iter().any(|r| r.tool.revision == tool.revision) {
                revisions.push(Revision {
                    kind: RevisionKind::Migrated,
                    actor: MIGRATION_ACTOR.into(),
                    changed_fields: vec![],
                    rolled_back_to: None,
                    tool: (**tool).clone(),
                });
                self.write_history(&tool.name, revisions)?;
            }
        }
        self.sync_dir(&self.history)
    }

    fn history_file(&self, name: &str) -> PathBuf {
        self.history.join(format!("{name}.json"))
    }

    fn history_temp(&self) -> PathBuf {
        self.history.join(".write.tmp")
    }

    /// A name's kept revisions, oldest first; none when it has no file.
    fn read_history(&self, name: &str) -> Result<Vec<Revision>, StorageError> {
        let path = self.history_file(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(err) => return Err(io_error("read", &path)(err)),
        };
        let file: HistoryFile = serde_json::from_slice(&bytes).map_err(|err| StorageError::Corrupt {
            path: path.clone(),
            reason: describe(&err),
        })?;
        Ok(file.revisions)
    }

    fn write_history(&self, name: &str, revisions: Vec<Revision>) -> Result<(), StorageError> {
        let file = HistoryFile {
            name: name.to_owned(),
            revisions,
        };
        let bytes = serde_json::to_vec(&file).map_err(StorageError::Encode)?;
        let temp = self.history_temp();
        write_synced(&temp, &bytes).map_err(|err| {
            let _ = fs::remove_file(&temp);
            io_error("write", &temp)(err)
        })?;
        let path = self.history_file(name);
        fs::rename(&temp, &path).map_err(io_error("replace", &path))
    }

    fn remove_histories(&self, names: &[String]) {
        for name in names {
            if let Err(err) = fs::remove_file(self.history_file(name))
                && err.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(tool = %name, error = %err, "cannot remove the history of a purged tool");
            }
        }
    }

    /// Makes `change` durable: its history first, then the catalog (the
    /// commit point). On failure nothing the catalog vouches for changed.
    fn commit(
        &self,
        state: &State,
        change: &Change,
        ctx: &WriteContext,
        retention: &Retention,
    ) -> Result<Committed, StorageError> {
        let name = &change.tool.name;
        if let Some(revision) = &change.revision {
            let mut revisions = self.read_history(name)?;
            // A write that failed after its history was written left it there.
            revisions.retain(|r| r.tool.revision < revision.tool.revision);
            revisions.push(revision.clone());
            let excess = revisions.len().saturating_sub(retention.revisions);
            revisions.drain(..excess);
            self.write_history(name, revisions)?;
        }
        let mut next = state.clone();
        next.apply(change);
        if let Some(key) = recorded_key(ctx, change, next.version) {
            next.keys.insert(key.key.clone(), key);
        }
        let purged = purge(&mut next, retention, OffsetDateTime::now_utc());
        self.replace_file(&next)?;
        Ok(Committed { state: next, purged })
    }

    /// Writes `state` to the temp file, fsyncs it and renames it over the store.
    fn replace_file(&self, state: &State) -> Result<(), StorageError> {
        let contents = StoreFile {
            format_version: FORMAT_VERSION,
            catalog_version: state.version,
            tools: state.tools.values().map(|tool| &**tool).collect::<Vec<&ToolRecord>>(),
            deleted: state.deleted.values().collect::<Vec<_>>(),
            idempotency_keys: state.keys.values().collect::<Vec<_>>(),
        };
        let bytes = serde_json::to_vec_pretty(&contents).map_err(StorageError::Encode)?;
        write_synced(&self.temp, &bytes).map_err(|err| {
            let _ = fs::remove_file(&self.temp);
            io_error("write", &self.temp)(err)
        })?;
        fs::rename(&self.temp, &self.file).map_err(io_error("replace", &self.file))
    }

    /// Makes renames in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> Result<(), StorageError> {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| StorageError::NotDurable {
                dir: dir.to_owned(),
                source,
            })
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The state in the file and the format it was written in.
fn load(path: &Path) -> Result<(State, u32), StorageError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((State::default(), FORMAT_VERSION)),
        Err(err) => return Err(io_error("read", path)(err)),
    };
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let header: FormatHeader = serde_json::from_slice(&bytes).map_err(|err| corrupt(describe(&err)))?;
    if ![FORMAT_VERSION_WITHOUT_HISTORY, FORMAT_VERSION].contains(&header.format_version) {
        return Err(corrupt(format!(
            "formatVersion {} is not supported (this registry reads formatVersion \
             {FORMAT_VERSION_WITHOUT_HISTORY} and {FORMAT_VERSION})",
            header.format_version
        )));
    }
    let file: StoreFile<ToolRecord, Tombstone, RecordedKey> =
        serde_json::from_slice(&bytes).map_err(|err| corrupt(describe(&err)))?;
    let mut tools = BTreeMap::new();
    for tool in file.tools {
        let name = tool.name.clone();
        if tools.insert(name.clone(), Arc::new(tool)).is_some() {
            return Err(corrupt(format!("it lists the tool {} twice", quoted(&name))));
        }
    }
    let state = State {
        version: file.catalog_version,
        tools,
        deleted: file.deleted.into_iter().map(|t| (t.name.clone(), t)).collect(),
        keys: file.idempotency_keys.into_iter().map(|k| (k.key.clone(), k)).collect(),
    };
    Ok((state, header.format_version))
}

/// Where and how the file is broken, without quoting its contents (they hold code).
fn describe(err: &serde_json::Error) -> String {
    let what = match err.classify() {
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Eof => "the file ends early",
        serde_json::error::Category::Data => "a field is missing or has the wrong type",
        serde_json::error::Category::Io => "a read error",
    };
    format!("{what} at line {} column {}", err.line(), err.column())
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_owned();
    move |source| StorageError::Io { action, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules;
    use crate::store::testing::Writes;
    use dynamic_mcp_proto::v1 as pb;
    use tokio::sync::broadcast::error::TryRecvError;

    fn spec(name: &str) -> pb::ToolSpec {
        pb::ToolSpec {
            name: name.into(),
            title: Some("A title".into()),
            description: "Does a thing".into(),
            image: Some("node:22-alpine".into()),
            timeout_ms: Some(5000),
            dependencies: vec![pb::Dependency {
                name: "lodash".into(),
                version: "^4.17.21".into(),
            }],
            code: "return args;".into(),
            ..Default::default()
        }
    }

    fn store_in(dir: &tempfile::TempDir, max_tools: usize) -> FileStore {
        FileStore::open(&dir.path().join("nested/tools.json"), max_tools, Retention::default()).unwrap()
    }

    #[tokio::test]
    async fn writes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 10);
        store.create(spec("one.tool")).await.unwrap();
        store.create(spec("two.tool")).await.unwrap();
        store.set_enabled("one.tool", false, None).await.unwrap();
        store.delete("two.tool", None).await.unwrap();
        let before = store.catalog(true).await.unwrap();
        drop(store);

        let reopened = store_in(&dir, 10);
        let after = reopened.catalog(true).await.unwrap();
        assert_eq!(after.version, 4);
        assert_eq!(after.version, before.version);
        assert_eq!(after.tools, before.tools);
        assert_eq!(after.tools.len(), 1);
        assert!(!after.tools[0].enabled);
        assert_eq!(after.tools[0].revision, 2);
    }

    #[tokio::test]
    async fn the_file_has_the_documented_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 10);
        store.create(spec("one.tool")).await.unwrap();
        let text = fs::read_to_string(dir.path().join("nested/tools.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["formatVersion"], 2);
        assert_eq!(json["catalogVersion"], 1);
        let tool = &json["tools"][0];
        assert_eq!(tool["name"], "one.tool");
        assert_eq!(tool["timeoutMs"], 5000);
        assert_eq!(tool["dependencies"][0]["version"], "^4.17.21");
        assert!(tool["createdAt"].as_str().unwrap().ends_with('Z'));
        assert!(!dir.path().join("nested/tools.json.tmp").exists());
    }

    #[tokio::test]
    async fn expected_revision_is_compare_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 10);
        store.create(spec("cas.tool")).await.unwrap();
        let patch = || pb::ToolPatch {
            code: Some("return 2;".into()),
            ..Default::default()
        };
        let written = store.update("cas.tool", patch(), Some(1)).await.unwrap();
        assert_eq!(written.tool.revision, 2);
        assert_eq!(written.catalog_version, 2);

        let stale = store.update("cas.tool", patch(), Some(1)).await.unwrap_err();
        assert!(
            matches!(
                stale,
                RegistryError::RevisionConflict {
                    expected: 1,
                    current: 2,
                    ..
                }
            ),
            "{stale:?}"
        );
        let stale = store.delete("cas.tool", Some(1)).await.unwrap_err();
        assert!(matches!(stale, RegistryError::RevisionConflict { .. }), "{stale:?}");
        let stale = store.set_enabled("cas.tool", false, Some(7)).await.unwrap_err();
        assert!(matches!(stale, RegistryError::RevisionConflict { .. }), "{stale:?}");
        assert_eq!(store.get("cas.tool", None).await.unwrap().revision, 2);
        assert_eq!(store.catalog(true).await.unwrap().version, 2);
    }

    #[tokio::test]
    async fn names_are_unique_and_the_count_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 2);
        store.create(spec("a.tool")).await.unwrap();
        let dup = store.create(spec("a.tool")).await.unwrap_err();
        assert!(
            matches!(dup, RegistryError::AlreadyExists { revision: 1, .. }),
            "{dup:?}"
        );
        store.create(spec("b.tool")).await.unwrap();
        let full = store.create(spec("c.tool")).await.unwrap_err();
        assert!(matches!(full, RegistryError::LimitReached { max: 2 }), "{full:?}");
        store.delete("a.tool", None).await.unwrap();
        store.create(spec("c.tool")).await.unwrap();
    }

    #[tokio::test]
    async fn unknown_tools_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 2);
        assert!(matches!(
            store.get("nope.x", None).await,
            Err(RegistryError::NotFound { .. })
        ));
        let err = store.delete("nope.x", None).await.unwrap_err();
        assert!(matches!(err, RegistryError::NotFound { .. }));
    }

    #[tokio::test]
    async fn each_real_change_is_one_event_and_no_change_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 10);
        let mut events = store.subscribe();
        store.create(spec("ev.tool")).await.unwrap();
        store.set_enabled("ev.tool", true, None).await.unwrap();
        store.update("ev.tool", pb::ToolPatch::default(), None).await.unwrap();
        store.set_enabled("ev.tool", false, None).await.unwrap();
        store.delete("ev.tool", None).await.unwrap();

        let mut seen = vec![];
        while let Ok(event) = events.try_recv() {
            seen.push((event.catalog_version, event.kind, event.tool.revision));
        }
        assert_eq!(
            seen,
            [
                (1, ChangeKind::Created, 1),
                (2, ChangeKind::Disabled, 2),
                (3, ChangeKind::Deleted, 2)
            ]
        );
        assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 10);
        store.create(spec("kept.tool")).await.unwrap();
        let mut events = store.subscribe();
        // A directory where the temp file goes makes the next write fail.
        let temp = dir.path().join("nested/tools.json.tmp");
        fs::create_dir(&temp).unwrap();

        let err = store.create(spec("lost.tool")).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::Storage(StorageError::Io { .. })),
            "{err:?}"
        );
        let err = store.delete("kept.tool", None).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::Storage(StorageError::Io { .. })),
            "{err:?}"
        );
        let catalog = store.catalog(true).await.unwrap();
        assert_eq!(catalog.version, 1);
        assert_eq!(catalog.tools.len(), 1);
        assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));

        fs::remove_dir(&temp).unwrap();
        let written = store.create(spec("lost.tool")).await.unwrap();
        assert_eq!(written.catalog_version, 2);
    }

    #[test]
    fn a_corrupt_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools.json");
        for contents in [
            "{not json",
            "",
            r#"{"formatVersion":1,"catalogVersion":1,"tools":[{"name":"x.y"}]}"#,
        ] {
            fs::write(&path, contents).unwrap();
            let err = FileStore::open(&path, 10, Retention::default())
                .err()
                .expect("a corrupt store must be refused");
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err:?}");
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), contents);
        }
    }

    #[test]
    fn a_newer_format_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools.json");
        fs::write(&path, r#"{"formatVersion":3,"catalogVersion":1,"tools":{}}"#).unwrap();
        let err = FileStore::open(&path, 10, Retention::default()).err().unwrap();
        assert!(err.to_string().contains("formatVersion 3 is not supported"), "{err}");
    }

    #[test]
    fn a_duplicate_name_in_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools.json");
        let tool = serde_json::to_value(rules::new_tool(spec("dup.tool"), &record::now()).unwrap()).unwrap();
        let file = serde_json::json!({"formatVersion": 2, "catalogVersion": 2, "tools": [tool, tool]});
        fs::write(&path, file.to_string()).unwrap();
        let err = FileStore::open(&path, 10, Retention::default()).err().unwrap();
        assert!(err.to_string().contains("lists the tool 'dup.tool' twice"), "{err}");
    }

    #[test]
    fn corrupt_file_messages_do_not_quote_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools.json");
        let file = r#"{"formatVersion":1,"catalogVersion":"SECRET_CODE","tools":[]}"#;
        fs::write(&path, file).unwrap();
        let err = FileStore::open(&path, 10, Retention::default())
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("SECRET_CODE"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_leftover_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("tools.json.tmp");
        fs::write(&temp, "{half a wri").unwrap();
        let _store = FileStore::open(&dir.path().join("tools.json"), 10, Retention::default()).unwrap();
        assert!(!temp.exists());
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools.json");
        let first = FileStore::open(&path, 10, Retention::default()).unwrap();
        let err = FileStore::open(&path, 10, Retention::default()).err().unwrap();
        assert!(matches!(err, StorageError::Locked { .. }), "{err:?}");
        drop(first);
        FileStore::open(&path, 10, Retention::default()).unwrap();
    }

    /// A store written by the seed's registry (format 1, no history).
    const FORMAT_1: &str = include_str!("../../tests/fixtures/tools-format-1.json");

    #[tokio::test]
    async fn a_format_1_store_opens_and_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools.json");
        fs::write(&path, FORMAT_1).unwrap();
        let store = FileStore::open(&path, 10, Retention::default()).unwrap();
        let catalog = store.catalog(true).await.unwrap();
        assert_eq!(catalog.version, 7);
        let names: Vec<_> = catalog
            .tools
            .iter()
            .map(|t| (t.name.as_str(), t.revision, t.enabled))
            .collect();
        assert_eq!(names, [("old.lower", 2, false), ("old.upper", 5, true)]);
        assert_eq!(catalog.tools[1].dependencies[0].name, "lodash");
        let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["formatVersion"], 2, "the file is rewritten in the current format");
        let history = store.history("old.upper", None).await.unwrap();
        assert_eq!(history.revisions.len(), 1);
        assert_eq!(history.revisions[0].kind, RevisionKind::Migrated);
        assert_eq!(history.revisions[0].tool.revision, 5);
        // The migrated store keeps working: a write adds the next revision.
        let patch = pb::ToolPatch {
            code: Some("return 6;".into()),
            ..Default::default()
        };
        store.update("old.upper", patch, Some(5)).await.unwrap();
        let old = store.get("old.upper", Some(5)).await.unwrap();
        assert!(matches!(&old.code, record::ToolCode::Included(c) if c.contains("toUpperCase")));
        drop(store);
        let reopened = FileStore::open(&path, 10, Retention::default()).unwrap();
        assert_eq!(reopened.history("old.upper", None).await.unwrap().revisions.len(), 2);
    }

    #[tokio::test]
    async fn history_the_catalog_does_not_vouch_for_is_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 10);
        store.create(spec("kept.tool")).await.unwrap();
        drop(store);
        // As if a write crashed between its history file and the catalog.
        let history = dir.path().join("nested/tools.json.history");
        let file = history.join("kept.tool.json");
        let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        let mut ghost = json["revisions"][0].clone();
        ghost["tool"]["revision"] = 2.into();
        json["revisions"].as_array_mut().unwrap().push(ghost);
        fs::write(&file, json.to_string()).unwrap();
        fs::write(
            history.join("never.created.json"),
            r#"{"name":"never.created","revisions":[]}"#,
        )
        .unwrap();

        let store = store_in(&dir, 10);
        let kept = store.history("kept.tool", None).await.unwrap();
        assert_eq!(kept.revisions.iter().map(|r| r.tool.revision).collect::<Vec<_>>(), [1]);
        assert!(!history.join("never.created.json").exists());
        let written = store.create(spec("other.tool")).await.unwrap();
        assert_eq!(written.catalog_version, 2);
    }

    #[tokio::test]
    async fn a_recreated_name_continues_its_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 10);
        store.create(spec("again.tool")).await.unwrap();
        store.set_enabled("again.tool", false, None).await.unwrap();
        store.delete("again.tool", None).await.unwrap();
        let deleted = store.history("again.tool", None).await.unwrap();
        assert_eq!(deleted.deleted.as_ref().map(|t| t.revision), Some(2));
        let recreated = store.create(spec("again.tool")).await.unwrap();
        assert_eq!(recreated.tool.revision, 3);
        let history = store.history("again.tool", None).await.unwrap();
        assert!(history.deleted.is_none());
        assert_eq!(
            history.revisions.iter().map(|r| r.tool.revision).collect::<Vec<_>>(),
            [3, 2, 1]
        );
    }
}
