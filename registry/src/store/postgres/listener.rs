//! The change feed across replicas. Each write adds its change to
//! `tool_changes` and sends a small NOTIFY (`<catalog version>:<name>`) in
//! the same transaction. Every replica LISTENs, and on each wake-up publishes,
//! in version order, every change after the last one it published. So a lost
//! notification costs nothing: after a reconnect (a database restart, say)
//! the listener catches up from the table before it waits again, and it also
//! looks every few seconds in case its connection died without a sound. If it
//! fell so far behind that the changes it needs were pruned, the versions it
//! publishes jump, and each watcher takes a fresh snapshot on that gap.

use std::convert::Infallible;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;
use tokio::time::MissedTickBehavior;

use super::rows::{self, record_columns};
use crate::change::ChangeEvent;
use dynamic_mcp_common::backoff::Backoff;

/// The safety net for a connection that died silently.
const CATCH_UP_EVERY: Duration = Duration::from_secs(5);
const CATCH_UP_BATCH: i64 = 500;

const CHANGES_AFTER: &str = concat!(
    "SELECT catalog_version, kind, ",
    record_columns!(),
    " FROM tool_changes WHERE catalog_version > $1 ORDER BY catalog_version LIMIT $2"
);

pub struct ChangeListener {
    pub pool: PgPool,
    pub channel: String,
    pub changes: broadcast::Sender<ChangeEvent>,
    /// The newest catalog version published on `changes`.
    pub published: u64,
    pub backoff: Backoff,
}

impl ChangeListener {
    /// Runs until the task is aborted, reconnecting as often as it takes.
    pub async fn run(mut self) {
        loop {
            let Err(err) = self.listen_and_publish().await;
            let wait = self.backoff.next_wait();
            tracing::warn!(
                error = %err,
                retry_in_ms = wait.as_millis() as u64,
                "the change listener lost the tool database; reconnecting"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Returns only when the database fails.
    async fn listen_and_publish(&mut self) -> Result<Infallible, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.channel).await?;
        // Whatever was committed while nobody here listened is in the table.
        let caught_up = self.catch_up().await?;
        self.backoff.reset();
        tracing::info!(caught_up, catalog_version = self.published, "change listener connected");

        let mut safety_net = tokio::time::interval(CATCH_UP_EVERY);
        safety_net.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = listener.try_recv() => {
                    if received?.is_none() {
                        tracing::warn!("the change listener's connection was replaced; catching up");
                    }
                    // One catch-up covers every notification already waiting.
                    while listener.next_buffered().is_some() {}
                }
                _ = safety_net.tick() => {}
            }
            self.catch_up().await?;
        }
    }

    /// Publishes every change after `published`; returns how many.
    async fn catch_up(&mut self) -> Result<usize, sqlx::Error> {
        let mut count = 0;
        loop {
            let found = sqlx::query(CHANGES_AFTER)
                .bind(rows::to_i64(self.published)?)
                .bind(CATCH_UP_BATCH)
                .fetch_all(&self.pool)
                .await?;
            for row in &found {
                let change = rows::change_event(row)?;
                if change.catalog_version != self.published + 1 {
                    tracing::warn!(
                        published = self.published,
                        next = change.catalog_version,
                        "changes were pruned before this replica read them; watchers will take a fresh snapshot"
                    );
                }
                self.published = change.catalog_version;
                // No watchers is fine.
                let _ = self.changes.send(change);
                count += 1;
            }
            if found.len() < CATCH_UP_BATCH as usize {
                return Ok(count);
            }
        }
    }
}
