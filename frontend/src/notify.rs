//! `notifications/tools/list_changed` to every connected client, once per
//! catalog change.
//!
//! Two kinds of client hear about changes differently. Legacy clients
//! (protocol versions before 2026-07-28) had an `initialize` handshake; we
//! keep their peer and notify it on its session (stdio, or the HTTP GET
//! stream). 2026-07-28 clients open a `subscriptions/listen` stream, which
//! [`serve_subscription`] feeds.

use std::sync::{Arc, Mutex};

use rmcp::service::{Peer, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;

/// The legacy peers to notify. Cheap to clone.
#[derive(Clone, Default)]
pub struct LegacyPeers {
    peers: Arc<Mutex<Vec<Peer<RoleServer>>>>,
}

impl LegacyPeers {
    /// Remembers a client that finished the `initialize` handshake.
    pub fn register(&self, peer: Peer<RoleServer>) {
        let mut peers = self.lock();
        peers.retain(|p| !p.is_transport_closed());
        peers.push(peer);
    }

    /// Notifies every live peer once per catalog change, until `stop`.
    pub fn spawn_fan_out(&self, catalog: &Catalog, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let peers = self.clone();
        let mut changed = catalog.changed();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    signal = changed.recv() => match signal {
                        // After a lag, one notification covers all missed changes.
                        Ok(()) | Err(RecvError::Lagged(_)) => peers.notify_all().await,
                        Err(RecvError::Closed) => return,
                    },
                }
            }
        })
    }

    async fn notify_all(&self) {
        let peers: Vec<_> = {
            let mut peers = self.lock();
            peers.retain(|p| !p.is_transport_closed());
            peers.clone()
        };
        let sends = peers.iter().map(|peer| async move {
            if let Err(e) = peer.notify_tool_list_changed().await {
                tracing::debug!(error = %e, "a legacy client did not take list_changed; it will be dropped when closed");
            }
        });
        futures::future::join_all(sends).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Peer<RoleServer>>> {
        self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Feeds one 2026-07-28 `subscriptions/listen` stream until the client
/// cancels it or the server stops.
pub async fn serve_subscription(
    mut changed: broadcast::Receiver<()>,
    ctx: SubscriptionContext,
) -> Result<(), McpError> {
    if ctx.accepted().tools_list_changed != Some(true) {
        ctx.cancelled().await;
        return Ok(());
    }
    loop {
        tokio::select! {
            () = ctx.cancelled() => return Ok(()),
            signal = changed.recv() => match signal {
                Ok(()) | Err(RecvError::Lagged(_)) => ctx
                    .sink()
                    .notify_tool_list_changed()
                    .await
                    .map_err(|e| McpError::internal_error(format!("cannot send list_changed: {e}"), None))?,
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}
