//! A JSON-RPC error for every malformed MCP request, in front of rmcp
//! (which answers them 415 with a text body, or -32601 when a known
//! method's params do not fit its type).
//!
//! A POSTed JSON body is checked in this order, each step cheap and none
//! recursive before the nesting is known to be bounded:
//! 1. nesting depth, by a byte scan ([`MAX_NESTING`]), then UTF-8 and JSON
//!    syntax: -32700 Parse error;
//! 2. the envelope: one object (no batch), `"jsonrpc": "2.0"`, an `id` that
//!    is a string or a 64-bit integer, a string `method`: -32600 Invalid
//!    Request; `params` that are not an object: -32602 Invalid params;
//! 3. the message as rmcp reads it: for a method rmcp knows, params that do
//!    not fit its type get -32602 naming the field.
//!
//! The answer is HTTP 400 (the transport's status for input the server
//! cannot accept) with `id` echoed when it could be read, null otherwise, as
//! JSON-RPC requires. A request that declares the stateless protocol
//! (2026-07-28 on) and names a method that version removed gets what the
//! spec asks for, 404 and -32601, not a complaint about its params. What passes goes on with the message's method and id
//! in the request's extensions ([`RpcMessage`]).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestMethod, CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, CompleteRequestMethod,
    CompleteRequestParams, ConstString, DiscoverRequestMethod, DiscoverRequestParams, ErrorCode,
    GetPromptRequestMethod, GetPromptRequestParams, InitializeRequestParams, InitializeResultMethod, JsonRpcMessage,
    ListPromptsRequestMethod, ListResourceTemplatesRequestMethod, ListResourcesRequestMethod, ListToolsRequestMethod,
    PaginatedRequestParams, PingRequestMethod, ProtocolVersion, ReadResourceRequestMethod, ReadResourceRequestParams,
    SetLevelRequestMethod, SubscribeRequestMethod, SubscribeRequestParams, SubscriptionsListenRequestMethod,
    SubscriptionsListenRequestParams, UnsubscribeRequestMethod, UnsubscribeRequestParams,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::metrics;

/// The deepest nesting of arrays and objects a request may have. serde_json
/// stops at 128; tool arguments and schemas rarely go past 20.
pub const MAX_NESTING: usize = 64;

/// The code of a refusal because the server is at a limit: JSON-RPC's
/// implementation-defined "Server error".
pub const SERVER_BUSY: ErrorCode = ErrorCode(-32000);

/// A JSON-RPC error as an HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub status: StatusCode,
    /// The request's id when it could be read, else null.
    pub id: Value,
    pub code: ErrorCode,
    pub message: String,
}

impl RpcError {
    pub fn new(status: StatusCode, code: ErrorCode, id: Value, message: impl Into<String>) -> Self {
        Self {
            status,
            id,
            code,
            message: message.into(),
        }
    }

