//! Directories the executor makes for one container each and bind-mounts
//! into it, each holding a Unix socket the executor listens on: a run's
//! egress proxy (`egress/grant.rs`), a per-tool container's channel
//! (`per_tool/channel.rs`). A container has no network interface but `lo`,
//! so such a socket is its only way to the executor, and another
//! container's is not in it. One parent per executor id, made fresh at
//! start and unlistable; each directory in it has an unguessable name and
//! is removed when its handle is dropped.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::net::UnixListener;

/// Unix socket paths are limited to 108 bytes.
const MAX_SOCKET_PATH: usize = 107;

/// The socket a directory holds, by who listens on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// A run's egress proxy (`egress/grant.rs`).
    EgressProxy,
    /// A per-tool container's channel (`per_tool/channel.rs`).
    Channel,
}

impl Socket {
    const ALL: [Self; 2] = [Self::EgressProxy, Self::Channel];

    pub const fn file_name(self) -> &'static str {
        match self {
            Self::EgressProxy => "proxy.sock",
            Self::Channel => "channel.sock",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the socket directory {path} (MCP_SANDBOX_EGRESS_SOCKET_DIR) cannot be used: {reason}")]
pub struct SocketDirError {
    path: String,
    reason: String,
}

/// Where this executor makes its containers' socket directories.
#[derive(Debug, Clone)]
pub struct SocketDirs {
    /// As the executor sees it, and as the Docker host does.
    dir: PathBuf,
    host_dir: PathBuf,
}

/// One container's socket directory.
#[derive(Debug)]
pub struct SocketDir {
    path: PathBuf,
    host_path: String,
    /// The one user it was given to, if any.
    owner: Option<(u32, u32)>,
}

impl SocketDirs {
    /// This executor's directory in `parent` (seen as `host_parent` by the
    /// Docker engine, if elsewhere), emptied of an earlier run's leftovers.
    pub fn prepare(parent: &Path, host_parent: Option<&Path>, executor_id: &str) -> Result<Self, SocketDirError> {
        // One directory per executor id, so executors sharing a host never meet.
        let name = format!("{:x}", Sha256::digest(executor_id.as_bytes()));
        let name = &name[..16];
        let dir = parent.join(name);
        prepare_dir(parent, &dir)?;
        Ok(Self {
            host_dir: host_parent.unwrap_or(parent).join(name),
            dir,
        })
    }

    /// A fresh, empty directory with a random name, in an unlistable parent.
    /// With `owner`, its sockets are for that user alone (where the executor
    /// may give files away); the directory itself stays the executor's and
    /// unlistable, so nobody else can add, rename or replace what is in it.
    pub fn make(&self, owner: Option<(u32, u32)>) -> std::io::Result<SocketDir> {
        let name = uuid::Uuid::new_v4().simple().to_string();
        let path = self.dir.join(&name);
        std::fs::create_dir(&path)?;
        let dir = SocketDir {
            host_path: self.host_dir.join(name).display().to_string(),
            path,
            owner,
        };
        let mode = if owner.is_some() { 0o711 } else { 0o755 };
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(mode))?;
        Ok(dir)
    }

    /// Removes this executor's directory (at shutdown).
    pub fn close(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the socket directory");
        }
    }
}

impl SocketDir {
    /// The directory to mount, as the Docker host sees it.
    pub fn mount_source(&self) -> &str {
        &self.host_path
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Listens on `socket` in it: connectable by the directory's owner user
    /// alone where the executor may give the socket to it, else by anyone
    /// who knows the directory's name.
    pub fn listen(&self, socket: Socket) -> std::io::Result<UnixListener> {
        let socket = self.path.join(socket.file_name());
        let listener = UnixListener::bind(&socket)?;
        let private = match self.owner {
            Some((uid, gid)) => give_away(&socket, uid, gid)?,
            None => false,
        };
        let mode = if private { 0o600 } else { 0o666 };
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode))?;
        Ok(listener)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove a socket directory");
        }
    }
}

/// Chowns `path` to `uid:gid`; false when this executor may not (it runs
/// without CAP_CHOWN, as in the compose deployment).
fn give_away(path: &Path, uid: u32, gid: u32) -> std::io::Result<bool> {
    match std::os::unix::fs::chown(path, Some(uid), Some(gid)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(false),
        Err(e) => Err(e),
    }
}

/// The shared parent (created if missing, never a symlink, owned by us or
/// root) and this executor's own directory in it, emptied of leftovers.
fn prepare_dir(parent: &Path, dir: &Path) -> Result<(), SocketDirError> {
    let fail = |reason: String| SocketDirError {
        path: parent.display().to_string(),
        reason,
    };
    if !parent.is_absolute() {
        return Err(fail("give an absolute path".into()));
    }
    // The longest socket path: <dir>/<32 hex>/<longest name>.
    let longest_name = Socket::ALL.iter().map(|s| s.file_name().len()).max().unwrap_or(0);
    let longest = dir.as_os_str().len() + 1 + 32 + 1 + longest_name;
    if longest > MAX_SOCKET_PATH {
        return Err(fail(format!(
            "socket paths under it would be {longest} bytes long, over the {MAX_SOCKET_PATH} Unix allows; use a shorter path"
        )));
    }
    if !usable_parent(parent, &fail)? {
        if let Some(ancestors) = parent.parent() {
            std::fs::create_dir_all(ancestors).map_err(|e| fail(e.to_string()))?;
        }
        // Not create_dir_all: a link planted meanwhile fails it instead of
        // being followed. Made 0o711 at once, so an executor that finds it
        // meanwhile never sees it writable by others; set again because the
        // umask may have taken bits others need to reach their directories.
        match std::fs::DirBuilder::new().mode(0o711).create(parent) {
            Ok(()) => std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| fail(e.to_string()))?,
            // Another executor on this host made it first: check theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !usable_parent(parent, &fail)? {
                    return Err(fail("it was removed while being made".into()));
                }
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::info!(dir = %dir.display(), "removed socket directories left over from an earlier run"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    std::fs::create_dir(dir).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).map_err(|e| fail(e.to_string()))
}

