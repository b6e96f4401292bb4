//! What a dynamic tool may look like, and how specs and patches become
//! records. Pure functions: no I/O, no clock (callers pass `now`). Every
//! limit comes from `dynamic_mcp_common::limits`.

use std::sync::LazyLock;

use dynamic_mcp_common::limits::{
    self, Bounds, CODE_CHARS, DEFAULT_TIMEOUT_MS, DEPENDENCY_VERSION_CHARS, DESCRIPTION_CHARS, IMAGE_CHARS,
    MAX_DEPENDENCIES, MAX_EXAMPLE_BYTES, MAX_EXAMPLES, MAX_NETWORK_ALLOW, MAX_SECRETS, MAX_TIMEOUT_MS_CEILING,
    MIN_TIMEOUT_MS, NAME_CHARS, NETWORK_ENTRY_CHARS, NPM_NAME_MAX_CHARS, TITLE_CHARS,
};
use dynamic_mcp_common::tool_names::reserved_reason;
use dynamic_mcp_common::tool_schema::ToolSchema;
use dynamic_mcp_proto::v1 as pb;
use regex::Regex;
use serde_json::Value;

use crate::quoting::quoted;
use crate::record::{
    Annotations, ArgumentsMode, Dependency, Example, NetworkPolicy, ToolCode, ToolExtensions, ToolRecord,
    isolation_from,
};

/// npm's rules for new package names: lowercase, URL-safe, optionally scoped,
/// not starting with '.' or '_'. Whether a version range is acceptable is the
/// executor's policy, not ours.
#[expect(clippy::expect_used, reason = "a constant pattern; the tests compile it")]
static NPM_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]*$").expect("the npm name pattern compiles")
});

#[expect(clippy::expect_used, reason = "a constant pattern; the tests compile it")]
static SECRET_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(limits::SECRET_NAME_PATTERN).expect("the secret name pattern compiles"));

/// Why a tool spec or patch was refused; the text names the field and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

/// Builds revision 1 of a tool from a create request, filling in defaults.
pub fn new_tool(spec: pb::ToolSpec, now: &str) -> Result<ToolRecord, Violation> {
    check_name(&spec.name)?;
    let (arguments, isolation) = (spec.arguments(), spec.isolation());
    let extensions = ToolExtensions {
        input_schema: spec
            .input_schema_json
            .as_deref()
            .map(|t| json("inputSchema", t))
            .transpose()?,
        output_schema: spec
            .output_schema_json
            .as_deref()
            .map(|t| json("outputSchema", t))
            .transpose()?,
        annotations: spec.annotations.map(Annotations::from),
        arguments: ArgumentsMode::from(arguments),
        isolation: isolation_from(isolation),
        examples: examples(spec.examples)?,
        network: spec.network.map(|n| NetworkPolicy { allow: n.allow }),
        secrets: spec.secrets,
    };
    let record = ToolRecord {
        name: spec.name,
        title: spec.title,
        description: spec.description,
        // The frontend resolves the default image with the executor before it
        // calls Create, so a missing image here is the caller's mistake.
        image: spec.image.unwrap_or_default(),
        timeout_ms: spec.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        dependencies: spec.dependencies.into_iter().map(Dependency::from).collect(),
        code: ToolCode::Included(spec.code),
        enabled: spec.enabled.unwrap_or(true),
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        revision: 1,
        extensions,
    };
    check_fields(&record)?;
    Ok(record)
}

