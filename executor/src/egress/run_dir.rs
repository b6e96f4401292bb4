//! The egress directory of one container: made empty before the container
//! starts (so a warm container can have one), mounted read-only into it,
//! filled by the run's grant when the container is handed out, and removed
//! when it is dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where this executor makes its containers' egress directories.
#[derive(Debug, Clone)]
pub struct RunDirs {
    /// As the executor sees it, and as the Docker host does.
    dir: PathBuf,
    host_dir: PathBuf,
}

/// One container's egress directory.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    host_path: String,
}

impl RunDirs {
    pub(super) fn new(dir: PathBuf, host_dir: PathBuf) -> Self {
        Self { dir, host_dir }
    }

    /// A fresh, empty directory with an unguessable name.
    pub fn make(&self) -> std::io::Result<RunDir> {
        let name = uuid::Uuid::new_v4().simple().to_string();
        let path = self.dir.join(&name);
        std::fs::create_dir(&path)?;
        // Readable by the sandbox user; on the host it hides in an unlistable parent.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(RunDir {
            host_path: self.host_dir.join(name).display().to_string(),
            path,
        })
    }
}

impl RunDir {
    /// The directory to mount, as the Docker host sees it.
    pub fn mount_source(&self) -> &str {
        &self.host_path
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove an egress directory");
        }
    }
}
