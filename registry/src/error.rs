//! The registry's errors, and the one place they become gRPC statuses.
//! A storage failure is logged in full; what the caller reads names no file
//! or directory of this host.

use std::io;
use std::path::PathBuf;

use tonic::Status;

use crate::quoting::quoted;
use crate::rules::Violation;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Invalid(#[from] Violation),
    #[error("a tool named {} already exists (revision {revision}); use dynamic.tool.update to change it", quoted(.name))]
    AlreadyExists { name: String, revision: u64 },
    #[error("no dynamic tool named {}; dynamic.tool.list shows the tools that exist", quoted(.name))]
    NotFound { name: String },
    #[error(
        "revision conflict on {}: expectedRevision is {expected} but the current revision is {current}; \
         fetch it with dynamic.tool.get and retry",
        quoted(.name)
    )]
    RevisionConflict { name: String, expected: u64, current: u64 },
    #[error(
        "revision {revision} of {} is not kept{}; dynamic.tool.history lists the revisions that are \
         (MCP_DYNAMIC_HISTORY_LIMIT keeps the newest of each tool)",
        quoted(.name),
        .current.map(|c| format!(" (its current revision is {c})")).unwrap_or_default()
    )]
    RevisionNotKept {
        name: String,
        revision: u64,
        current: Option<u64>,
    },
    #[error(
        "{} exists (revision {revision}), so there is nothing to restore; use dynamic.tool.rollback to return to \
         an earlier revision",
        quoted(.name)
    )]
    NotDeleted { name: String, revision: u64 },
    #[error(
        "no deleted tool named {} is kept: it never existed, or its history was dropped after \
         MCP_DYNAMIC_DELETED_RETENTION_SECONDS",
        quoted(.name)
    )]
    NothingToRestore { name: String },
    #[error(
        "tool limit reached: this registry holds at most {max} dynamic tools (MCP_DYNAMIC_MAX_TOOLS); delete one first"
    )]
    LimitReached { max: usize },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Failures of the storage backend itself, never of the caller's input.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the change was saved but syncing {} failed ({source}); it may not survive a power failure",
        .dir.display()
    )]
    NotDurable { dir: PathBuf, source: io::Error },
    #[error("the tool store {} is unreadable: {reason}. It was left untouched: fix or move it away, then restart", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the tool store {} is in use by another dynamic-mcp-registry (lock {} is held); run one registry per store",
        .path.display(), .lock.display()
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("the tool store path {} does not name a file", .0.display())]
    NotAFile(PathBuf),
    #[error("cannot encode the tool store: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("the store writer stopped unexpectedly: {0}")]
    WriterFailed(String),
    /// The database cannot be reached right now; a later retry may succeed.
    /// A write that failed this way may or may not have been committed: a
    /// retry with expectedRevision (or a create, which refuses duplicates) is safe.
    #[error("the tool database is unavailable: {0}; retry")]
    DatabaseUnavailable(#[source] sqlx::Error),
    #[error("the tool database failed: {0}")]
    Database(#[source] sqlx::Error),
}

impl StorageError {
    /// The failure as a caller may read it: what went wrong, not where.
    fn public_message(&self) -> String {
        match self {
            Self::Io { action, source, .. } => format!("cannot {action} the tool store's file: {source}"),
            Self::NotDurable { source, .. } => format!(
                "the change was saved but syncing the tool store's directory failed ({source}); it may not \
                 survive a power failure"
            ),
            Self::Corrupt { reason, .. } => format!("the tool store is unreadable: {reason}"),
            Self::Locked { .. } => "the tool store is in use by another dynamic-mcp-registry".to_owned(),
            Self::NotAFile(_) => "the tool store's path does not name a file".to_owned(),
            Self::Encode(_) | Self::WriterFailed(_) | Self::DatabaseUnavailable(_) | Self::Database(_) => {
                self.to_string()
            }
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            Self::DatabaseUnavailable(err)
        } else {
            Self::Database(err)
        }
    }
}

impl From<sqlx::Error> for RegistryError {
    fn from(err: sqlx::Error) -> Self {
        Self::Storage(err.into())
    }
}

/// Whether a database error means "not reachable now" rather than "this
/// request is wrong": lost or refused connections, a server shutting down or
/// starting up, no free connection in time.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01..03: admin/crash shutdown,
            // cannot connect now; 53300: too many connections; 55P03: lock timeout.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300" | "55P03")
        }),
        sqlx::Error::Migrate(migrate) => match &**migrate {
            sqlx::migrate::MigrateError::Execute(inner) | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => {
                is_unavailable(inner)
            }
            _ => false,
        },
        _ => false,
    }
}

impl From<RegistryError> for Status {
    fn from(err: RegistryError) -> Self {
        let message = err.to_string();
        match err {
            RegistryError::Invalid(_) => Status::invalid_argument(message),
            RegistryError::AlreadyExists { .. } => Status::already_exists(message),
            RegistryError::NotFound { .. }
            | RegistryError::RevisionNotKept { .. }
            | RegistryError::NothingToRestore { .. } => Status::not_found(message),
            RegistryError::NotDeleted { .. } => Status::already_exists(message),
            RegistryError::RevisionConflict { .. } => Status::aborted(message),
            RegistryError::LimitReached { .. } => Status::resource_exhausted(message),
            RegistryError::Storage(storage) => {
                tracing::error!(error = %storage, "tool store failure");
                let message = storage.public_message();
                match storage {
                    StorageError::Io { .. } => {
                        Status::unavailable(format!("the tool store is unavailable, nothing was changed: {message}"))
                    }
                    StorageError::DatabaseUnavailable(_) => Status::unavailable(message),
                    _ => Status::internal(message),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_error_gets_its_grpc_code_and_message() {
        let status = Status::from(RegistryError::RevisionConflict {
            name: "x.y".into(),
            expected: 1,
            current: 2,
        });
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(
            status.message(),
            "revision conflict on 'x.y': expectedRevision is 1 but the current revision is 2; \
             fetch it with dynamic.tool.get and retry"
        );
        let status = Status::from(RegistryError::AlreadyExists {
            name: "x.y".into(),
            revision: 3,
        });
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(
            status.message(),
            "a tool named 'x.y' already exists (revision 3); use dynamic.tool.update to change it"
        );
        let status = Status::from(RegistryError::NotFound { name: "x.y".into() });
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "no dynamic tool named 'x.y'; dynamic.tool.list shows the tools that exist"
        );
        let status = Status::from(RegistryError::LimitReached { max: 3 });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status
                .message()
                .starts_with("tool limit reached: this registry holds at most 3 dynamic tools")
        );
        let status = Status::from(RegistryError::Invalid(Violation("description must be 1..4000".into())));
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = Status::from(RegistryError::Storage(StorageError::Io {
            action: "write",
            path: "/x/tools.json.tmp".into(),
            source: io::Error::other("disk full"),
        }));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "the tool store is unavailable, nothing was changed: cannot write the tool store's file: disk full"
        );
        let status = Status::from(RegistryError::Storage(StorageError::Locked {
            path: "/srv/tools.json".into(),
            lock: "/srv/tools.json.lock".into(),
        }));
        assert!(!status.message().contains("/srv"), "{}", status.message());
        let status = Status::from(RegistryError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().starts_with("the tool database is unavailable: ") && status.message().ends_with("; retry"),
            "{}",
            status.message()
        );
        let status = Status::from(RegistryError::from(sqlx::Error::RowNotFound));
        assert_eq!(status.code(), Code::Internal);
    }
}
