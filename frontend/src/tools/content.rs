//! A content result: the MCP content a tool's code returned through the
//! `mcp` helpers (checked block by block in the executor), as the tool
//! result's `content`. It has no `structuredContent`; how the run went
//! (duration, output) is in `_meta` under [`RUN_META_KEY`], out of the
//! model's way.

use dynamic_mcp_proto::v1::{ContentAnnotations, ContentResult, RunOutcome, content_block, embedded_resource};
use rmcp::model::{
    Annotations, AudioContent, CallToolResult, ContentBlock, EmbeddedResource, ImageContent, MetaObject, Resource,
    ResourceContents, Role, TextContent,
};
use serde_json::json;

/// The `_meta` key of a content result: `{durationMs, stdout?, stderr?, ...}`.
pub const RUN_META_KEY: &str = "dynamic-mcp/run";

/// The tool result for a run that returned content.
pub fn result(content: ContentResult, outcome: &RunOutcome) -> CallToolResult {
    let mut result = CallToolResult::success(content.blocks.into_iter().filter_map(block).collect());
    let mut run = json!({"durationMs": outcome.duration_ms});
    super::run_output::add_output(&mut run, outcome);
    let mut meta = MetaObject::new();
    meta.0.insert(RUN_META_KEY.to_owned(), run);
    result.meta = Some(meta);
    result
}

fn block(block: dynamic_mcp_proto::v1::ContentBlock) -> Option<ContentBlock> {
    let annotations = block.annotations.map(annotations);
    let converted = match block.block? {
        content_block::Block::Text(text) => {
            let text = TextContent::new(text.text);
            ContentBlock::Text(with(text, annotations, TextContent::with_annotations))
        }
        content_block::Block::Image(image) => {
            let image = ImageContent::new(image.data, image.mime_type);
            ContentBlock::Image(with(image, annotations, ImageContent::with_annotations))
        }
        content_block::Block::Audio(audio) => {
            let audio = AudioContent::new(audio.data, audio.mime_type);
            ContentBlock::Audio(with(audio, annotations, AudioContent::with_annotations))
        }
        content_block::Block::ResourceLink(link) => {
            let mut resource = Resource::new(link.uri, link.name);
            resource.title = link.title;
            resource.description = link.description;
            resource.mime_type = link.mime_type;
            resource.size = link.size;
            ContentBlock::ResourceLink(with(resource, annotations, Resource::with_annotations))
        }
        content_block::Block::Resource(embedded) => {
            let contents = match embedded.contents? {
                embedded_resource::Contents::Text(text) => ResourceContents::TextResourceContents {
                    uri: embedded.uri,
                    mime_type: embedded.mime_type,
                    text,
                    meta: None,
                },
                embedded_resource::Contents::Blob(blob) => ResourceContents::BlobResourceContents {
                    uri: embedded.uri,
                    mime_type: embedded.mime_type,
                    blob,
                    meta: None,
                },
            };
            let resource = EmbeddedResource::new(contents);
            ContentBlock::Resource(with(resource, annotations, EmbeddedResource::with_annotations))
        }
    };
    Some(converted)
}

fn with<T>(value: T, annotations: Option<Annotations>, add: fn(T, Annotations) -> T) -> T {
    match annotations {
        Some(annotations) => add(value, annotations),
        None => value,
    }
}

fn annotations(checked: ContentAnnotations) -> Annotations {
    let mut annotations = Annotations::default();
    let audience: Vec<Role> = checked
        .audience
        .iter()
        .filter_map(|who| match who.as_str() {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        })
        .collect();
    if !audience.is_empty() {
        annotations.audience = Some(audience);
    }
    annotations.priority = checked.priority.map(|p| p as f32);
    annotations.last_modified = checked.last_modified;
    annotations
}

#[cfg(test)]
mod tests {
    use dynamic_mcp_proto::v1::{
        ContentBlock as Block, EmbeddedResource as Embedded, MediaContent, ResourceLink, RunStatus, TextContent as Text,
    };

    use super::*;

    fn wire(result: &CallToolResult) -> serde_json::Value {
        serde_json::to_value(result).unwrap()
    }

    fn of(block: content_block::Block, annotations: Option<ContentAnnotations>) -> Block {
        Block {
            block: Some(block),
            annotations,
        }
    }

    #[test]
    fn every_block_reaches_the_client_as_mcp_content() {
        let content = ContentResult {
            blocks: vec![
                of(
                    content_block::Block::Text(Text { text: "hi".into() }),
                    Some(ContentAnnotations {
                        audience: vec!["user".into()],
                        priority: Some(0.5),
                        last_modified: Some("2026-01-02T03:04:05.000Z".into()),
                    }),
                ),
                of(
                    content_block::Block::Image(MediaContent {
                        data: "AAAA".into(),
                        mime_type: "image/png".into(),
                    }),
                    None,
                ),
                of(
                    content_block::Block::Audio(MediaContent {
                        data: "UklGRg==".into(),
                        mime_type: "audio/wav".into(),
                    }),
                    None,
                ),
                of(
                    content_block::Block::ResourceLink(ResourceLink {
                        uri: "file:///r.txt".into(),
                        name: "r.txt".into(),
                        size: Some(3),
                        ..Default::default()
                    }),
                    None,
                ),
                of(
                    content_block::Block::Resource(Embedded {
                        uri: "test://x".into(),
                        mime_type: Some("text/plain".into()),
                        contents: Some(embedded_resource::Contents::Text("body".into())),
                    }),
                    None,
                ),
            ],
        };
        let outcome = RunOutcome {
            status: RunStatus::Ok.into(),
            duration_ms: 7,
            stderr: "warn\n".into(),
            ..Default::default()
        };
        let wire = wire(&result(content, &outcome));
        assert_eq!(
            wire["content"],
            json!([
                {"type": "text", "text": "hi",
                 "annotations": {"audience": ["user"], "priority": 0.5, "lastModified": "2026-01-02T03:04:05.000Z"}},
                {"type": "image", "data": "AAAA", "mimeType": "image/png"},
                {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
                {"type": "resource_link", "uri": "file:///r.txt", "name": "r.txt", "size": 3},
                {"type": "resource", "resource": {"uri": "test://x", "mimeType": "text/plain", "text": "body"}}
            ])
        );
        assert_eq!(wire["isError"], false);
        assert!(wire.get("structuredContent").is_none());
        assert_eq!(
            wire["_meta"][RUN_META_KEY],
            json!({"durationMs": 7, "stderr": "warn\n"})
        );
    }
}
