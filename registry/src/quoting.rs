//! How caller-supplied text appears in error messages.

/// A caller-supplied string for a message: quoted, and cut short so a huge
/// name cannot blow up a status header or a log line.
pub fn quoted(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("'{}…'", &text[..cut]),
        None => format!("'{text}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_cuts_long_text_on_a_char_boundary() {
        assert_eq!(quoted("abc"), "'abc'");
        let long = "\u{e9}".repeat(100);
        assert_eq!(quoted(&long), format!("'{}…'", "\u{e9}".repeat(80)));
    }
}