/// The next revision of `current` with `patch` applied, or `None` when the
/// patch changes nothing (so no revision, no event).
pub fn apply_patch(current: &ToolRecord, patch: pb::ToolPatch, now: &str) -> Result<Option<ToolRecord>, Violation> {
    for (set, clear, field) in [
        (patch.title.is_some(), patch.clear_title, "title"),
        (
            patch.input_schema_json.is_some(),
            patch.clear_input_schema,
            "inputSchema",
        ),
        (
            patch.output_schema_json.is_some(),
            patch.clear_output_schema,
            "outputSchema",
        ),
        (patch.annotations.is_some(), patch.clear_annotations, "annotations"),
        (patch.network.is_some(), patch.clear_network, "network"),
    ] {
        if set && clear {
            return Err(Violation(format!(
                "patch both sets and removes {field}: give it a value to change it, or null to remove it"
            )));
        }
    }
    let mut next = current.clone();
    let ext = &mut next.extensions;
    replace_json(
        &mut ext.input_schema,
        patch.input_schema_json.as_deref(),
        patch.clear_input_schema,
        "inputSchema",
    )?;
    replace_json(
        &mut ext.output_schema,
        patch.output_schema_json.as_deref(),
        patch.clear_output_schema,
        "outputSchema",
    )?;
    if let Some(annotations) = patch.annotations {
        ext.annotations = Some(annotations.into());
    } else if patch.clear_annotations {
        ext.annotations = None;
    }
    if let Some(list) = patch.examples {
        ext.examples = examples(list.items)?;
    }
    if let Some(mode) = patch.arguments {
        ext.arguments = ArgumentsMode::from(pb::ArgumentsMode::try_from(mode).unwrap_or_default());
    }
    if let Some(isolation) = patch.isolation {
        ext.isolation = isolation_from(pb::Isolation::try_from(isolation).unwrap_or_default());
    }
    if let Some(network) = patch.network {
        ext.network = Some(NetworkPolicy { allow: network.allow });
    } else if patch.clear_network {
        ext.network = None;
    }
    if let Some(secrets) = patch.secrets {
        ext.secrets = secrets.items;
    }
    if patch.title.is_some() {
        next.title = patch.title;
    } else if patch.clear_title {
        next.title = None;
    }
    if let Some(description) = patch.description {
        next.description = description;
    }
    if let Some(image) = patch.image {
        next.image = image;
    }
    if let Some(timeout_ms) = patch.timeout_ms {
        next.timeout_ms = timeout_ms;
    }
    if let Some(dependencies) = patch.dependencies {
        next.dependencies = dependencies.items.into_iter().map(Dependency::from).collect();
    }
    if let Some(code) = patch.code {
        next.code = ToolCode::Included(code);
    }
    if let Some(enabled) = patch.enabled {
        next.enabled = enabled;
    }
    if next == *current {
        return Ok(None);
    }
    check_fields(&next)?;
    Ok(Some(revised(next, now)))
}

/// The next revision with `enabled` set, or `None` when it already has that value.
pub fn set_enabled(current: &ToolRecord, enabled: bool, now: &str) -> Option<ToolRecord> {
    (current.enabled != enabled).then(|| {
        revised(
            ToolRecord {
                enabled,
                ..current.clone()
            },
            now,
        )
    })
}

/// The next revision of `current` with the definition of the kept revision
/// `target` (everything but the name and the creation time), or `None`
/// when they are already equal.
pub fn rollback(current: &ToolRecord, target: &ToolRecord, now: &str) -> Result<Option<ToolRecord>, Violation> {
    let next = ToolRecord {
        name: current.name.clone(),
        created_at: current.created_at.clone(),
        updated_at: current.updated_at.clone(),
        revision: current.revision,
        ..target.clone()
    };
    if next == *current {
        return Ok(None);
    }
    // Written under today's rules: an old revision may predate a limit.
    check_fields(&next)?;
    Ok(Some(revised(next, now)))
}

/// A deleted tool brought back as the kept revision `target`, numbered after
/// the revision it had when it was deleted.
pub fn restore(target: &ToolRecord, last_revision: u64, now: &str) -> Result<ToolRecord, Violation> {
    let restored = ToolRecord {
        revision: last_revision,
        ..target.clone()
    };
    check_fields(&restored)?;
    Ok(revised(restored, now))
}

/// A tool created under the name of a deleted one continues its revision
/// numbers, so every revision of that name stays unambiguous in the history.
pub fn recreated(mut tool: ToolRecord, last_revision: u64) -> ToolRecord {
    tool.revision = last_revision + 1;
    tool
}