/// Whether `parent` is there and fit to hold socket directories; an error
/// says why it is not fit, `false` that it is missing.
fn usable_parent(parent: &Path, fail: &impl Fn(String) -> SocketDirError) -> Result<bool, SocketDirError> {
    match std::fs::symlink_metadata(parent) {
        Ok(meta) if meta.file_type().is_symlink() => Err(fail("it is a symbolic link".into())),
        Ok(meta) if !meta.is_dir() => Err(fail("it is not a directory".into())),
        Ok(meta) if meta.uid() != nix::unistd::geteuid().as_raw() && meta.uid() != 0 => {
            Err(fail(format!("it belongs to uid {}, neither us nor root", meta.uid())))
        }
        Ok(meta) if meta.mode() & 0o022 != 0 => Err(fail(
            "others may write to it; give a directory only its owner can write".into(),
        )),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> PathBuf {
        std::env::temp_dir().join(format!("dmcp-sd-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
    }

    #[test]
    fn a_parent_must_be_absolute_and_short_enough_for_socket_paths() {
        assert!(SocketDirs::prepare(Path::new("relative"), None, "x").is_err());
        let long = Path::new("/tmp").join("d".repeat(60));
        let refused = SocketDirs::prepare(&long, None, "x").unwrap_err().to_string();
        assert!(refused.contains("over the 107 Unix allows"), "{refused}");
    }

    #[test]
    fn a_parent_others_may_write_or_a_link_is_refused() {
        let open = parent();
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = SocketDirs::prepare(&open, None, "x").unwrap_err().to_string();
        assert!(refused.contains("others may write to it"), "{refused}");
        let link = parent();
        std::os::unix::fs::symlink(&open, &link).unwrap();
        let refused = SocketDirs::prepare(&link, None, "x").unwrap_err().to_string();
        assert!(refused.contains("symbolic link"), "{refused}");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir(&open).unwrap();
    }

    #[test]
    fn executors_starting_together_share_a_parent_that_none_had_made() {
        for _ in 0..20 {
            let parent = parent();
            let prepared: Vec<_> = std::thread::scope(|scope| {
                let starts: Vec<_> = (0..8)
                    .map(|n| {
                        let parent = &parent;
                        scope.spawn(move || SocketDirs::prepare(parent, None, &format!("exec-{n}")))
                    })
                    .collect();
                starts.into_iter().map(|start| start.join().unwrap()).collect()
            });
            for dirs in &prepared {
                assert!(dirs.as_ref().is_ok_and(|d| d.dir.is_dir()), "{dirs:?}");
            }
            std::fs::remove_dir_all(&parent).unwrap();
        }
    }

    #[tokio::test]
    async fn each_directory_is_fresh_listens_and_goes_with_its_handle() {
        let parent = parent();
        let dirs = SocketDirs::prepare(&parent, Some(Path::new("/host/sockets")), "exec-1").unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let shared = dirs.make(None).unwrap();
        let other = dirs.make(None).unwrap();
        assert_ne!(shared.path(), other.path());
        assert!(
            shared.mount_source().starts_with("/host/sockets/"),
            "{}",
            shared.mount_source()
        );
        assert_eq!(shared.owner, None);
        assert_eq!(mode(shared.path()), 0o755);
        let _listener = shared.listen(Socket::EgressProxy).unwrap();
        assert_eq!(mode(&shared.path().join("proxy.sock")), 0o666);

        let private = dirs.make(Some((65534, 65534))).unwrap();
        // Only an executor with CAP_CHOWN (root, as in these tests) gives it away.
        if nix::unistd::geteuid().is_root() {
            assert_eq!(private.owner, Some((65534, 65534)));
            // The directory stays the executor's: only the socket is given away.
            let dir = std::fs::metadata(private.path()).unwrap();
            assert_eq!((dir.uid(), dir.permissions().mode() & 0o777), (0, 0o711));
            let _listener = private.listen(Socket::Channel).unwrap();
            let socket = std::fs::metadata(private.path().join("channel.sock")).unwrap();
            assert_eq!(
                (socket.uid(), socket.gid(), socket.permissions().mode() & 0o777),
                (65534, 65534, 0o600)
            );
        }
        let path = shared.path().to_owned();
        drop(shared);
        assert!(!path.exists(), "removed with its handle");
        assert!(other.path().exists());

        // A restart with the same id starts from an empty directory.
        let leftover = other.path().to_owned();
        std::mem::forget(other);
        let again = SocketDirs::prepare(&parent, None, "exec-1").unwrap();
        assert!(!leftover.exists(), "leftovers of an earlier run are removed");
        again.close();
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