    fn bad(code: ErrorCode, id: Value, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, id, message)
    }

    fn reason(&self) -> &'static str {
        match self.code {
            ErrorCode::PARSE_ERROR => "parse_error",
            ErrorCode::INVALID_PARAMS => "invalid_params",
            ErrorCode::METHOD_NOT_FOUND => "removed_method",
            _ => "invalid_request",
        }
    }
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        let body = json!({"jsonrpc": "2.0", "id": self.id,
            "error": {"code": self.code.0, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

/// What the checks learnt about a message that passed them.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcMessage {
    pub method: Option<String>,
    /// The request's id; `None` for notifications and responses.
    pub id: Option<Value>,
}

impl RpcMessage {
    /// The id to echo in an error about this message.
    pub fn echoed_id(&self) -> Value {
        self.id.clone().unwrap_or(Value::Null)
    }
}

/// Checks POSTed JSON bodies (the body limit has buffered them already);
/// other requests pass untouched, and rmcp judges their media types.
pub async fn check(request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !is_json(&request) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (
            StatusCode::BAD_REQUEST,
            "Bad Request: the request body could not be read",
        )
            .into_response();
    };
    match inspect(&bytes, declares_stateless(&parts.headers)) {
        Ok(message) => {
            parts.extensions.insert(message);
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        Err(error) => {
            metrics::http_request_refused(error.reason());
            tracing::info!(code = error.code.0, message = %error.message, "refused a malformed MCP request");
            error.into_response()
        }
    }
}

/// The methods the stateless protocol (2026-07-28) removed.
const REMOVED_IN_STATELESS: &[&str] = &[
    InitializeResultMethod::VALUE,
    PingRequestMethod::VALUE,
    SetLevelRequestMethod::VALUE,
    SubscribeRequestMethod::VALUE,
    UnsubscribeRequestMethod::VALUE,
];

/// Whether the request's MCP-Protocol-Version is the stateless protocol's
/// (dated versions order as strings: rmcp's own rule).
fn declares_stateless(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|version| version >= ProtocolVersion::NO_INITIALIZE.as_str())
}

/// 404 and -32601 for a method the stateless protocol no longer has.
fn removed_method(method: &str, id: Value) -> RpcError {
    RpcError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::METHOD_NOT_FOUND,
        id,
        format!(
            "Method not found: the stateless protocol ({}) has no `{method}`; every request carries its own \
             `_meta` instead (for the initialize handshake, declare a version up to {})",
            ProtocolVersion::NO_INITIALIZE,
            ProtocolVersion::LATEST_WITH_INITIALIZE
        ),
    )
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The checks, on a whole body; `stateless` when the request declares the
/// stateless protocol.
pub fn inspect(body: &Bytes, stateless: bool) -> Result<RpcMessage, RpcError> {
    let parse_error = |message: String| RpcError::bad(ErrorCode::PARSE_ERROR, Value::Null, message);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(parse_error(
            "Parse error: the request body is empty; send one JSON-RPC message".into(),
        ));
    }
    if nesting_exceeds(body, MAX_NESTING) {
        return Err(parse_error(format!(
            "Parse error: the JSON is nested deeper than {MAX_NESTING} levels"
        )));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        parse_error(format!(
            "Parse error: the request body is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    if text.trim_start().starts_with('[') {
        return Err(RpcError::bad(
            ErrorCode::INVALID_REQUEST,
            Value::Null,
            "Invalid Request: batches are not supported; send one JSON-RPC message per request",
        ));
    }
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data if text.trim_start().starts_with('{') => {
            RpcError::bad(ErrorCode::INVALID_REQUEST, Value::Null, format!("Invalid Request: {e}"))
        }
        serde_json::error::Category::Data => RpcError::bad(
            ErrorCode::INVALID_REQUEST,
            Value::Null,
            "Invalid Request: a JSON-RPC message is a JSON object",
        ),
        _ => parse_error(format!("Parse error: {e}")),
    })?;
    envelope.check(text, stateless)
}

/// Whether arrays and objects nest deeper than `max`, scanning bytes
/// (strings skipped) without recursion.
fn nesting_exceeds(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The top-level members, unparsed. A member that is present is `Some`,
/// even when it is `null`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

impl Envelope<'_> {
    fn check(&self, text: &str, stateless: bool) -> Result<RpcMessage, RpcError> {
        let id = match self.id {
            None => None,
            Some(raw) => Some(valid_id(raw).map_err(|why| {
                RpcError::bad(
                    ErrorCode::INVALID_REQUEST,
                    Value::Null,
                    format!("Invalid Request: {why}"),
                )
            })?),
        };
        let echoed = id.clone().unwrap_or(Value::Null);
        let invalid = |message: String| RpcError::bad(ErrorCode::INVALID_REQUEST, echoed.clone(), message);
        if self.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
            return Err(invalid(
                "Invalid Request: `jsonrpc` must be \"2.0\" (JSON-RPC 2.0)".into(),
            ));
        }
        let method = match self.method {
            Some(raw) => Some(
                serde_json::from_str::<String>(raw.get())
                    .map_err(|_| invalid("Invalid Request: `method` must be a string".into()))?,
            ),
            None if self.result.is_some() || self.error.is_some() => None,
            None => {
                return Err(invalid(
                    "Invalid Request: a request needs a `method` (or, answering the server, a `result` or `error`)"
                        .into(),
                ));
            }
        };
        let message = RpcMessage { method, id };
        let Some(method) = message.method.as_deref() else {
            return Ok(message);
        };
        if stateless && REMOVED_IN_STATELESS.contains(&method) {
            return Err(removed_method(method, echoed));
        }
        let invalid_params = |detail: String| {
            RpcError::bad(
                ErrorCode::INVALID_PARAMS,
                echoed.clone(),
                format!("Invalid params for {method}: {detail}"),
            )
        };
        if let Some(params) = self.params
            && !params.get().starts_with('{')
            && params.get() != "null"
        {
            return Err(invalid_params(
                "`params` must be an object (MCP uses named parameters)".into(),
            ));
        }
        let typed = TYPED_PARAMS.iter().find(|(name, _)| *name == method);
        let fits = match serde_json::from_str::<ClientJsonRpcMessage>(text) {
            Ok(JsonRpcMessage::Request(request)) => !matches!(request.request, ClientRequest::CustomRequest(_)),
            Ok(_) => true,
            Err(e) if typed.is_none() => return Err(invalid(format!("Invalid Request: {e}"))),
            Err(_) => false,
        };
        match typed {
            Some((_, fit)) if !fits => Err(invalid_params(
                fit(self.params)
                    .err()
                    .unwrap_or_else(|| "they do not fit the method".into()),
            )),
            _ => Ok(message),
        }
    }
}