/// The fields that differ between two revisions, camelCase as callers see them.
pub fn changed_fields(before: Option<&ToolRecord>, after: &ToolRecord) -> Vec<String> {
    let Some(before) = before else {
        return vec![];
    };
    let (a, b) = (&before.extensions, &after.extensions);
    [
        ("title", before.title != after.title),
        ("description", before.description != after.description),
        ("image", before.image != after.image),
        ("timeoutMs", before.timeout_ms != after.timeout_ms),
        ("dependencies", before.dependencies != after.dependencies),
        ("code", before.code != after.code),
        ("enabled", before.enabled != after.enabled),
        ("inputSchema", a.input_schema != b.input_schema),
        ("outputSchema", a.output_schema != b.output_schema),
        ("annotations", a.annotations != b.annotations),
        ("examples", a.examples != b.examples),
        ("arguments", a.arguments != b.arguments),
        ("isolation", a.isolation != b.isolation),
        ("network", a.network != b.network),
        ("secrets", a.secrets != b.secrets),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(field, _)| field.to_owned())
    .collect()
}

fn revised(mut record: ToolRecord, now: &str) -> ToolRecord {
    record.revision += 1;
    now.clone_into(&mut record.updated_at);
    record
}

fn json(field: &str, text: &str) -> Result<Value, Violation> {
    serde_json::from_str(text).map_err(|e| Violation(format!("{field} is not JSON: {e}")))
}

fn replace_json(slot: &mut Option<Value>, text: Option<&str>, clear: bool, field: &str) -> Result<(), Violation> {
    if let Some(text) = text {
        *slot = Some(json(field, text)?);
    } else if clear {
        *slot = None;
    }
    Ok(())
}

