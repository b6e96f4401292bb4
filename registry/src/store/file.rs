//! The file backend: one JSON file with exactly one writer, this process.
//!
//! A write builds the new catalog, writes it whole to a temp file in the same
//! directory, fsyncs it, renames it over the store and fsyncs the directory;
//! only then do readers see the change and the caller get an answer. So a
//! kill at any moment leaves the old or the new file, never a mix, and an
//! acknowledged write is on disk.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use dynamic_mcp_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, broadcast};

use super::{Catalog, ToolStore, Written, check_revision};
use crate::error::{RegistryError, StorageError};
use crate::feed::{ChangeEvent, ChangeKind, FEED_CAPACITY};
use crate::record::{self, ToolRecord};
use crate::rules;

const FORMAT_VERSION: u32 = 1;

/// The file's layout: `{"formatVersion":1,"catalogVersion":N,"tools":[...]}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoreFile<T> {
    format_version: u32,
    catalog_version: u64,
    tools: Vec<T>,
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
}

#[derive(Default)]
struct State {
    version: u64,
    tools: BTreeMap<String, Arc<ToolRecord>>,
}

/// What a write decided after looking at the current state.
enum Outcome {
    Unchanged(Arc<ToolRecord>),
    Changed(ChangeKind, Arc<ToolRecord>),
}

impl FileStore {
    /// Opens (or starts) the store at `path`. A missing file is an empty store;
    /// a file that does not parse is refused and left untouched.
    pub fn open(path: &Path, max_tools: usize) -> Result<Self, StorageError> {
        let paths = StorePaths::new(path)?;
        fs::create_dir_all(&paths.dir).map_err(io_error("create directory", &paths.dir))?;
        let lock = paths.take_lock()?;
        paths.remove_leftover_temp()?;
        let state = load(&paths.file)?;
        tracing::info!(
            store = %paths.file.display(),
            tools = state.tools.len(),
            catalog_version = state.version,
            "tool store opened"
        );
        Ok(Self {
            paths: Arc::new(paths),
            max_tools,
            state: Arc::new(Mutex::new(state)),
            changes: broadcast::channel(FEED_CAPACITY).0,
            _lock: lock,
        })
    }

    /// Runs `decide` against the current state and makes its outcome durable.
    async fn write<F>(&self, decide: F) -> Result<Written, RegistryError>
    where
        F: FnOnce(&State) -> Result<Outcome, RegistryError> + Send + 'static,
    {
        let mut state = Arc::clone(&self.state).lock_owned().await;
        let paths = Arc::clone(&self.paths);
        let changes = self.changes.clone();
        // The whole write runs on a blocking thread that holds the lock to the
        // end, even if the caller goes away, so memory always matches the file.
        let write = tokio::task::spawn_blocking(move || {
            let (kind, tool) = match decide(&state)? {
                Outcome::Unchanged(tool) => {
                    return Ok(Written {
                        tool,
                        catalog_version: state.version,
                    });
                }
                Outcome::Changed(kind, tool) => (kind, tool),
            };
            let previous = state.apply(kind, &tool);
            if let Err(err) = paths.replace_file(&state) {
                state.undo(&tool.name, previous);
                return Err(err.into());
            }
            // From here the file holds the change, so memory keeps it too.
            let synced = paths.sync_dir();
            // No receivers (no watchers) is fine.
            let _ = changes.send(ChangeEvent {
                catalog_version: state.version,
                kind,
                tool: Arc::clone(&tool),
            });
            synced?;
            Ok(Written {
                tool,
                catalog_version: state.version,
            })
        });
        write.await.map_err(|err| StorageError::WriterFailed(err.to_string()))?
    }
}

#[async_trait]
impl ToolStore for FileStore {
    /// The records are in memory, so they always carry their code.
    async fn catalog(&self, _include_code: bool) -> Result<Catalog, RegistryError> {
        let state = self.state.lock().await;
        Ok(Catalog {
            tools: state.tools.values().cloned().collect(),
            version: state.version,
        })
    }

    async fn get(&self, name: &str) -> Result<Arc<ToolRecord>, RegistryError> {
        self.state.lock().await.get(name).cloned()
    }

    async fn create(&self, spec: pb::ToolSpec) -> Result<Written, RegistryError> {
        let max_tools = self.max_tools;
        self.write(move |state| {
            let tool = rules::new_tool(spec, &record::now())?;
            if let Some(existing) = state.tools.get(&tool.name) {
                return Err(RegistryError::AlreadyExists {
                    name: tool.name,
                    revision: existing.revision,
                });
            }
            if state.tools.len() >= max_tools {
                return Err(RegistryError::LimitReached { max: max_tools });
            }
            Ok(Outcome::Changed(ChangeKind::Created, Arc::new(tool)))
        })
        .await
    }

