//! `dynamic-mcp-registry`: see the crate docs in lib.rs.

use std::process::ExitCode;

use clap::Parser;
use dynamic_mcp_registry::config::RegistryConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let config = RegistryConfig::parse();
    dynamic_mcp_common::telemetry::init(&config.log);
    match dynamic_mcp_registry::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Through the logger, so JSON logs stay one object per line.
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
