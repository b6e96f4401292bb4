//! The protocol between the executor and `harness.mjs`, the JavaScript that
//! wraps a tool's code inside the container: the command that starts it, the
//! stdin envelope, the per-run markers and the result frame. `egress.mjs`,
//! loaded first only in runs with egress, is written into their egress
//! directory by `egress/grant.rs`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The harness source, passed to `node -e` (it holds no user data).
pub const SCRIPT: &str = include_str!("harness.mjs");

/// What a run container executes. Only `node` is needed from the image.
pub fn command() -> Vec<String> {
    ["node", "--input-type=module", "-e", SCRIPT].map(String::from).to_vec()
}

/// A fresh, unguessable marker for one run: 32 hex digits between
/// record-separator bytes. Only the harness sees it, never the tool's code.
fn new_marker() -> String {
    format!("\u{1e}{:032x}\u{1e}", rand::random::<u128>())
}

/// The two markers of one run: `frame` opens the result frame on stdout,
/// `end` follows it on stderr once the frame is flushed.
#[derive(Debug, Clone)]
pub struct Markers {
    pub frame: String,
    pub end: String,
}

impl Markers {
    pub fn fresh() -> Self {
        Self {
            frame: new_marker(),
            end: new_marker(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    code: &'a str,
    args: &'a RawValue,
    marker: &'a str,
    end_marker: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_modules: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    egress: Option<&'a str>,
}

/// The single JSON document written to the harness's stdin. `node_modules`
/// is the installed dependency set the code may import from, if any;
/// `egress` the egress shim to load first (`egress.mjs`), for runs with egress.
pub fn envelope(
    code: &str,
    args: &RawValue,
    markers: &Markers,
    node_modules: Option<&str>,
    egress: Option<&str>,
) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        code,
        args,
        marker: &markers.frame,
        end_marker: &markers.end,
        node_modules,
        egress,
    })
    .unwrap_or_default()
}

/// What the harness reported after the marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The code returned; `result_json` is exactly the JSON the harness wrote.
    Ok {
        result_json: String,
    },
    Threw {
        name: String,
        message: String,
        stack: String,
    },
    Syntax {
        message: String,
    },
    BadResult {
        message: String,
    },
}

/// Flat on purpose: `RawValue` cannot sit inside a tagged enum.
#[derive(Deserialize)]
struct WireFrame<'a> {
    status: String,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    stack: String,
}

impl Frame {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let wire: WireFrame<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let WireFrame {
            status,
            result,
            name,
            message,
            stack,
        } = wire;
        match status.as_str() {
            "ok" => Ok(Self::Ok {
                // `null` arrives as `None`.
                result_json: result.map_or_else(|| "null".to_owned(), |r| r.get().to_owned()),
            }),
            "threw" => Ok(Self::Threw { name, message, stack }),
            "syntax" => Ok(Self::Syntax { message }),
            "bad_result" => Ok(Self::BadResult { message }),
            other => Err(format!("unknown status '{other}'")),
        }
    }
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
        let markers = Markers::fresh();
        assert_ne!(markers.frame, markers.end);
    }

    #[test]
    fn the_envelope_carries_code_args_and_markers() {
        let args = RawValue::from_string(r#"{"b":1,"a":2}"#.into()).unwrap();
        let markers = Markers {
            frame: "\u{1e}m\u{1e}".into(),
            end: "e".into(),
        };
        let bytes = envelope("return 1;", &args, &markers, None, None);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"code":"return 1;","args":{"b":1,"a":2},"marker":"\u001em\u001e","endMarker":"e"}"#
        );
        let bytes = envelope("", &args, &markers, Some("/deps/k/node_modules"), None);
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .ends_with(r#","nodeModules":"/deps/k/node_modules"}"#)
        );
        let bytes = envelope("", &args, &markers, None, Some("/run/x/egress.mjs"));
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .ends_with(r#","egress":"/run/x/egress.mjs"}"#)
        );
    }

    #[test]
    fn the_command_runs_the_harness_as_a_module() {
        let command = command();
        assert_eq!(command[..3], ["node", "--input-type=module", "-e"]);
        assert!(command[3].contains("export async function run(args)"));
    }

    #[test]
    fn frames_parse_and_keep_the_result_text() {
        assert_eq!(
            Frame::parse(br#"{"status":"ok","result":{"z":1,"a":[1, 2]}}"#).unwrap(),
            Frame::Ok {
                result_json: r#"{"z":1,"a":[1, 2]}"#.into()
            }
        );
        assert_eq!(
            Frame::parse(b"{\"status\":\"ok\",\"result\":null}\n").unwrap(),
            Frame::Ok {
                result_json: "null".into()
            }
        );
        assert_eq!(
            Frame::parse(br#"{"status":"threw","name":"TypeError","message":"boom","stack":"s"}"#).unwrap(),
            Frame::Threw {
                name: "TypeError".into(),
                message: "boom".into(),
                stack: "s".into()
            }
        );
        assert!(matches!(
            Frame::parse(br#"{"status":"syntax","message":"Unexpected token"}"#),
            Ok(Frame::Syntax { .. })
        ));
        assert!(matches!(
            Frame::parse(br#"{"status":"bad_result","message":"x"}"#),
            Ok(Frame::BadResult { .. })
        ));
        assert!(Frame::parse(br#"{"status":"ok","result":{"#).is_err());
        assert!(Frame::parse(br#"{"status":"won"}"#).is_err());
    }
}