fn examples(items: Vec<pb::ToolExample>) -> Result<Vec<Example>, Violation> {
    if items.len() > MAX_EXAMPLES {
        return Err(Violation(format!(
            "examples may list at most {MAX_EXAMPLES} entries (got {})",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            for text in std::iter::once(&item.args_json).chain(item.expect_json.as_ref()) {
                if text.len() > MAX_EXAMPLE_BYTES {
                    return Err(Violation(format!(
                        "examples[{i}] is {} bytes of JSON; each args and expect may have at most {MAX_EXAMPLE_BYTES}",
                        text.len()
                    )));
                }
            }
            let args = json(&format!("examples[{i}].args"), &item.args_json)?;
            if !args.is_object() {
                return Err(Violation(format!(
                    "examples[{i}].args must be an object: the code receives it as `args`"
                )));
            }
            let expect = item
                .expect_json
                .as_deref()
                .map(|t| json(&format!("examples[{i}].expect"), t))
                .transpose()?;
            Ok(Example { args, expect })
        })
        .collect()
}

/// Tool names follow `^[a-zA-Z][a-zA-Z0-9._-]{2,63}$` and must not collide with
/// built-ins. Checked piece by piece so the message can say what is wrong.
pub fn check_name(name: &str) -> Result<(), Violation> {
    let allowed = format!(
        "a tool name is {}..{} characters: a letter, then letters, digits, '.', '_' or '-'",
        NAME_CHARS.min, NAME_CHARS.max
    );
    if name.is_empty() {
        return Err(Violation(format!("name is required: {allowed}")));
    }
    if name.contains(':') {
        return Err(Violation(format!(
            "name {} contains ':', which MCP tool names may not contain since protocol revision 2025-11-25; \
             use '.', '_' or '-' instead",
            quoted(name)
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Violation(format!("name {} contains {bad:?}; {allowed}", quoted(name))));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(Violation(format!(
            "name {} must start with a letter; {allowed}",
            quoted(name)
        )));
    }
    check_chars("name", name, NAME_CHARS)?;
    if let Some(reason) = reserved_reason(name) {
        return Err(Violation(format!(
            "name {} is reserved: {reason}; choose another name",
            quoted(name)
        )));
    }
    Ok(())
}

/// Every field except the name, on a complete record.
fn check_fields(record: &ToolRecord) -> Result<(), Violation> {
    if let Some(title) = &record.title {
        check_chars("title", title, TITLE_CHARS)
            .map_err(|Violation(msg)| Violation(format!("{msg}; leave title out for no title")))?;
    }
    check_chars("description", &record.description, DESCRIPTION_CHARS)?;
    check_chars("image", &record.image, IMAGE_CHARS)?;
    // The executor holds each tool to its own, possibly lower, maximum.
    if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS_CEILING).contains(&record.timeout_ms) {
        return Err(Violation(format!(
            "timeoutMs must be {MIN_TIMEOUT_MS}..{MAX_TIMEOUT_MS_CEILING} milliseconds (got {}); leave it out for \
             {DEFAULT_TIMEOUT_MS}",
            record.timeout_ms
        )));
    }
    check_dependencies(&record.dependencies)?;
    check_extensions(&record.extensions)?;
    match &record.code {
        ToolCode::Included(code) => check_chars("code", code, CODE_CHARS),
        // Only records read back from a store lack their code, and it was checked on the way in.
        ToolCode::LeftOut { .. } => Ok(()),
    }
}

fn check_extensions(ext: &ToolExtensions) -> Result<(), Violation> {
    if let Some(schema) = &ext.input_schema {
        ToolSchema::compile("inputSchema", schema).map_err(|e| Violation(e.to_string()))?;
        if schema.get("type") != Some(&Value::from("object")) {
            return Err(Violation(
                "inputSchema must describe an object (\"type\": \"object\" at its root): the code receives its \
                 input as the object `args`"
                    .into(),
            ));
        }
    }
    if let Some(schema) = &ext.output_schema {
        ToolSchema::compile("outputSchema", schema).map_err(|e| Violation(e.to_string()))?;
    }
    if let Some(title) = ext.annotations.as_ref().and_then(|a| a.title.as_ref()) {
        check_chars("annotations.title", title, TITLE_CHARS)?;
    }
    if let Some(network) = &ext.network {
        check_count(
            "network.allow",
            network.allow.len(),
            Bounds::new(1, MAX_NETWORK_ALLOW),
            "leave network out for no network at all",
        )?;
        for (i, entry) in network.allow.iter().enumerate() {
            check_network_entry(entry).map_err(|why| {
                Violation(format!(
                    "network.allow[{i}] {} is not a host: {why}; write api.example.com, *.example.com, or either with \
                     :port",
                    quoted(entry)
                ))
            })?;
        }
    }
    check_count(
        "secrets",
        ext.secrets.len(),
        Bounds::new(0, MAX_SECRETS),
        "declare only the secrets the code uses",
    )?;
    for (i, secret) in ext.secrets.iter().enumerate() {
        if !limits::SECRET_NAME_CHARS.contains(secret.len()) || !SECRET_NAME.is_match(secret) {
            return Err(Violation(format!(
                "secrets[{i}] {} is not a secret name: use {}",
                quoted(secret),
                limits::SECRET_NAME_PATTERN
            )));
        }
        if ext.secrets[..i].contains(secret) {
            return Err(Violation(format!("secrets lists {} twice", quoted(secret))));
        }
    }
    Ok(())
}

fn check_count(field: &str, got: usize, bounds: Bounds, hint: &str) -> Result<(), Violation> {
    if bounds.contains(got) {
        Ok(())
    } else {
        Err(Violation(format!(
            "{field} must have {}..{} entries (got {got}); {hint}",
            bounds.min, bounds.max
        )))
    }
}

/// The shape of a host entry only; which hosts are allowed is the executor's policy.
fn check_network_entry(entry: &str) -> Result<(), &'static str> {
    if !NETWORK_ENTRY_CHARS.contains(entry.chars().count()) {
        return Err("it is empty or too long");
    }
    if entry.contains("://") || entry.contains('/') {
        return Err("give the host alone, without a scheme or a path");
    }
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, _)) if !host.ends_with(']') && host.contains(':') => (entry, None),
        Some((host, port)) => (host, Some(port)),
        None => (entry, None),
    };
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err("its port is not 1..65535");
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let plain = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if plain || bracketed {
        Ok(())
    } else {
        Err("it has characters a host name cannot have")
    }
}