/// A request id as MCP allows it: a string or an integer (rmcp: 64-bit).
fn valid_id(raw: &RawValue) -> Result<Value, &'static str> {
    let text = raw.get();
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text)
            .map(Value::String)
            .map_err(|_| "`id` is not a valid string");
    }
    if text == "null" {
        return Err("`id` must not be null; use a string or an integer");
    }
    if text.starts_with('-') || text.starts_with(|c: char| c.is_ascii_digit()) {
        if text.contains(['.', 'e', 'E']) {
            return Err("`id` must be an integer or a string, not a fraction");
        }
        return text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "`id` is beyond the 64-bit integer range; use a smaller integer or a string");
    }
    Err("`id` must be a string or an integer")
}

/// How to check one method's params.
type ParamsFit = fn(Option<&RawValue>) -> Result<(), String>;

/// The methods whose params rmcp reads into a type, and that type.
const TYPED_PARAMS: &[(&str, ParamsFit)] = &[
    (InitializeResultMethod::VALUE, required::<InitializeRequestParams>),
    (DiscoverRequestMethod::VALUE, required::<DiscoverRequestParams>),
    (CallToolRequestMethod::VALUE, required::<CallToolRequestParams>),
    (ListToolsRequestMethod::VALUE, optional::<PaginatedRequestParams>),
    (ListResourcesRequestMethod::VALUE, optional::<PaginatedRequestParams>),
    (
        ListResourceTemplatesRequestMethod::VALUE,
        optional::<PaginatedRequestParams>,
    ),
    (ReadResourceRequestMethod::VALUE, required::<ReadResourceRequestParams>),
    (ListPromptsRequestMethod::VALUE, optional::<PaginatedRequestParams>),
    (GetPromptRequestMethod::VALUE, required::<GetPromptRequestParams>),
    (CompleteRequestMethod::VALUE, required::<CompleteRequestParams>),
    (
        SubscriptionsListenRequestMethod::VALUE,
        required::<SubscriptionsListenRequestParams>,
    ),
    (SubscribeRequestMethod::VALUE, required::<SubscribeRequestParams>),
    (UnsubscribeRequestMethod::VALUE, required::<UnsubscribeRequestParams>),
];

fn required<P: DeserializeOwned>(params: Option<&RawValue>) -> Result<(), String> {
    match params {
        Some(raw) if raw.get() != "null" => fit::<P>(raw),
        _ => Err("`params` is required".into()),
    }
}

fn optional<P: DeserializeOwned>(params: Option<&RawValue>) -> Result<(), String> {
    match params {
        Some(raw) if raw.get() != "null" => fit::<P>(raw),
        _ => Ok(()),
    }
}

