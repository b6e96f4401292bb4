//! What a dynamic tool may look like, and how specs and patches become
//! records. Pure functions: no I/O, no clock (callers pass `now`).

use std::sync::LazyLock;

use dynamic_mcp_common::tool_names::reserved_reason;
use dynamic_mcp_proto::v1 as pb;
use regex::Regex;

use crate::error::quoted;
use crate::record::{Dependency, ToolCode, ToolRecord};

pub const NAME_CHARS: (usize, usize) = (3, 64);
pub const TITLE_CHARS: (usize, usize) = (1, 120);
pub const DESCRIPTION_CHARS: (usize, usize) = (1, 4000);
pub const IMAGE_CHARS: (usize, usize) = (1, 512);
pub const CODE_CHARS: (usize, usize) = (1, 200_000);
pub const TIMEOUT_MS: (u32, u32) = (1000, 120_000);
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;
pub const MAX_DEPENDENCIES: usize = 64;
pub const NPM_NAME_MAX_CHARS: usize = 214;
pub const DEPENDENCY_VERSION_CHARS: (usize, usize) = (1, 256);

/// npm's rules for new package names: lowercase, URL-safe, optionally scoped,
/// not starting with '.' or '_'. Whether a version range is acceptable is the
/// executor's policy, not ours.
static NPM_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]*$").expect("the npm name pattern compiles")
});

/// Why a tool spec or patch was refused; the text names the field and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

/// Builds revision 1 of a tool from a create request, filling in defaults.
pub fn new_tool(spec: pb::ToolSpec, now: &str) -> Result<ToolRecord, Violation> {
    check_name(&spec.name)?;
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
    };
    check_fields(&record)?;
    Ok(record)
}

/// The next revision of `current` with `patch` applied, or `None` when the
/// patch changes nothing (so no revision, no event).
pub fn apply_patch(current: &ToolRecord, patch: pb::ToolPatch, now: &str) -> Result<Option<ToolRecord>, Violation> {
    if patch.clear_title && patch.title.is_some() {
        return Err(Violation(
            "patch sets both title and clearTitle: set title to change it, or clearTitle to remove it".into(),
        ));
    }
    let mut next = current.clone();
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

fn revised(mut record: ToolRecord, now: &str) -> ToolRecord {
    record.revision += 1;
    now.clone_into(&mut record.updated_at);
    record
}

/// Tool names follow `^[a-zA-Z][a-zA-Z0-9._-]{2,63}$` and must not collide with
/// built-ins. Checked piece by piece so the message can say what is wrong.
pub fn check_name(name: &str) -> Result<(), Violation> {
    let allowed = "a tool name is 3..64 characters: a letter, then letters, digits, '.', '_' or '-'";
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
    let (min, max) = TIMEOUT_MS;
    if !(min..=max).contains(&record.timeout_ms) {
        return Err(Violation(format!(
            "timeoutMs must be {min}..{max} milliseconds (got {}); leave it out for {DEFAULT_TIMEOUT_MS}",
            record.timeout_ms
        )));
    }
    check_dependencies(&record.dependencies)?;
    match &record.code {
        ToolCode::Included(code) => check_chars("code", code, CODE_CHARS),
        // Only records read back from a store lack their code, and it was checked on the way in.
        ToolCode::LeftOut { .. } => Ok(()),
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
fn check_chars(field: &str, value: &str, (min, max): (usize, usize)) -> Result<(), Violation> {
    let got = value.chars().count();
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(Violation(format!(
            "{field} must be {min}..{max} characters (got {got})"
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
            enabled: None,
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
        let pattern = Regex::new(r"^[a-zA-Z][a-zA-Z0-9._-]{2,63}$").unwrap();
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
                .contains("both title and clearTitle")
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
}