fn check_dependencies(deps: &[Dependency]) -> Result<(), Violation> {
    if deps.len() > MAX_DEPENDENCIES {
        return Err(Violation(format!(
            "dependencies may list at most {MAX_DEPENDENCIES} packages (got {})",
            deps.len()
        )));
    }
    for (i, dep) in deps.iter().enumerate() {
        if dep.name.len() > NPM_NAME_MAX_CHARS || !NPM_NAME.is_match(&dep.name) {
            return Err(Violation(format!(
                "dependencies[{i}].name {} is not an npm package name: use lowercase letters, digits, '-', '.', \
                 '_' or '~' (not first), optionally as @scope/name, at most {NPM_NAME_MAX_CHARS} characters",
                quoted(&dep.name)
            )));
        }
        check_chars(
            &format!("dependencies[{i}].version"),
            &dep.version,
            DEPENDENCY_VERSION_CHARS,
        )
        .map_err(|Violation(msg)| Violation(format!("{msg}; give a semver range such as ^1.2.0")))?;
        if let Some(first) = deps[..i].iter().position(|d| d.name == dep.name) {
            return Err(Violation(format!(
                "dependencies[{first}] and dependencies[{i}] both name {}; list each package once",
                quoted(&dep.name)
            )));
        }
    }
    Ok(())
}

