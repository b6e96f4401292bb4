//! Secret-looking values never reach the audit file: any key that names a
//! token, password, secret, authorization, cookie or API key — in any case,
//! with `_`, `-` or spaces, at any depth — has its value replaced.

use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

/// Words that mark a key as secret, compared after lower-casing the key and
/// dropping everything but letters and digits (so `api_key`, `API Key` and
/// `apiKey` all read `apikey`).
const SECRET_WORDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "cookie",
    "apikey",
    "privatekey",
    "credential",
];

pub fn is_secret_key(key: &str) -> bool {
    let folded: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_WORDS.iter().any(|word| folded.contains(word))
}

/// Replaces the values of secret keys, recursively.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if is_secret_key(key) {
                    *item = Value::String(REDACTED.to_owned());
                } else {
                    redact(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_keys_are_redacted_at_any_depth() {
        let mut value = json!({
            "adminToken": "a", "Password": "b", "client_secret": "c", "Authorization": "d",
            "set-cookie": "e", "api key": "f", "api_key": "g", "apiKey": "h", "X-API-KEY": "i",
            "nested": {"list": [{"refresh_token": "j", "name": "keep"}], "count": 3},
            "name": "keep"
        });
        redact(&mut value);
        assert_eq!(
            value,
            json!({
                "adminToken": REDACTED, "Password": REDACTED, "client_secret": REDACTED,
                "Authorization": REDACTED, "set-cookie": REDACTED, "api key": REDACTED,
                "api_key": REDACTED, "apiKey": REDACTED, "X-API-KEY": REDACTED,
                "nested": {"list": [{"refresh_token": REDACTED, "name": "keep"}], "count": 3},
                "name": "keep"
            })
        );
    }

    #[test]
    fn ordinary_keys_are_kept() {
        for key in ["name", "revision", "durationMs", "outcome", "keyboard", "api"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