/// Reads `raw` into `P`; the error names the field that does not fit.
fn fit<P: DeserializeOwned>(raw: &RawValue) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize::<_, P>(&mut deserializer)
        .map(drop)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                inner.to_string()
            } else {
                format!("`params.{path}`: {inner}")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &[u8]) -> RpcError {
        inspect(&Bytes::copy_from_slice(body), false).expect_err("should be refused")
    }

    #[test]
    fn methods_the_stateless_protocol_removed_are_not_found_there_only() {
        let headers = |version: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("mcp-protocol-version", version.parse().unwrap());
            headers
        };
        assert!(declares_stateless(&headers("2026-07-28")));
        assert!(!declares_stateless(&headers("2025-11-25")));
        assert!(!declares_stateless(&axum::http::HeaderMap::new()));
        assert_eq!(REMOVED_IN_STATELESS.len(), 5);
        for method in REMOVED_IN_STATELESS {
            // Params that would not fit the method's type: the missing method comes first.
            let body = Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":5,"method":"{method}","params":{{}}}}"#
            ));
            let error = inspect(&body, true).expect_err(method);
            assert_eq!(
                (error.status, error.code, error.id),
                (StatusCode::NOT_FOUND, ErrorCode::METHOD_NOT_FOUND, json!(5))
            );
            assert!(
                error.message.contains(method) && error.message.contains("2025-11-25"),
                "{}",
                error.message
            );
            if let Err(error) = inspect(&body, false) {
                assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{method}");
            }
        }
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"system.health"}}"#;
        assert!(inspect(&Bytes::from_static(call), true).is_ok());
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a":[[["x"]]]}"#, 4));
        assert!(nesting_exceeds(br#"{"a":[[[["x"]]]]}"#, 4));
        assert!(!nesting_exceeds(br#"{"a":"[[[[[[[[\"]]]"}"#, 2));
        assert!(nesting_exceeds(&b"[".repeat(100_000), MAX_NESTING));
    }

    #[test]
    fn ids_are_strings_or_64_bit_integers() {
        let id = |text: &str| valid_id(&RawValue::from_string(text.to_owned()).unwrap());
        assert_eq!(id("\"a\""), Ok(json!("a")));
        assert_eq!(id("-7"), Ok(json!(-7)));
        assert_eq!(id("9223372036854775807"), Ok(json!(i64::MAX)));
        for bad in ["1.5", "1e3", "9223372036854775808", "null", "{}", "[1]", "true"] {
            assert!(id(bad).is_err(), "{bad}");
        }
        assert!(id(&format!("1{}", "0".repeat(400))).unwrap_err().contains("64-bit"));
    }

    #[test]
    fn a_valid_request_passes_with_its_method_and_id() {
        let body =
            br#"{"jsonrpc":"2.0","id":"x-1","method":"tools/call","params":{"name":"system.health","arguments":{}}}"#;
        let message = inspect(&Bytes::from_static(body), false).unwrap();
        assert_eq!(message.method.as_deref(), Some("tools/call"));
        assert_eq!(message.id, Some(json!("x-1")));
        let notification = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(inspect(&Bytes::from_static(notification), false).unwrap().id, None);
        let answer = br#"{"jsonrpc":"2.0","id":3,"result":{}}"#;
        assert_eq!(inspect(&Bytes::from_static(answer), false).unwrap().method, None);
        let unknown = br#"{"jsonrpc":"2.0","id":4,"method":"no/such","params":{"a":1}}"#;
        assert!(
            inspect(&Bytes::from_static(unknown), false).is_ok(),
            "rmcp answers -32601 itself"
        );
    }

    #[test]
    fn each_kind_of_malformed_request_gets_its_code_and_the_id_when_readable() {
        let cases: &[(&[u8], ErrorCode, Value)] = &[
            (b"", ErrorCode::PARSE_ERROR, Value::Null),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,", ErrorCode::PARSE_ERROR, Value::Null),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}", ErrorCode::PARSE_ERROR, Value::Null),
            (b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", ErrorCode::INVALID_REQUEST, Value::Null),
            (b"42", ErrorCode::INVALID_REQUEST, Value::Null),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}", ErrorCode::INVALID_REQUEST, Value::Null),
            (b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}", ErrorCode::INVALID_REQUEST, Value::Null),
            (b"{\"jsonrpc\":\"1.0\",\"id\":7,\"method\":\"ping\"}", ErrorCode::INVALID_REQUEST, json!(7)),
            (b"{\"id\":7,\"method\":\"ping\"}", ErrorCode::INVALID_REQUEST, json!(7)),
            (b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":3}", ErrorCode::INVALID_REQUEST, json!(7)),
            (b"{\"jsonrpc\":\"2.0\",\"id\":7}", ErrorCode::INVALID_REQUEST, json!(7)),
            (b"{\"jsonrpc\":\"2.0\",\"id\":7,\"id\":8,\"method\":\"ping\"}", ErrorCode::INVALID_REQUEST, Value::Null),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/list\",\"params\":[1]}",
                ErrorCode::INVALID_PARAMS,
                json!("a"),
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\":[1]}}",
                ErrorCode::INVALID_PARAMS,
                json!(9),
            ),
            (b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\"}", ErrorCode::INVALID_PARAMS, json!(9)),
        ];
        for (body, code, id) in cases {
            let error = refused(body);
            assert_eq!(
                (error.code, &error.id, error.status),
                (*code, id, StatusCode::BAD_REQUEST),
                "{}: {}",
                String::from_utf8_lossy(body),
                error.message
            );
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let arguments =
            refused(br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#);
        assert!(
            arguments
                .message
                .starts_with("Invalid params for tools/call: `params.arguments`: invalid type"),
            "{}",
            arguments.message
        );
        let deep = refused(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes());
        assert_eq!(deep.message, "Parse error: the JSON is nested deeper than 64 levels");
        let huge = refused(format!(r#"{{"jsonrpc":"2.0","id":1{},"method":"ping"}}"#, "0".repeat(400)).as_bytes());
        assert!(huge.message.contains("64-bit integer range"), "{}", huge.message);
        let utf8 = refused(b"{\"a\":\"\xc3\x28\"}");
        assert_eq!(
            utf8.message,
            "Parse error: the request body is not UTF-8 (invalid byte at offset 6)"
        );
    }
}