/// Lengths count characters, not bytes, as the limits are documented.
fn check_chars(field: &str, value: &str, bounds: Bounds) -> Result<(), Violation> {
    let got = value.chars().count();
    if bounds.contains(got) {
        Ok(())
    } else {
        Err(Violation(format!(
            "{field} must be {}..{} characters (got {got})",
            bounds.min, bounds.max
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00.000Z";
    const LATER: &str = "2026-01-01T00:00:01.000Z";

    fn spec() -> pb::ToolSpec {
        pb::ToolSpec {
            name: "text.upper".into(),
            title: None,
            description: "Upper-cases text".into(),
            image: Some("node:22-alpine".into()),
            timeout_ms: None,
            dependencies: vec![],
            code: "return args.text.toUpperCase();".into(),
            ..Default::default()
        }
    }

    fn refused(spec: pb::ToolSpec) -> String {
        new_tool(spec, NOW).expect_err("the spec should be refused").0
    }

    fn dep(name: &str, version: &str) -> pb::Dependency {
        pb::Dependency {
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn a_minimal_spec_gets_the_defaults() {
        let record = new_tool(spec(), NOW).unwrap();
        assert_eq!(record.timeout_ms, 30_000);
        assert!(record.enabled);
        assert_eq!(record.revision, 1);
        assert_eq!((record.created_at.as_str(), record.updated_at.as_str()), (NOW, NOW));
        assert_eq!(record.title, None);
        assert!(record.dependencies.is_empty());
    }

    #[test]
    fn names_follow_the_documented_pattern() {
        let pattern = Regex::new(limits::NAME_PATTERN).unwrap();
        let long = format!("a{}", "b".repeat(63));
        let too_long = format!("a{}", "b".repeat(64));
        for name in [
            "abc",
            "a.b",
            "A-b_c.9",
            "ab",
            "1abc",
            "_abc",
            "a b",
            "a:b",
            "ab\u{e9}c",
            "",
            &long,
            &too_long,
        ] {
            assert_eq!(check_name(name).is_ok(), pattern.is_match(name), "name {name:?}");
        }
    }

    #[test]
    fn a_colon_gets_its_own_explanation() {
        let msg = check_name("a:b").unwrap_err().0;
        assert!(msg.contains("':'") && msg.contains("2025-11-25"), "{msg}");
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        assert!(check_name("1abc").unwrap_err().0.contains("must start with a letter"));
        assert!(
            check_name("ab")
                .unwrap_err()
                .0
                .contains("name must be 3..64 characters (got 2)")
        );
        assert!(check_name("a b").unwrap_err().0.contains("contains ' '"));
        assert!(check_name("").unwrap_err().0.starts_with("name is required"));
    }

    #[test]
    fn reserved_names_are_refused() {
        for name in ["system.health", "sandbox.x", "dynamic.tool.create", "Run_Js_Ephemeral"] {
            let msg = check_name(name).unwrap_err().0;
            assert!(msg.contains("is reserved"), "{msg}");
        }
    }

    #[test]
    fn long_names_are_shortened_in_messages() {
        let msg = check_name(&format!("1{}", "x".repeat(10_000))).unwrap_err().0;
        assert!(msg.len() < 300, "{msg}");
    }

    #[test]
    fn title_is_optional_but_bounded() {
        let msg = refused(pb::ToolSpec {
            title: Some(String::new()),
            ..spec()
        });
        assert!(msg.starts_with("title must be 1..120 characters (got 0)"), "{msg}");
        let msg = refused(pb::ToolSpec {
            title: Some("t".repeat(121)),
            ..spec()
        });
        assert!(msg.starts_with("title must be 1..120 characters (got 121)"), "{msg}");
        assert!(
            new_tool(
                pb::ToolSpec {
                    title: Some("\u{e9}".repeat(120)),
                    ..spec()
                },
                NOW
            )
            .is_ok()
        );
    }

    #[test]
    fn description_is_required_and_bounded() {
        let msg = refused(pb::ToolSpec {
            description: String::new(),
            ..spec()
        });
        assert_eq!(msg, "description must be 1..4000 characters (got 0)");
        let msg = refused(pb::ToolSpec {
            description: "d".repeat(4001),
            ..spec()
        });
        assert_eq!(msg, "description must be 1..4000 characters (got 4001)");
    }

    #[test]
    fn image_is_required() {
        let msg = refused(pb::ToolSpec { image: None, ..spec() });
        assert_eq!(msg, "image must be 1..512 characters (got 0)");
    }

    #[test]
    fn timeout_is_bounded() {
        for bad in [999, 120_001] {
            let msg = refused(pb::ToolSpec {
                timeout_ms: Some(bad),
                ..spec()
            });
            assert!(
                msg.starts_with(&format!("timeoutMs must be 1000..120000 milliseconds (got {bad})")),
                "{msg}"
            );
        }
        for good in [1000, 120_000] {
            let spec = pb::ToolSpec {
                timeout_ms: Some(good),
                ..spec()
            };
            assert_eq!(new_tool(spec, NOW).unwrap().timeout_ms, good);
        }
    }

    #[test]
    fn dependencies_are_npm_names_with_versions() {
        let ok = pb::ToolSpec {
            dependencies: vec![dep("lodash", "^4.17.21"), dep("@types/node", "22")],
            ..spec()
        };
        assert_eq!(new_tool(ok, NOW).unwrap().dependencies.len(), 2);

        for bad in [
            "Lodash",
            "has space",
            ".hidden",
            "_private",
            "@scope",
            "",
            &"a".repeat(215),
        ] {
            let msg = refused(pb::ToolSpec {
                dependencies: vec![dep("ok", "1"), dep(bad, "1")],
                ..spec()
            });
            assert!(msg.starts_with("dependencies[1].name"), "{bad}: {msg}");
            assert!(msg.contains("is not an npm package name"), "{bad}: {msg}");
        }

        let msg = refused(pb::ToolSpec {
            dependencies: vec![dep("lodash", "")],
            ..spec()
        });
        assert!(
            msg.starts_with("dependencies[0].version must be 1..256 characters (got 0)"),
            "{msg}"
        );

        let msg = refused(pb::ToolSpec {
            dependencies: vec![dep("lodash", "1"), dep("lodash", "2")],
            ..spec()
        });
        assert!(
            msg.contains("dependencies[0] and dependencies[1] both name 'lodash'"),
            "{msg}"
        );

        let msg = refused(pb::ToolSpec {
            dependencies: (0..65).map(|i| dep(&format!("p{i}"), "1")).collect(),
            ..spec()
        });
        assert_eq!(msg, "dependencies may list at most 64 packages (got 65)");
    }

    #[test]
    fn code_length_counts_characters() {
        let msg = refused(pb::ToolSpec {
            code: String::new(),
            ..spec()
        });
        assert_eq!(msg, "code must be 1..200000 characters (got 0)");
        // 200 000 two-byte characters: 400 000 bytes, still within the limit.
        let record = new_tool(
            pb::ToolSpec {
                code: "\u{e9}".repeat(200_000),
                ..spec()
            },
            NOW,
        )
        .unwrap();
        assert_eq!(record.code_size_bytes(), 400_000);
        let msg = refused(pb::ToolSpec {
            code: "x".repeat(200_001),
            ..spec()
        });
        assert_eq!(msg, "code must be 1..200000 characters (got 200001)");
    }

    #[test]
    fn a_patch_bumps_the_revision_and_keeps_created_at() {
        let current = new_tool(spec(), NOW).unwrap();
        let patch = pb::ToolPatch {
            description: Some("new".into()),
            title: Some("Upper".into()),
            ..Default::default()
        };
        let next = apply_patch(&current, patch, LATER).unwrap().unwrap();
        assert_eq!(next.revision, 2);
        assert_eq!(next.description, "new");
        assert_eq!(next.title.as_deref(), Some("Upper"));
        assert_eq!((next.created_at.as_str(), next.updated_at.as_str()), (NOW, LATER));

        let cleared = pb::ToolPatch {
            clear_title: true,
            ..Default::default()
        };
        assert_eq!(apply_patch(&next, cleared, LATER).unwrap().unwrap().title, None);
    }

    #[test]
    fn a_patch_that_changes_nothing_is_no_change() {
        let current = new_tool(spec(), NOW).unwrap();
        let same = pb::ToolPatch {
            description: Some(current.description.clone()),
            ..Default::default()
        };
        assert_eq!(apply_patch(&current, same, LATER), Ok(None));
        assert_eq!(apply_patch(&current, pb::ToolPatch::default(), LATER), Ok(None));
    }

    #[test]
    fn a_patch_is_checked_like_a_spec() {
        let current = new_tool(spec(), NOW).unwrap();
        let bad = pb::ToolPatch {
            timeout_ms: Some(5),
            ..Default::default()
        };
        assert!(
            apply_patch(&current, bad, LATER)
                .unwrap_err()
                .0
                .starts_with("timeoutMs must be")
        );
        let both = pb::ToolPatch {
            title: Some("x".into()),
            clear_title: true,
            ..Default::default()
        };
        assert!(
            apply_patch(&current, both, LATER)
                .unwrap_err()
                .0
                .contains("both sets and removes title")
        );
    }

    #[test]
    fn enabling_to_the_same_value_is_no_change() {
        let current = new_tool(spec(), NOW).unwrap();
        assert_eq!(set_enabled(&current, true, LATER), None);
        let disabled = set_enabled(&current, false, LATER).unwrap();
        assert!(!disabled.enabled);
        assert_eq!(disabled.revision, 2);
        assert_eq!(disabled.updated_at, LATER);
    }

    fn with_extensions(f: impl FnOnce(&mut pb::ToolSpec)) -> Result<ToolRecord, Violation> {
        let mut spec = spec();
        f(&mut spec);
        new_tool(spec, NOW)
    }

    #[test]
    fn schemas_must_compile_and_inputs_must_be_objects() {
        let bad = with_extensions(|s| {
            s.input_schema_json = Some(r#"{"type":"object","properties":{"a":{"type":"strin"}}}"#.into())
        })
        .unwrap_err()
        .0;
        assert!(
            bad.starts_with("inputSchema is not a usable JSON Schema at /properties/a/type: "),
            "{bad}"
        );
        let not_json = with_extensions(|s| s.output_schema_json = Some("{".into()))
            .unwrap_err()
            .0;
        assert!(not_json.starts_with("outputSchema is not JSON"), "{not_json}");
        let string = with_extensions(|s| s.input_schema_json = Some(r#"{"type":"string"}"#.into()))
            .unwrap_err()
            .0;
        assert!(string.contains("must describe an object"), "{string}");
        let ok = with_extensions(|s| {
            s.input_schema_json = Some(r#"{"type":"object","required":["text"]}"#.into());
            s.output_schema_json = Some(r#"{"type":"string"}"#.into());
        })
        .unwrap();
        assert_eq!(ok.extensions.output_schema, Some(serde_json::json!({"type": "string"})));
    }

    #[test]
    fn examples_are_objects_and_capped() {
        let example = |args: &str| pb::ToolExample {
            args_json: args.into(),
            expect_json: Some("null".into()),
        };
        let ok = with_extensions(|s| s.examples = vec![example("{}")]).unwrap();
        assert_eq!(ok.extensions.examples[0].expect, Some(Value::Null));
        let msg = with_extensions(|s| s.examples = vec![example("{}"), example("[1]")])
            .unwrap_err()
            .0;
        assert!(msg.starts_with("examples[1].args must be an object"), "{msg}");
        let msg = with_extensions(|s| s.examples = vec![example("{}"); 17]).unwrap_err().0;
        assert_eq!(msg, "examples may list at most 16 entries (got 17)");
    }

    #[test]
    fn network_and_secrets_are_checked_for_shape() {
        let allow = |entries: &[&str]| {
            with_extensions(|s| {
                s.network = Some(pb::NetworkPolicy {
                    allow: entries.iter().map(|e| (*e).to_owned()).collect(),
                })
            })
        };
        assert!(allow(&["api.example.com", "*.example.org:8443", "[::1]:443", "10.0.0.1"]).is_ok());
        for bad in [
            "",
            "https://x.com",
            "x.com/path",
            "a b",
            "x.com:0",
            "x.com:99999",
            "*",
            "-x.com",
        ] {
            let msg = allow(&[bad]).unwrap_err().0;
            assert!(msg.starts_with("network.allow[0]"), "{bad}: {msg}");
        }
        assert!(
            allow(&[])
                .unwrap_err()
                .0
                .starts_with("network.allow must have 1..32 entries")
        );
        let secrets = |names: &[&str]| with_extensions(|s| s.secrets = names.iter().map(|n| (*n).to_owned()).collect());
        assert!(secrets(&["API_KEY", "T2"]).is_ok());
        assert!(secrets(&["api_key"]).unwrap_err().0.contains("is not a secret name"));
        assert!(secrets(&["A", "A"]).unwrap_err().0.contains("twice"));
        assert!(
            secrets(&vec!["A"; 17])
                .unwrap_err()
                .0
                .starts_with("secrets must have 0..16 entries")
        );
    }

    #[test]
    fn patches_set_and_clear_extensions() {
        let current = with_extensions(|s| {
            s.annotations = Some(pb::ToolAnnotations {
                read_only_hint: Some(true),
                ..Default::default()
            });
            s.input_schema_json = Some(r#"{"type":"object"}"#.into());
        })
        .unwrap();
        let patch = pb::ToolPatch {
            clear_input_schema: true,
            arguments: Some(pb::ArgumentsMode::Flat.into()),
            isolation: Some(pb::Isolation::ContainerPerTool.into()),
            secrets: Some(pb::StringList {
                items: vec!["TOKEN".into()],
            }),
            ..Default::default()
        };
        let next = apply_patch(&current, patch, LATER).unwrap().unwrap();
        assert_eq!(next.extensions.input_schema, None);
        assert_eq!(next.extensions.arguments, ArgumentsMode::Flat);
        assert_eq!(next.extensions.annotations, current.extensions.annotations);
        assert_eq!(
            changed_fields(Some(&current), &next),
            ["inputSchema", "arguments", "isolation", "secrets"]
        );
        let both = pb::ToolPatch {
            network: Some(pb::NetworkPolicy::default()),
            clear_network: true,
            ..Default::default()
        };
        assert!(
            apply_patch(&current, both, LATER)
                .unwrap_err()
                .0
                .contains("both sets and removes network")
        );
    }

    #[test]
    fn a_rollback_takes_the_old_definition_under_a_new_revision() {
        let first = new_tool(spec(), NOW).unwrap();
        let patch = pb::ToolPatch {
            code: Some("return 2;".into()),
            ..Default::default()
        };
        let second = apply_patch(&first, patch, LATER).unwrap().unwrap();
        let third = rollback(&second, &first, "2026-01-01T00:00:02.000Z").unwrap().unwrap();
        assert_eq!((third.revision, third.code.clone()), (3, first.code.clone()));
        assert_eq!(third.created_at, first.created_at);
        assert_eq!(rollback(&third, &first, LATER).unwrap(), None, "already equal");
        let restored = restore(&first, 7, LATER).unwrap();
        assert_eq!(restored.revision, 8);
        assert_eq!(recreated(first, 7).revision, 8);
    }
}
