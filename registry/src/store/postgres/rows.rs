//! How records and changes map to rows, in one place, so the queries and the
//! decoding cannot drift apart.

use std::sync::Arc;

use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use crate::change::{ChangeEvent, ChangeKind};
use crate::history::{Revision, RevisionKind};
use crate::record::{Dependency, ToolCode, ToolExtensions, ToolRecord};

/// Every column of a record but its code, in `tools` and in `tool_changes`
/// alike. Timestamps come back in the record's own format (RFC 3339, UTC,
/// milliseconds), which is also what goes in.
macro_rules! record_columns {
    () => {
        "name, title, description, image, timeout_ms, dependencies, code_size_bytes, enabled, revision, extensions, \
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created_at, \
         to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS updated_at"
    };
}
pub(super) use record_columns;

/// Reads a record; with `with_code` the row must also have a `code` column.
pub(super) fn tool_record(row: &PgRow, with_code: bool) -> Result<ToolRecord, sqlx::Error> {
    let code = if with_code {
        ToolCode::Included(row.try_get("code")?)
    } else {
        ToolCode::LeftOut {
            size_bytes: to_u64(row.try_get("code_size_bytes")?, "code_size_bytes")?,
        }
    };
    let Json(dependencies): Json<Vec<Dependency>> = row.try_get("dependencies")?;
    let Json(extensions): Json<ToolExtensions> = row.try_get("extensions")?;
    Ok(ToolRecord {
        name: row.try_get("name")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        image: row.try_get("image")?,
        timeout_ms: u32::try_from(row.try_get::<i32, _>("timeout_ms")?).map_err(decode_error("timeout_ms"))?,
        dependencies,
        code,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        revision: to_u64(row.try_get("revision")?, "revision")?,
        extensions,
    })
}

/// Columns of a `tool_revisions` row; with code, `record` keeps its code.
pub(super) const REVISION_COLUMNS: &str = "kind, actor, changed_fields, rolled_back_to, record";
pub(super) const REVISION_COLUMNS_WITHOUT_CODE: &str = "kind, actor, changed_fields, rolled_back_to, \
     record - 'code' AS record, octet_length(record->>'code') AS code_size_bytes";

/// Reads a `tool_revisions` row selected with one of the column lists above.
pub(super) fn revision(row: &PgRow, with_code: bool) -> Result<Revision, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let Json(changed_fields): Json<Vec<String>> = row.try_get("changed_fields")?;
    let Json(mut record): Json<serde_json::Value> = row.try_get("record")?;
    if !with_code {
        // Any string: the code itself is replaced below.
        record["code"] = serde_json::Value::String(String::new());
    }
    let mut tool: ToolRecord = serde_json::from_value(record).map_err(decode_error("record"))?;
    if !with_code {
        let size: Option<i32> = row.try_get("code_size_bytes")?;
        tool.code = ToolCode::LeftOut {
            size_bytes: size.map_or(0, |s| s.unsigned_abs().into()),
        };
    }
    Ok(Revision {
        kind: RevisionKind::parse(&kind)
            .ok_or_else(|| decode_error("kind")(format!("unknown revision kind '{kind}'")))?,
        actor: row.try_get("actor")?,
        changed_fields,
        rolled_back_to: row
            .try_get::<Option<i64>, _>("rolled_back_to")?
            .map(|r| to_u64(r, "rolled_back_to"))
            .transpose()?,
        tool,
    })
}

/// Reads a `tool_changes` row: its version, its kind and the tool without code.
pub(super) fn change_event(row: &PgRow) -> Result<ChangeEvent, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(ChangeEvent {
        catalog_version: to_u64(row.try_get("catalog_version")?, "catalog_version")?,
        kind: kind_from_name(&kind)?,
        tool: Arc::new(tool_record(row, false)?),
    })
}

pub(super) fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Created => "created",
        ChangeKind::Updated => "updated",
        ChangeKind::Deleted => "deleted",
        ChangeKind::Enabled => "enabled",
        ChangeKind::Disabled => "disabled",
    }
}

fn kind_from_name(name: &str) -> Result<ChangeKind, sqlx::Error> {
    Ok(match name {
        "created" => ChangeKind::Created,
        "updated" => ChangeKind::Updated,
        "deleted" => ChangeKind::Deleted,
        "enabled" => ChangeKind::Enabled,
        "disabled" => ChangeKind::Disabled,
        other => {
            return Err(decode_error("kind")(format!("unknown change kind '{other}'")));
        }
    })
}

/// The code to store; records from `rules` always carry it.
pub(super) fn code_to_store(tool: &ToolRecord) -> Result<&str, sqlx::Error> {
    match &tool.code {
        ToolCode::Included(code) => Ok(code),
        ToolCode::LeftOut { .. } => Err(sqlx::Error::Encode(
            "a tool record without its code cannot be stored".into(),
        )),
    }
}

pub(super) fn to_u64(value: i64, column: &str) -> Result<u64, sqlx::Error> {
    u64::try_from(value).map_err(decode_error(column))
}

/// PostgreSQL has no unsigned integers; versions and revisions never come near `i64::MAX`.
pub(super) fn to_i64(value: u64) -> Result<i64, sqlx::Error> {
    i64::try_from(value).map_err(|err| sqlx::Error::Encode(Box::new(err)))
}

pub(super) fn to_i32(value: u32) -> Result<i32, sqlx::Error> {
    i32::try_from(value).map_err(|err| sqlx::Error::Encode(Box::new(err)))
}

fn decode_error<E>(column: &str) -> impl FnOnce(E) -> sqlx::Error
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let index = column.to_owned();
    move |err| sqlx::Error::ColumnDecode {
        index,
        source: err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_kinds_round_trip_through_their_names() {
        for kind in [
            ChangeKind::Created,
            ChangeKind::Updated,
            ChangeKind::Deleted,
            ChangeKind::Enabled,
            ChangeKind::Disabled,
        ] {
            assert_eq!(kind_from_name(kind_name(kind)).unwrap(), kind);
        }
        assert!(kind_from_name("renamed").is_err());
    }

    #[test]
    fn negative_numbers_are_refused_as_unreadable() {
        assert_eq!(to_u64(7, "revision").unwrap(), 7);
        let err = to_u64(-1, "revision").unwrap_err();
        assert!(err.to_string().contains("revision"), "{err}");
    }
}
