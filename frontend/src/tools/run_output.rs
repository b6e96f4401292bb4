//! What a run printed, as fields of its tool result: the structured result
//! of a failed run and the `_meta` of a content result both carry them.

use dynamic_mcp_proto::v1::RunOutcome;
use serde_json::{Value, json};

/// Adds stdout/stderr (and whether they were cut) only when there is some.
pub(super) fn add_output(body: &mut Value, outcome: &RunOutcome) {
    for (key, text, truncated) in [
        ("stdout", &outcome.stdout, outcome.stdout_truncated),
        ("stderr", &outcome.stderr, outcome.stderr_truncated),
    ] {
        if !text.is_empty() {
            body[key] = json!(text);
        }
        if truncated {
            body[format!("{key}Truncated")] = json!(true);
        }
    }
}
