//! The typed values of the executor's settings, each checked as it is
//! parsed: sizes, the sandbox user, lists, names and paths. `config.rs`
//! reads settings into them; the container profile and the harness use the
//! types without depending on the configuration.

use std::fmt;
use std::str::FromStr;

use dynamic_mcp_common::limits;

pub(crate) fn parse_max_dependencies(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= limits::MAX_DEPENDENCIES => Ok(n),
        _ => Err(format!(
            "give 0..{} (tools may declare at most that many)",
            limits::MAX_DEPENDENCIES
        )),
    }
}

/// A non-empty, comma-separated list of exact image references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageList(pub Vec<String>);

impl FromStr for ImageList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let images = split_list(s);
        if images.is_empty() {
            return Err("list at least one image, e.g. dynamic-mcp-sandbox:latest".into());
        }
        if let Some(bad) = images.iter().find(|i| i.chars().any(char::is_whitespace)) {
            return Err(format!("'{bad}' is not an image reference (it contains whitespace)"));
        }
        Ok(Self(images))
    }
}

/// A comma-separated list of names; may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

impl FromStr for NameList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(split_list(s)))
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// A docker-style size such as `512m`, kept with its spelling for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteSize {
    pub bytes: u64,
    text: String,
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_lowercase();
        let bad = || format!("'{s}' is not a size: use a number with an optional unit b, k, m or g (e.g. 512m)");
        let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(digits_end);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let shift = match unit.strip_suffix('b').filter(|u| !u.is_empty()).unwrap_or(unit) {
            "" | "b" => 0,
            "k" => 10,
            "m" => 20,
            "g" => 30,
            _ => return Err(bad()),
        };
        let bytes = number.checked_mul(1 << shift).ok_or_else(bad)?;
        if bytes == 0 {
            return Err(format!("'{s}' is zero; give a size above zero"));
        }
        Ok(Self { bytes, text })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Node needs about 40 MB just to start; below 32m every run would fail.
pub(crate) fn parse_memory(s: &str) -> Result<ByteSize, String> {
    let size: ByteSize = s.parse()?;
    if size.bytes < 32 << 20 {
        return Err(format!("'{s}' is too little memory for Node; use at least 32m"));
    }
    Ok(size)
}

pub(crate) fn parse_executor_id(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(s.to_owned())
    } else {
        Err("use 1 to 64 characters from A-Z, a-z, 0-9, '-', '_' and '.'".into())
    }
}

/// Docker's rule for volume and network names.
pub(crate) fn parse_docker_name(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 128;
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not a Docker name: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        ))
    }
}

pub(crate) fn parse_registry(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !s.chars().any(char::is_whitespace) => Ok(s.to_owned()),
        _ => Err("use an http:// or https:// URL, e.g. https://registry.npmjs.org/".into()),
    }
}

/// Docker bind mounts need an absolute path.
pub(crate) fn parse_host_path(s: &str) -> Result<String, String> {
    if s.starts_with('/') && !s.contains(',') {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not an absolute path on the Docker host, e.g. /etc/ssl/certs/ca-certificates.crt"
        ))
    }
}

pub(crate) fn parse_cpus(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(cpus) if cpus.is_finite() && cpus >= 0.01 => Ok(cpus),
        _ => Err(format!(
            "'{s}' is not a CPU count: use a number of at least 0.01 (e.g. 1 or 0.5)"
        )),
    }
}

/// The numeric, non-root identity code runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUser {
    pub uid: u32,
    pub gid: u32,
}

impl FromStr for SandboxUser {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let numeric = |part: &str| part.trim().parse::<u32>().ok();
        let parsed = s.split_once(':').and_then(|(u, g)| Some((numeric(u)?, numeric(g)?)));
        let Some((uid, gid)) = parsed else {
            return Err(format!(
                "'{s}' is not a numeric uid:gid (e.g. 65534:65534); names are not accepted because images \
                 define them differently"
            ));
        };
        if uid == 0 || gid == 0 {
            return Err(format!(
                "'{s}' is root; code must run as a non-root user such as 65534:65534"
            ));
        }
        Ok(Self { uid, gid })
    }
}

impl fmt::Display for SandboxUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_docker_style() {
        assert_eq!("512m".parse::<ByteSize>().unwrap().bytes, 512 << 20);
        assert_eq!("1G".parse::<ByteSize>().unwrap().bytes, 1 << 30);
        assert_eq!("64kb".parse::<ByteSize>().unwrap().bytes, 64 << 10);
        assert_eq!("100".parse::<ByteSize>().unwrap().bytes, 100);
        assert_eq!("100b".parse::<ByteSize>().unwrap().bytes, 100);
        for bad in ["", "m", "12x", "1.5g", "-1m", "0", "99999999999999g"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad} should be refused");
        }
    }
}
