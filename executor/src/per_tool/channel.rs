//! A per-tool container's channel: one Unix socket connection between the
//! executor and the container's supervisor, without dockerd or the
//! containerd shim in the path. The executor listens on `channel.sock` in
//! a socket directory of the container's own (`socket_dir.rs`), given to
//! the sandbox user and mounted read-only at `CHANNEL_DIR`; the supervisor
//! connects once it has dropped to that user, before any of the tool's
//! code exists. The first connection from that user is the channel: the
//! executor then stops listening and removes the socket, so nothing in the
//! container can open a second one.

use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

use crate::container::hardening::CHANNEL_DIR;
use crate::error::ExecError;
use crate::setting_values::SandboxUser;
use crate::socket_dir::{Socket, SocketDir, SocketDirs};

/// How long a started container's supervisor has to connect.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(30);

/// The socket path the supervisor connects to, inside the container.
pub fn container_socket() -> String {
    format!("{CHANNEL_DIR}/{}", Socket::Channel.file_name())
}

/// A container's channel directory, listening until its supervisor connects.
pub struct ChannelListener {
    dir: SocketDir,
    listener: UnixListener,
    user: SandboxUser,
}

impl ChannelListener {
    /// A fresh directory for one container, listening on its socket.
    pub fn open(dirs: &SocketDirs, user: SandboxUser) -> Result<Self, ExecError> {
        let failed = |e: std::io::Error| ExecError::Internal(format!("cannot make a per-tool channel: {e}"));
        let dir = dirs.make(Some((user.uid, user.gid))).map_err(failed)?;
        let listener = dir.listen(Socket::Channel).map_err(failed)?;
        Ok(Self { dir, listener, user })
    }

    /// The directory to mount, as the Docker host sees it.
    pub fn mount_source(&self) -> &str {
        self.dir.mount_source()
    }

    /// Waits for the supervisor (a peer running as the sandbox user), then
    /// stops listening; the directory stays until the handle is dropped.
    pub async fn accept(self) -> Result<(UnixStream, SocketDir), ExecError> {
        loop {
            let (stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| ExecError::Internal(format!("a per-tool channel cannot accept: {e}")))?;
            match stream.peer_cred() {
                Ok(peer) if peer.uid() == self.user.uid && peer.gid() == self.user.gid => {
                    if let Err(e) = std::fs::remove_file(self.dir.path().join(Socket::Channel.file_name())) {
                        tracing::warn!(error = %e, "cannot remove a per-tool channel's socket");
                    }
                    return Ok((stream, self.dir));
                }
                Ok(peer) => tracing::warn!(
                    uid = peer.uid(),
                    gid = peer.gid(),
                    "refused a connection to a per-tool channel from another user"
                ),
                Err(e) => tracing::warn!(error = %e, "refused a per-tool channel connection without credentials"),
            }
        }
    }
}
