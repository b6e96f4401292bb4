//! The protocol between the executor and the JavaScript harness inside a
//! sandbox container: the command that starts it, the envelope on its
//! stdin, and the records on its stdout (`records.rs`).
//!
//! Two processes, so that a tool's code never shares one with anything it
//! could forge:
//! - `supervisor.mjs` (trusted) starts as root with only CAP_SETUID and
//!   CAP_SETGID, spawns the child as the sandbox user, then drops to that
//!   user itself: capability-free and non-dumpable, so the child can neither
//!   read its memory nor open its fds. It alone holds the call's marker and
//!   writes to our stdout; it relays the child's output, progress and
//!   outcome, and stops the child at its timeout.
//! - `child.mjs` runs the code. It holds nothing secret: no marker, no
//!   progress token; it provides the `mcp` content helpers and `progress()`,
//!   and can load `preload` modules before the code: in a run with egress,
//!   the egress shim (`egress.mjs`, placed by `egress/grant.rs`).
//!
//! - In a per-tool container (`per_tool/`) the supervisor serves many
//!   calls over one Unix socket connection (`per_tool/channel.rs`), framed per call (`shared.mjs`, read by
//!   `per_tool/frames.rs`), each call still with its own marker and records.
//!   The code runs either in a fresh worker thread per call inside one
//!   process (`threads.mjs`), or in a fresh `child.mjs` process per call.
//!
//! All need only a stock `node` (>= 18) from the image.

pub mod records;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::setting_values::SandboxUser;

/// The harness sources (they hold no user data). What they share comes
/// first in each.
const SUPERVISOR: &str = concat!(include_str!("shared.mjs"), include_str!("supervisor.mjs"));
const CHILD: &str = concat!(include_str!("shared.mjs"), include_str!("child.mjs"));
const THREADS: &str = concat!(include_str!("shared.mjs"), include_str!("threads.mjs"));

/// Where a per-tool container runs each call's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Realm {
    /// A fresh worker thread per call, all in one process: cheap, but a
    /// call's code can read the memory of the calls running beside it.
    Worker,
    /// A fresh process per call, pre-spawned.
    Process,
}

impl Realm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Process => "process",
        }
    }
}

/// What a per-tool container's supervisor needs beyond a run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PerToolHarness {
    pub realm: Realm,
    /// Each call's heap cap (worker threads only), in MiB.
    pub heap_mb: u64,
    /// Realms started ahead of the calls.
    pub spares: u32,
}

/// What a run container executes, or a session's exec: the supervisor,
/// told which user runs the code and what the child runs. `tag` (an exec's
/// `VAR=value` marker) only makes the process findable by its command line.
pub fn command(user: &SandboxUser, tag: Option<&str>) -> Vec<String> {
    let mut command: Vec<String> = ["node", "--input-type=module", "-e", SUPERVISOR]
        .map(String::from)
        .to_vec();
    command.push(user.to_string());
    command.push(CHILD.to_owned());
    command.extend(tag.map(str::to_owned));
    command
}

/// What a per-tool container executes: the supervisor in its many-calls
/// mode for up to `max_calls` at once, serving the channel at `channel`
/// (a socket path in the container), with the worker host's source for the
/// worker realm.
pub fn per_tool_command(user: &SandboxUser, harness: PerToolHarness, max_calls: usize, channel: &str) -> Vec<String> {
    let mut command = command(user, None);
    let options = serde_json::json!({
        "channel": channel,
        "realm": harness.realm.as_str(),
        "heapMb": harness.heap_mb,
        "spares": harness.spares,
        "maxCalls": max_calls,
    });
    command.push(options.to_string());
    if harness.realm == Realm::Worker {
        command.push(THREADS.to_owned());
    }
    command
}

/// A fresh, unguessable marker for one call: 32 hex digits between
/// record-separator bytes. Only the supervisor sees it, never the code.
pub fn new_marker() -> String {
    format!("\u{1e}{:032x}\u{1e}", rand::random::<u128>())
}

/// One call's input: what the child gets (code, args, ...) and the
/// supervisor's limits for it.
pub struct Call<'a> {
    pub code: &'a str,
    pub args: &'a RawValue,
    /// The installed dependency set the code may import from, if any.
    pub node_modules: Option<&'a str>,
    /// Whether the caller wants progress: without it `progress()` sends nothing.
    pub progress: bool,
    /// Modules the child imports before the code, to prepare its environment.
    pub preload: &'a [Preload],
    pub timeout_ms: u32,
    /// Bytes of stdout and of stderr relayed; the rest is counted.
    pub output_cap: usize,
    /// The largest result (JSON or content) accepted, in bytes.
    pub result_cap: usize,
}

