//! When a process should stop: on Ctrl-C or SIGTERM, and, for services the
//! frontend started itself, when that parent goes away.

use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

/// Resolves on SIGINT or SIGTERM, or — when `exit_with_parent` is set — when
/// standard input reaches end of file. A parent that starts us keeps our
/// stdin open, so it closes even when the parent is killed with SIGKILL.
pub async fn requested(exit_with_parent: bool) {
    let parent_gone = async {
        if exit_with_parent {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            tracing::info!("parent process went away; shutting down");
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = signal_received() => {}
        () = parent_gone => {}
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal_received() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C will stop this process");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
    }
}
