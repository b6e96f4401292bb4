//! THE check of MCP content a tool's code returned through the `mcp`
//! helpers (harness/child.mjs). The helpers check as they build, for an
//! error where the code went wrong; this is the check that counts, since
//! the code's process can send anything: every block must be a known type
//! with what MCP requires, base64 that decodes, and MIME types that say
//! what the data is. The whole result is within the result cap already.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynamic_mcp_proto::v1::{
    ContentAnnotations, ContentBlock, ContentResult, EmbeddedResource, MediaContent, ResourceLink, TextContent,
    content_block, embedded_resource,
};
use serde::Deserialize;
use serde_json::Value;

/// The blocks of a content result, checked, or what is wrong with the
/// first bad one ("content[1] (image): ...").
pub fn checked(payload: &[u8]) -> Result<ContentResult, String> {
    let items: Vec<Value> =
        serde_json::from_slice(payload).map_err(|e| format!("the content is not a JSON array of blocks ({e})"))?;
    let blocks = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("?").to_owned();
            block(item).map_err(|problem| format!("content[{i}] ({kind}): {problem}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ContentResult { blocks })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text(WireText),
    Image(WireMedia),
    Audio(WireMedia),
    ResourceLink(WireLink),
    Resource(WireEmbedded),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireText {
    text: String,
    annotations: Option<WireAnnotations>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireMedia {
    data: String,
    mime_type: String,
    annotations: Option<WireAnnotations>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireLink {
    uri: String,
    name: String,
    title: Option<String>,
    description: Option<String>,
    mime_type: Option<String>,
    size: Option<u64>,
    annotations: Option<WireAnnotations>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireEmbedded {
    resource: WireResource,
    annotations: Option<WireAnnotations>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireResource {
    uri: String,
    mime_type: Option<String>,
    text: Option<String>,
    blob: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireAnnotations {
    #[serde(default)]
    audience: Vec<String>,
    priority: Option<f64>,
    last_modified: Option<String>,
}

fn block(item: Value) -> Result<ContentBlock, String> {
    let wire: WireBlock = serde_json::from_value(item).map_err(|e| e.to_string())?;
    let (block, annotations) = match wire {
        WireBlock::Text(WireText { text, annotations }) => {
            (content_block::Block::Text(TextContent { text }), annotations)
        }
        WireBlock::Image(image) => {
            let annotations = image.annotations;
            (
                content_block::Block::Image(media(image.data, image.mime_type, "image")?),
                annotations,
            )
        }
        WireBlock::Audio(audio) => {
            let annotations = audio.annotations;
            (
                content_block::Block::Audio(media(audio.data, audio.mime_type, "audio")?),
                annotations,
            )
        }
        WireBlock::ResourceLink(link) => {
            if link.name.trim().is_empty() {
                return Err("`name` is empty".into());
            }
            let checked = ResourceLink {
                uri: checked_uri(link.uri)?,
                name: link.name,
                title: link.title,
                description: link.description,
                mime_type: link.mime_type.map(|m| checked_mime(m, None)).transpose()?,
                size: link.size,
            };
            (content_block::Block::ResourceLink(checked), link.annotations)
        }
        WireBlock::Resource(WireEmbedded { resource, annotations }) => {
            let WireResource {
                uri,
                mime_type,
                text,
                blob,
            } = resource;
            let contents = match (text, blob) {
                (Some(text), None) => embedded_resource::Contents::Text(text),
                (None, Some(blob)) => embedded_resource::Contents::Blob(checked_base64(blob, "resource.blob")?),
                _ => return Err("`resource` needs exactly one of `text` and `blob`".into()),
            };
            let resource = EmbeddedResource {
                uri: checked_uri(uri)?,
                mime_type: mime_type.map(|m| checked_mime(m, None)).transpose()?,
                contents: Some(contents),
            };
            (content_block::Block::Resource(resource), annotations)
        }
    };
    Ok(ContentBlock {
        block: Some(block),
        annotations: annotations.map(checked_annotations).transpose()?,
    })
}

fn media(data: String, mime_type: String, family: &str) -> Result<MediaContent, String> {
    Ok(MediaContent {
        data: checked_base64(data, "data")?,
        mime_type: checked_mime(mime_type, Some(family))?,
    })
}

fn checked_base64(data: String, field: &str) -> Result<String, String> {
    if data.is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    STANDARD
        .decode(data.as_bytes())
        .map_err(|e| format!("`{field}` is not base64 ({e})"))?;
    Ok(data)
}

/// `type/subtype` (parameters allowed), of `family` when given.
fn checked_mime(mime: String, family: Option<&str>) -> Result<String, String> {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let well_formed = essence.split_once('/').is_some_and(|(t, s)| token(t) && token(s));
    if !well_formed {
        return Err(format!("`mimeType` '{mime}' is not a MIME type such as image/png"));
    }
    if let Some(family) = family
        && !essence.to_ascii_lowercase().starts_with(&format!("{family}/"))
    {
        return Err(format!("`mimeType` '{mime}' is not an {family}/* type"));
    }
    Ok(mime)
}

/// A URI with a scheme (`file:///x`, `https://...`, `test://y`).
fn checked_uri(uri: String) -> Result<String, String> {
    let scheme = uri.split_once(':').map(|(scheme, _)| scheme).unwrap_or_default();
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    if !valid {
        let shown: String = uri.chars().take(100).collect();
        return Err(format!("`uri` '{shown}' has no scheme (e.g. file:///x or https://...)"));
    }
    Ok(uri)
}

fn checked_annotations(wire: WireAnnotations) -> Result<ContentAnnotations, String> {
    if let Some(bad) = wire
        .audience
        .iter()
        .find(|a| !["user", "assistant"].contains(&a.as_str()))
    {
        return Err(format!(
            "annotations.audience has '{bad}'; use \"user\" and \"assistant\""
        ));
    }
    if let Some(priority) = wire.priority
        && !(0.0..=1.0).contains(&priority)
    {
        return Err(format!("annotations.priority is {priority}; it must be from 0 to 1"));
    }
    if let Some(at) = &wire.last_modified
        && time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_err()
    {
        return Err(format!("annotations.lastModified '{at}' is not an ISO 8601 time"));
    }
    Ok(ContentAnnotations {
        audience: wire.audience,
        priority: wire.priority,
        last_modified: wire.last_modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIXEL: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

    fn check(json: Value) -> Result<ContentResult, String> {
        checked(json.to_string().as_bytes())
    }

    #[test]
    fn every_kind_of_block_passes_as_the_helpers_make_it() {
        let result = check(serde_json::json!([
            {"type": "text", "text": "hi", "annotations": {"audience": ["user"], "priority": 0.5}},
            {"type": "image", "data": PIXEL, "mimeType": "image/png"},
            {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
            {"type": "resource_link", "uri": "file:///r.txt", "name": "r.txt", "mimeType": "text/plain", "size": 3},
            {"type": "resource", "resource": {"uri": "test://x", "mimeType": "application/json", "text": "{}"}},
            {"type": "resource", "resource": {"uri": "test://y", "blob": "AAEC"},
             "annotations": {"lastModified": "2026-01-02T03:04:05.000Z"}}
        ]))
        .unwrap();
        assert_eq!(result.blocks.len(), 6);
        assert!(matches!(&result.blocks[1].block, Some(content_block::Block::Image(m)) if m.mime_type == "image/png"));
        assert_eq!(result.blocks[0].annotations.as_ref().unwrap().audience, ["user"]);
        assert!(check(serde_json::json!([])).unwrap().blocks.is_empty());
    }

    #[test]
    fn a_bad_block_is_named_with_what_to_fix() {
        let problem = |block: Value| check(serde_json::json!(["x", block])).unwrap_err();
        let first = check(serde_json::json!([{"type": "video", "data": "AA=="}])).unwrap_err();
        assert!(
            first.starts_with("content[0] (video): unknown variant `video`"),
            "{first}"
        );
        assert!(
            problem(serde_json::json!({"type": "text"})).starts_with("content[0]"),
            "not an object first"
        );
        let at_one = |block: Value| check(serde_json::json!([{"type": "text", "text": "ok"}, block])).unwrap_err();
        assert_eq!(
            at_one(serde_json::json!({"type": "image", "data": "not base64!", "mimeType": "image/png"})),
            "content[1] (image): `data` is not base64 (Invalid symbol 32, offset 3.)"
        );
        assert!(at_one(serde_json::json!({"type": "image", "data": PIXEL})).contains("missing field `mimeType`"));
        assert_eq!(
            at_one(serde_json::json!({"type": "image", "data": PIXEL, "mimeType": "audio/wav"})),
            "content[1] (image): `mimeType` 'audio/wav' is not an image/* type"
        );
        assert!(
            at_one(serde_json::json!({"type": "audio", "data": "", "mimeType": "audio/wav"}))
                .ends_with("`data` is empty")
        );
        assert!(at_one(serde_json::json!({"type": "text", "text": "x", "extra": 1})).contains("unknown field `extra`"));
        assert!(
            at_one(serde_json::json!({"type": "resource_link", "uri": "r.txt", "name": "r"})).contains("has no scheme")
        );
        assert!(
            at_one(serde_json::json!({"type": "resource", "resource": {"uri": "a:b", "text": "t", "blob": "AA=="}}))
                .contains("exactly one of `text` and `blob`")
        );
        assert!(
            at_one(serde_json::json!({"type": "text", "text": "x", "annotations": {"priority": 2}}))
                .contains("from 0 to 1")
        );
        assert!(
            at_one(serde_json::json!({"type": "text", "text": "x", "annotations": {"audience": ["bot"]}}))
                .contains("'bot'")
        );
        assert!(
            checked(b"{\"type\":\"text\"}")
                .unwrap_err()
                .starts_with("the content is not a JSON array")
        );
    }
}
