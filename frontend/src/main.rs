use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dynamic_mcp::config::FrontendConfig;

fn main() -> ExitCode {
    let config = FrontendConfig::parse();
    dynamic_mcp_common::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dynamic_mcp::run(config));
    // A blocking stdin read cannot be cancelled; do not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
