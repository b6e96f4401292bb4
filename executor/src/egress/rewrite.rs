//! Secrets in and out of intercepted traffic:
//!
//! - `inject`: in a request, each placeholder becomes its secret's value
//!   when the request goes to one of that secret's hosts, and stays as it is
//!   (and is reported as withheld) otherwise. Basic credentials are decoded
//!   first, so a placeholder inside them is found too.
//! - [`Redactor`]: in a response, every secret value of the run becomes its
//!   placeholder again, across chunk boundaries, before the code sees it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

use super::allow_list::Target;
use super::secrets::RunSecret;

/// What injection did to one request, by secret name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Injection {
    pub injected: Vec<String>,
    pub withheld: Vec<String>,
}

impl Injection {
    fn note(&mut self, secret: &RunSecret, allowed: bool) {
        let list = if allowed {
            &mut self.injected
        } else {
            &mut self.withheld
        };
        if !list.contains(&secret.secret.name) {
            list.push(secret.secret.name.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.injected.is_empty() && self.withheld.is_empty()
    }
}

/// The secrets of one run, seen from one destination.
pub struct Injector<'a> {
    secrets: &'a [RunSecret],
    /// `None`: nowhere may get a value (plain HTTP); only report.
    destination: Option<(&'a Target, u16)>,
}

impl<'a> Injector<'a> {
    pub fn new(secrets: &'a [RunSecret], target: &'a Target, port: u16) -> Self {
        Self {
            secrets,
            destination: Some((target, port)),
        }
    }

    /// Replaces nothing; reports every placeholder as withheld.
    pub fn watching(secrets: &'a [RunSecret]) -> Self {
        Self {
            secrets,
            destination: None,
        }
    }

    /// `bytes` with the placeholders of the secrets allowed here replaced.
    pub fn inject(&self, bytes: &[u8], report: &mut Injection) -> Option<Vec<u8>> {
        let mut changed: Option<Vec<u8>> = None;
        for secret in self.secrets {
            let current = changed.as_deref().unwrap_or(bytes);
            let placeholder = secret.placeholder.as_bytes();
            if find(current, placeholder).is_none() {
                continue;
            }
            let allowed = self
                .destination
                .is_some_and(|(target, port)| secret.secret.allowed_for(target, port));
            report.note(secret, allowed);
            if allowed {
                changed = Some(replace_all(current, placeholder, secret.secret.value()));
            }
        }
        changed
    }

    /// A header value, looking inside `Basic` credentials too.
    pub fn inject_header(&self, value: &[u8], report: &mut Injection) -> Option<Vec<u8>> {
        if let Some(encoded) = strip_prefix_ignore_case(value, b"basic ")
            && let Ok(decoded) = STANDARD.decode(encoded.trim_ascii())
            && let Some(injected) = self.inject(&decoded, report)
        {
            let mut header = value[..value.len() - encoded.len()].to_vec();
            header.extend_from_slice(STANDARD.encode(injected).as_bytes());
            return Some(header);
        }
        self.inject(value, report)
    }
}

/// Replaces every secret value of a run with its placeholder in a stream,
/// holding back only what could be the start of a value.
pub struct Redactor {
    /// (value, placeholder), longest value first, so the longest wins at a tie.
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    held: Vec<u8>,
    longest: usize,
}

impl Redactor {
    pub fn new(secrets: &[RunSecret]) -> Self {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = secrets
            .iter()
            .map(|s| (s.secret.value().to_vec(), s.placeholder.as_bytes().to_vec()))
            .collect();
        pairs.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        let longest = pairs.first().map_or(0, |(value, _)| value.len());
        Self {
            pairs,
            held: Vec::new(),
            longest,
        }
    }

    /// Redacts `chunk`; what might continue into the next chunk is held back.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.pairs.is_empty() {
            return Bytes::copy_from_slice(chunk);
        }
        let mut buffer = std::mem::take(&mut self.held);
        buffer.extend_from_slice(chunk);
        let safe = buffer.len().saturating_sub(self.longest - 1);
        let (out, rest) = self.redact_until(&buffer, safe);
        self.held = buffer[rest..].to_vec();
        out.into()
    }

    /// Everything still held back, redacted: the stream ended.
    pub fn finish(&mut self) -> Bytes {
        let buffer = std::mem::take(&mut self.held);
        let (out, _) = self.redact_until(&buffer, buffer.len());
        out.into()
    }

    /// Redacts matches that start before `safe`; returns the output and
    /// where the unprocessed rest of `buffer` begins.
    fn redact_until(&self, buffer: &[u8], safe: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(buffer.len());
        let mut cursor = 0;
        while cursor < safe {
            let next = self
                .pairs
                .iter()
                .filter_map(|(value, placeholder)| {
                    find(&buffer[cursor..], value).map(|at| (cursor + at, value.len(), placeholder))
                })
                .min_by_key(|(at, len, _)| (*at, std::cmp::Reverse(*len)));
            match next {
                Some((at, len, placeholder)) if at < safe => {
                    out.extend_from_slice(&buffer[cursor..at]);
                    out.extend_from_slice(placeholder);
                    cursor = at + len;
                }
                _ => break,
            }
        }
        let end = safe.max(cursor);
        out.extend_from_slice(&buffer[cursor..end]);
        (out, end)
    }
}