/// An ES module the child writes next to the tool's module and imports
/// before the code runs; if it exports `prepare`, that gets `options`.
#[derive(Debug, Clone, Serialize)]
pub struct Preload {
    /// `[A-Za-z0-9_-]+.mjs`
    pub name: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SupervisorHeader<'a> {
    marker: &'a str,
    timeout_ms: u32,
    output_cap: usize,
    result_cap: usize,
    progress: bool,
    /// The length of the child's part, which follows the header line.
    bytes: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChildEnvelope<'a> {
    code: &'a str,
    args: &'a RawValue,
    progress: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_modules: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    preload: &'a [Preload],
}

/// The bytes written to the supervisor's stdin: a header line for it, then
/// the child's part, which it passes on without reading.
pub fn envelope(call: &Call<'_>, marker: &str) -> Vec<u8> {
    let child = serde_json::to_vec(&ChildEnvelope {
        code: call.code,
        args: call.args,
        progress: call.progress,
        node_modules: call.node_modules,
        preload: call.preload,
    })
    .unwrap_or_default();
    let header = SupervisorHeader {
        marker,
        timeout_ms: call.timeout_ms,
        output_cap: call.output_cap,
        result_cap: call.result_cap,
        progress: call.progress,
        bytes: child.len(),
    };
    let mut bytes = serde_json::to_vec(&header).unwrap_or_default();
    bytes.push(b'\n');
    bytes.extend_from_slice(&child);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_fresh_and_framed() {
        let (a, b) = (new_marker(), new_marker());
        assert_ne!(a, b);
        assert_eq!(a.len(), 34);
        assert!(a.starts_with('\u{1e}') && a.ends_with('\u{1e}'));
        assert!(a[1..33].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_envelope_gives_the_supervisor_its_limits_and_the_child_the_rest() {
        let args = RawValue::from_string(r#"{"b":1,"a":2}"#.into()).unwrap();
        let call = Call {
            code: "return 1;",
            args: &args,
            node_modules: Some("/deps/k/node_modules"),
            progress: true,
            preload: &[],
            timeout_ms: 5000,
            output_cap: 100,
            result_cap: 400,
        };
        let bytes = envelope(&call, "\u{1e}m\u{1e}");
        let text = String::from_utf8(bytes).unwrap();
        let (header, child) = text.split_once('\n').unwrap();
        let header: serde_json::Value = serde_json::from_str(header).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"marker": "\u{1e}m\u{1e}", "timeoutMs": 5000, "outputCap": 100, "resultCap": 400,
                "progress": true, "bytes": child.len()})
        );
        assert_eq!(
            child,
            r#"{"code":"return 1;","args":{"b":1,"a":2},"progress":true,"nodeModules":"/deps/k/node_modules"}"#
        );
        assert!(!child.contains("\u{1e}m\u{1e}"), "the marker never reaches the child");
    }

    #[test]
    fn the_command_runs_the_supervisor_with_the_user_and_the_child() {
        let user: SandboxUser = "65534:65534".parse().unwrap();
        let argv = command(&user, None);
        assert_eq!(argv[..3], ["node", "--input-type=module", "-e"]);
        assert!(argv[3].contains("process.setuid(uid)"));
        assert_eq!(argv[4], "65534:65534");
        assert!(argv[5].contains("export async function run(args)"));
        assert_eq!(argv.len(), 6);
        assert_eq!(command(&user, Some("TAG=1")).last().map(String::as_str), Some("TAG=1"));
    }

    #[test]
    fn a_per_tool_command_names_its_realm_and_brings_the_worker_host_only_for_workers() {
        let user: SandboxUser = "65534:65534".parse().unwrap();
        let harness = PerToolHarness {
            realm: Realm::Worker,
            heap_mb: 64,
            spares: 2,
        };
        let argv = per_tool_command(&user, harness, 6, "/run/c/channel.sock");
        assert_eq!(argv.len(), 8);
        let options: serde_json::Value = serde_json::from_str(&argv[6]).unwrap();
        assert_eq!(
            options,
            serde_json::json!({"channel": "/run/c/channel.sock", "realm": "worker", "heapMb": 64, "spares": 2, "maxCalls": 6})
        );
        assert!(argv[7].contains("new Worker(") && argv[7].contains("function frameReader"));
        assert!(
            argv[3].contains("function frameReader"),
            "the supervisor brings the framing"
        );
        let processes = per_tool_command(
            &user,
            PerToolHarness {
                realm: Realm::Process,
                ..harness
            },
            6,
            "/run/c/channel.sock",
        );
        assert_eq!(processes.len(), 7);
    }
}
