//! Logs go to stderr, always: in stdio mode stdout carries only MCP frames.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging settings every process shares.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `dynamic_mcp=debug`.
    #[arg(long = "log-level", env = "MCP_LOG_LEVEL", default_value = "info")]
    pub level: String,
    /// Log line format on stderr.
    #[arg(long = "log-format", env = "MCP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub format: LogFormat,
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.level).unwrap_or_else(|e| {
        eprintln!(
            "MCP_LOG_LEVEL '{}' is not a valid filter ({e}); using 'info'",
            args.level
        );
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}