    async fn update(
        &self,
        name: String,
        patch: pb::ToolPatch,
        expected_revision: Option<u64>,
    ) -> Result<Written, RegistryError> {
        self.write(move |state| {
            let current = state.get(&name)?;
            check_revision(current, expected_revision)?;
            Ok(match rules::apply_patch(current, patch, &record::now())? {
                Some(next) => Outcome::Changed(ChangeKind::Updated, Arc::new(next)),
                None => Outcome::Unchanged(Arc::clone(current)),
            })
        })
        .await
    }

    async fn delete(&self, name: String, expected_revision: Option<u64>) -> Result<Written, RegistryError> {
        self.write(move |state| {
            let current = state.get(&name)?;
            check_revision(current, expected_revision)?;
            Ok(Outcome::Changed(ChangeKind::Deleted, Arc::clone(current)))
        })
        .await
    }

    async fn set_enabled(
        &self,
        name: String,
        enabled: bool,
        expected_revision: Option<u64>,
    ) -> Result<Written, RegistryError> {
        self.write(move |state| {
            let current = state.get(&name)?;
            check_revision(current, expected_revision)?;
            let kind = if enabled {
                ChangeKind::Enabled
            } else {
                ChangeKind::Disabled
            };
            Ok(match rules::set_enabled(current, enabled, &record::now()) {
                Some(next) => Outcome::Changed(kind, Arc::new(next)),
                None => Outcome::Unchanged(Arc::clone(current)),
            })
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    /// A failing disk shows up on the writes themselves, as UNAVAILABLE.
    async fn check_ready(&self) -> Result<(), RegistryError> {
        Ok(())
    }
}

impl State {
    fn get(&self, name: &str) -> Result<&Arc<ToolRecord>, RegistryError> {
        self.tools
            .get(name)
            .ok_or_else(|| RegistryError::NotFound { name: name.to_owned() })
    }

    /// Applies one change and returns what it replaced, for `undo`.
    fn apply(&mut self, kind: ChangeKind, tool: &Arc<ToolRecord>) -> Option<Arc<ToolRecord>> {
        self.version += 1;
        match kind {
            ChangeKind::Deleted => self.tools.remove(&tool.name),
            _ => self.tools.insert(tool.name.clone(), Arc::clone(tool)),
        }
    }

    fn undo(&mut self, name: &str, previous: Option<Arc<ToolRecord>>) {
        self.version -= 1;
        match previous {
            Some(previous) => self.tools.insert(name.to_owned(), previous),
            None => self.tools.remove(name),
        };
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
    fn remove_leftover_temp(&self) -> Result<(), StorageError> {
        match fs::remove_file(&self.temp) {
            Ok(()) => {
                tracing::warn!(temp = %self.temp.display(), "removed a temp file left by an interrupted write");
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error("remove leftover temp file", &self.temp)(err)),
        }
    }

    /// Writes `state` to the temp file, fsyncs it and renames it over the store.
    fn replace_file(&self, state: &State) -> Result<(), StorageError> {
        let contents = StoreFile {
            format_version: FORMAT_VERSION,
            catalog_version: state.version,
            tools: state.tools.values().map(|tool| &**tool).collect::<Vec<&ToolRecord>>(),
        };
        let bytes = serde_json::to_vec_pretty(&contents).map_err(StorageError::Encode)?;
        write_synced(&self.temp, &bytes).map_err(|err| {
            let _ = fs::remove_file(&self.temp);
            io_error("write", &self.temp)(err)
        })?;
        fs::rename(&self.temp, &self.file).map_err(io_error("replace", &self.file))
    }

    /// Makes the rename itself durable.
    fn sync_dir(&self) -> Result<(), StorageError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| StorageError::NotDurable {
                dir: self.dir.clone(),
                source,
            })
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn load(path: &Path) -> Result<State, StorageError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
        Err(err) => return Err(io_error("read", path)(err)),
    };
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let header: FormatHeader = serde_json::from_slice(&bytes).map_err(|err| corrupt(describe(&err)))?;
    if header.format_version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "formatVersion {} is not supported (this registry reads formatVersion {FORMAT_VERSION})",
            header.format_version
        )));
    }
    let file: StoreFile<ToolRecord> = serde_json::from_slice(&bytes).map_err(|err| corrupt(describe(&err)))?;
    let mut tools = BTreeMap::new();
    for tool in file.tools {
        let name = tool.name.clone();
        if tools.insert(name.clone(), Arc::new(tool)).is_some() {
            return Err(corrupt(format!(
                "it lists the tool {} twice",
                crate::error::quoted(&name)
            )));
        }
    }
    Ok(State {
        version: file.catalog_version,
        tools,
    })
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
            enabled: None,
        }
    }

    fn store_in(dir: &tempfile::TempDir, max_tools: usize) -> FileStore {
        FileStore::open(&dir.path().join("nested/tools.json"), max_tools).unwrap()
    }

    #[tokio::test]
    async fn writes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 10);
        store.create(spec("one.tool")).await.unwrap();
        store.create(spec("two.tool")).await.unwrap();
        store.set_enabled("one.tool".into(), false, None).await.unwrap();
        store.delete("two.tool".into(), None).await.unwrap();
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
        assert_eq!(json["formatVersion"], 1);
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
        let written = store.update("cas.tool".into(), patch(), Some(1)).await.unwrap();
        assert_eq!(written.tool.revision, 2);
        assert_eq!(written.catalog_version, 2);

        let stale = store.update("cas.tool".into(), patch(), Some(1)).await.unwrap_err();
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
        let stale = store.delete("cas.tool".into(), Some(1)).await.unwrap_err();
        assert!(matches!(stale, RegistryError::RevisionConflict { .. }), "{stale:?}");
        let stale = store.set_enabled("cas.tool".into(), false, Some(7)).await.unwrap_err();
        assert!(matches!(stale, RegistryError::RevisionConflict { .. }), "{stale:?}");
        assert_eq!(store.get("cas.tool").await.unwrap().revision, 2);
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
        store.delete("a.tool".into(), None).await.unwrap();
        store.create(spec("c.tool")).await.unwrap();
    }

    #[tokio::test]
    async fn unknown_tools_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 2);
        assert!(matches!(store.get("nope.x").await, Err(RegistryError::NotFound { .. })));
        let err = store.delete("nope.x".into(), None).await.unwrap_err();
        assert!(matches!(err, RegistryError::NotFound { .. }));
    }

    #[tokio::test]
    async fn each_real_change_is_one_event_and_no_change_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir, 10);
        let mut events = store.subscribe();
        store.create(spec("ev.tool")).await.unwrap();
        store.set_enabled("ev.tool".into(), true, None).await.unwrap();
        store
            .update("ev.tool".into(), pb::ToolPatch::default(), None)
            .await
            .unwrap();
        store.set_enabled("ev.tool".into(), false, None).await.unwrap();
        store.delete("ev.tool".into(), None).await.unwrap();

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
        let err = store.delete("kept.tool".into(), None).await.unwrap_err();
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
            let err = FileStore::open(&path, 10)
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
        fs::write(&path, r#"{"formatVersion":2,"catalogVersion":1,"tools":{}}"#).unwrap();
        let err = FileStore::open(&path, 10).err().unwrap();
        assert!(err.to_string().contains("formatVersion 2 is not supported"), "{err}");
    }

    #[test]
    fn a_duplicate_name_in_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools.json");
        let tool = serde_json::to_value(rules::new_tool(spec("dup.tool"), &record::now()).unwrap()).unwrap();
        let file = serde_json::json!({"formatVersion": 1, "catalogVersion": 2, "tools": [tool, tool]});
        fs::write(&path, file.to_string()).unwrap();
        let err = FileStore::open(&path, 10).err().unwrap();
        assert!(err.to_string().contains("lists the tool 'dup.tool' twice"), "{err}");
    }

    #[test]
    fn corrupt_file_messages_do_not_quote_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools.json");
        let file = r#"{"formatVersion":1,"catalogVersion":"SECRET_CODE","tools":[]}"#;
        fs::write(&path, file).unwrap();
        let err = FileStore::open(&path, 10).err().unwrap().to_string();
        assert!(!err.contains("SECRET_CODE"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_leftover_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("tools.json.tmp");
        fs::write(&temp, "{half a wri").unwrap();
        let _store = FileStore::open(&dir.path().join("tools.json"), 10).unwrap();
        assert!(!temp.exists());
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools.json");
        let first = FileStore::open(&path, 10).unwrap();
        let err = FileStore::open(&path, 10).err().unwrap();
        assert!(matches!(err, StorageError::Locked { .. }), "{err:?}");
        drop(first);
        FileStore::open(&path, 10).unwrap();
    }
}