/// Replaces every secret value with its placeholder in a whole text.
pub fn redact_text(text: &str, secrets: &[RunSecret]) -> Option<String> {
    if !secrets
        .iter()
        .any(|s| find(text.as_bytes(), s.secret.value()).is_some())
    {
        return None;
    }
    let mut redactor = Redactor::new(secrets);
    let mut out = redactor.push(text.as_bytes()).to_vec();
    out.extend_from_slice(&redactor.finish());
    Some(String::from_utf8_lossy(&out).into_owned())
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = find(rest, needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn strip_prefix_ignore_case<'b>(value: &'b [u8], prefix: &[u8]) -> Option<&'b [u8]> {
    (value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &value[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::secrets::SecretStore;

    fn run_secrets() -> Vec<RunSecret> {
        let store = SecretStore::parse(
            r#"{"secrets": [
                {"name": "KEY", "value": "VALUE-of-key", "hosts": ["api.example.com"]},
                {"name": "LONGER", "value": "VALUE-of-key-and-more", "hosts": ["other.example.com"]}
            ]}"#,
            false,
        )
        .unwrap();
        ["KEY", "LONGER"]
            .iter()
            .map(|n| RunSecret::new(std::sync::Arc::clone(store.get(n).unwrap())))
            .collect()
    }

    #[test]
    fn placeholders_become_values_only_on_their_hosts() {
        let secrets = run_secrets();
        let (key, longer) = (&secrets[0].placeholder, &secrets[1].placeholder);
        let body = format!(r#"{{"a":"{key}","b":"{longer}","c":"{key}"}}"#);
        let api = Target::Name("api.example.com".into());
        let mut report = Injection::default();
        let injected = Injector::new(&secrets, &api, 443)
            .inject(body.as_bytes(), &mut report)
            .unwrap();
        assert_eq!(
            String::from_utf8(injected).unwrap(),
            format!(r#"{{"a":"VALUE-of-key","b":"{longer}","c":"VALUE-of-key"}}"#)
        );
        assert_eq!(report.injected, ["KEY"]);
        assert_eq!(report.withheld, ["LONGER"]);

        let elsewhere = Target::Name("evil.example.net".into());
        let mut report = Injection::default();
        assert_eq!(
            Injector::new(&secrets, &elsewhere, 443).inject(body.as_bytes(), &mut report),
            None
        );
        assert_eq!(report.withheld, ["KEY", "LONGER"]);
        let mut report = Injection::default();
        assert_eq!(
            Injector::new(&secrets, &api, 443).inject(b"nothing here", &mut report),
            None
        );
        assert!(report.is_empty());
        let mut report = Injection::default();
        assert_eq!(Injector::watching(&secrets).inject(body.as_bytes(), &mut report), None);
        assert_eq!(report.withheld, ["KEY", "LONGER"]);
    }

    #[test]
    fn basic_credentials_are_looked_into() {
        let secrets = run_secrets();
        let api = Target::Name("api.example.com".into());
        let header = format!("Basic {}", STANDARD.encode(format!("user:{}", secrets[0].placeholder)));
        let mut report = Injection::default();
        let injected = Injector::new(&secrets, &api, 443)
            .inject_header(header.as_bytes(), &mut report)
            .unwrap();
        assert_eq!(
            String::from_utf8(injected).unwrap(),
            format!("Basic {}", STANDARD.encode("user:VALUE-of-key"))
        );
        let bearer = format!("Bearer {}", secrets[0].placeholder);
        let injected = Injector::new(&secrets, &api, 443)
            .inject_header(bearer.as_bytes(), &mut report)
            .unwrap();
        assert_eq!(injected, b"Bearer VALUE-of-key");
    }

    #[test]
    fn redaction_works_across_every_chunk_boundary() {
        let secrets = run_secrets();
        let (key, longer) = (&secrets[0].placeholder, &secrets[1].placeholder);
        let whole = b"x VALUE-of-key y VALUE-of-key-and-more z VALUE-of-ke";
        let expected = format!("x {key} y {longer} z VALUE-of-ke");
        for a in 0..=whole.len() {
            for b in a..=whole.len() {
                let mut redactor = Redactor::new(&secrets);
                let mut out = Vec::new();
                for part in [&whole[..a], &whole[a..b], &whole[b..]] {
                    out.extend_from_slice(&redactor.push(part));
                }
                out.extend_from_slice(&redactor.finish());
                assert_eq!(String::from_utf8(out).unwrap(), expected, "cuts at {a},{b}");
            }
        }
    }

    #[test]
    fn whole_texts_are_redacted_only_when_needed() {
        let secrets = run_secrets();
        assert_eq!(redact_text("clean", &secrets), None);
        assert_eq!(
            redact_text("leak: VALUE-of-key", &secrets).unwrap(),
            format!("leak: {}", secrets[0].placeholder)
        );
        let mut none = Redactor::new(&[]);
        assert_eq!(&none.push(b"abc")[..], b"abc");
    }
}
