//! The one syntax for "where may this go", shared by a tool's or session's
//! `network.allow`, the operator's ceiling (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS)
//! and each secret's hosts:
//!
//! - `api.example.com`: that host; `*.example.com`: any name below
//!   example.com (not example.com itself); `*`: any name (no IP literal).
//! - Without a port: the web ports 443 and 80. `:8443`: that port only.
//!   `:*`: any port.
//! - IP literals (`203.0.113.7`, `[2001:db8::1]:443`) and CIDRs
//!   (`203.0.113.0/24`) only where the operator allows them.
//!
//! Entries are kept in one canonical spelling (lower case, no trailing dot),
//! which is what [`Rule`]'s `Display` prints.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The ports an entry without one allows: HTTPS and HTTP.
pub const WEB_PORTS: [u16; 2] = [443, 80];

/// The longest entry accepted (a 253-character name, a port and `*.`).
const MAX_ENTRY_LEN: usize = 264;

/// Which hosts an entry covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Every name (never an IP literal).
    AnyName,
    Exact(String),
    /// Every name strictly below this domain.
    Below(String),
    Ip(IpAddr),
    Network(IpNetwork),
}

/// Which ports an entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortPattern {
    /// No port given: [`WEB_PORTS`].
    Web,
    Exact(u16),
    Any,
}

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub host: HostPattern,
    pub port: PortPattern,
}

/// An IPv4 or IPv6 network, such as `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    base: IpAddr,
    prefix: u8,
}

/// A host as a connection names it: a name or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{entry}' is not a host entry: {reason}")]
pub struct BadEntry {
    pub entry: String,
    pub reason: String,
}

impl Rule {
    /// Whether this entry names an IP address or network.
    pub fn is_ip(&self) -> bool {
        matches!(self.host, HostPattern::Ip(_) | HostPattern::Network(_))
    }

    /// Whether a connection to `target:port` matches this entry.
    pub fn matches(&self, target: &Target, port: u16) -> bool {
        self.port.matches(port) && self.host.matches(target)
    }

    /// Whether everything `other` allows, this allows too.
    pub fn covers(&self, other: &Rule) -> bool {
        self.port.covers(other.port) && self.host.covers(&other.host)
    }
}

impl HostPattern {
    fn matches(&self, target: &Target) -> bool {
        match (self, target) {
            (Self::AnyName, Target::Name(_)) => true,
            (Self::Exact(name), Target::Name(host)) => name == host,
            (Self::Below(domain), Target::Name(host)) => is_below(host, domain),
            (Self::Ip(ip), Target::Ip(host)) => ip == host,
            (Self::Network(network), Target::Ip(host)) => network.contains(*host),
            _ => false,
        }
    }

    fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (Self::AnyName, Self::AnyName | Self::Exact(_) | Self::Below(_)) => true,
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Below(domain), Self::Exact(name)) => is_below(name, domain),
            (Self::Below(domain), Self::Below(inner)) => inner == domain || is_below(inner, domain),
            (Self::Ip(a), Self::Ip(b)) => a == b,
            (Self::Network(network), Self::Ip(ip)) => network.contains(*ip),
            (Self::Network(outer), Self::Network(inner)) => outer.contains_network(inner),
            _ => false,
        }
    }
}

impl PortPattern {
    fn matches(self, port: u16) -> bool {
        match self {
            Self::Web => WEB_PORTS.contains(&port),
            Self::Exact(p) => p == port,
            Self::Any => true,
        }
    }

    fn covers(self, other: PortPattern) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (Self::Web, Self::Web) => true,
            (Self::Web, Self::Exact(p)) => WEB_PORTS.contains(&p),
            (Self::Exact(a), Self::Exact(b)) => a == b,
            _ => false,
        }
    }
}

fn is_below(name: &str, domain: &str) -> bool {
    name.len() > domain.len() + 1 && name.ends_with(domain) && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
}

impl Target {
    /// The host of a CONNECT target or Host header, canonical: lower case,
    /// without a trailing dot or IPv6 brackets.
    pub fn parse(host: &str) -> Result<Self, String> {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        check_name(&host)?;
        Ok(Self::Name(host))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl IpNetwork {
    fn new(base: IpAddr, prefix: u8) -> Result<Self, String> {
        let max = if base.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("a /{prefix} prefix is longer than {max} bits"));
        }
        let network = Self { base, prefix };
        if network.masked(base) != base {
            return Err(format!(
                "{base}/{prefix} has host bits set; the network is {}/{prefix}",
                network.masked(base)
            ));
        }
        Ok(network)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.base.is_ipv4() && self.masked(ip) == self.base
    }

    fn contains_network(&self, inner: &IpNetwork) -> bool {
        inner.prefix >= self.prefix && self.contains(inner.base)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (base, prefix) = s.split_once('/').ok_or("a network looks like 10.0.0.0/8")?;
        let base: IpAddr = base.parse().map_err(|_| format!("'{base}' is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("'/{prefix}' is not a prefix length"))?;
        Self::new(canonical(base), prefix)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are their IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl FromStr for Rule {
    type Err = BadEntry;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        parse_rule(entry).map_err(|reason| BadEntry {
            entry: entry.chars().take(MAX_ENTRY_LEN).collect(),
            reason,
        })
    }
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let text = entry.trim().to_ascii_lowercase();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.len() > MAX_ENTRY_LEN {
        return Err(format!("it is longer than {MAX_ENTRY_LEN} characters"));
    }
    if !text.is_ascii() {
        return Err("write internationalised names in their ASCII (punycode, xn--…) form".into());
    }
    if text.contains("://") || text.contains('/') && !looks_like_network(&text) {
        return Err("give a host (and port), not a URL: api.example.com or api.example.com:8443".into());
    }
    if text.contains('@') || text.chars().any(char::is_whitespace) {
        return Err("give only a host and an optional port".into());
    }
    let (host, port) = split_port(&text)?;
    let port = match port {
        None => PortPattern::Web,
        Some("*") => PortPattern::Any,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("'{p}' is not a port (1 to 65535, or * for any)")),
            Ok(p) => PortPattern::Exact(p),
        },
    };
    Ok(Rule {
        host: parse_host(host)?,
        port,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, `v6` (no port), `net/len`, `net/len:port`.
fn split_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address in brackets lacks its ']'")?;
        return match after {
            "" => Ok((inside, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((inside, Some(port))),
                None => Err("after ']' only ':port' may follow".into()),
            },
        };
    }
    match text.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address or network.
        Some((host, _)) if host.contains(':') => Ok((text, None)),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((text, None)),
    }
}

fn looks_like_network(text: &str) -> bool {
    text.split_once('/')
        .is_some_and(|(base, _)| base.trim_start_matches('[').parse::<IpAddr>().is_ok())
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    let host = host.trim_end_matches('.');
    if host == "*" {
        return Ok(HostPattern::AnyName);
    }
    if host.contains('/') {
        return host.parse::<IpNetwork>().map(HostPattern::Network);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostPattern::Ip(canonical(ip)));
    }
    if let Some(domain) = host.strip_prefix("*.") {
        check_name(domain)?;
        return Ok(HostPattern::Below(domain.to_owned()));
    }
    if host.contains('*') {
        return Err("a wildcard may only be a whole first label, as in *.example.com".into());
    }
    check_name(host)?;
    Ok(HostPattern::Exact(host.to_owned()))
}

/// DNS names as HTTP clients use them: labels of letters, digits and
/// hyphens (not at either end), 1 to 63 characters each, 253 in all.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("a host name has 1 to 253 characters".into());
    }
    for label in name.split('.') {
        let valid = (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "'{label}' is not a host name label (letters, digits and '-', 1 to 63 characters)"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("it looks like a partial IP address".into());
    }
    Ok(())
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = matches!(
            self.host,
            HostPattern::Ip(IpAddr::V6(_))
                | HostPattern::Network(IpNetwork {
                    base: IpAddr::V6(_),
                    ..
                })
        ) && self.port != PortPattern::Web;
        let host = match &self.host {
            HostPattern::AnyName => "*".to_owned(),
            HostPattern::Exact(name) => name.clone(),
            HostPattern::Below(domain) => format!("*.{domain}"),
            HostPattern::Ip(ip) => ip.to_string(),
            HostPattern::Network(network) => network.to_string(),
        };
        let host = if bracket { format!("[{host}]") } else { host };
        match self.port {
            PortPattern::Web => f.write_str(&host),
            PortPattern::Exact(p) => write!(f, "{host}:{p}"),
            PortPattern::Any => write!(f, "{host}:*"),
        }
    }
}

/// Entries as one comma-separated list, for messages.
pub fn describe(rules: &[Rule]) -> String {
    if rules.is_empty() {
        return "none".into();
    }
    rules.iter().map(Rule::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn name(s: &str) -> Target {
        Target::Name(s.into())
    }

    #[test]
    fn entries_parse_to_one_canonical_spelling() {
        for (given, canonical) in [
            ("API.Example.com", "api.example.com"),
            ("api.example.com.", "api.example.com"),
            (" *.example.com:8443 ", "*.example.com:8443"),
            ("example.com:*", "example.com:*"),
            ("*", "*"),
            ("203.0.113.7", "203.0.113.7"),
            ("203.0.113.0/24:443", "203.0.113.0/24:443"),
            ("[2001:DB8::1]:443", "[2001:db8::1]:443"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("[2001:db8::/32]:443", "[2001:db8::/32]:443"),
            ("::ffff:10.0.0.1", "10.0.0.1"),
        ] {
            assert_eq!(rule(given).to_string(), canonical, "{given}");
        }
    }

    #[test]
    fn bad_entries_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("https://api.example.com", "not a URL"),
            ("api.example.com/v1", "not a URL"),
            ("user@api.example.com", "only a host"),
            ("api.example.com:0", "not a port"),
            ("api.example.com:70000", "not a port"),
            ("api.example.com:http", "not a port"),
            ("a*.example.com", "wildcard"),
            ("*.*.example.com", "not a host name label"),
            ("api_x.example.com", "not a host name label"),
            ("-x.example.com", "not a host name label"),
            ("bücher.example", "punycode"),
            ("10.0.0.1/8", "host bits"),
            ("10.0.0.0/33", "longer than 32"),
            ("10.1", "partial IP"),
            ("[::1", "']'"),
        ] {
            let err = bad.parse::<Rule>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn names_match_exactly_or_strictly_below_a_wildcard() {
        let api = rule("api.example.com");
        assert!(api.matches(&name("api.example.com"), 443));
        assert!(api.matches(&name("api.example.com"), 80));
        assert!(!api.matches(&name("api.example.com"), 8443), "no port: web ports only");
        assert!(!api.matches(&name("x.api.example.com"), 443));
        let below = rule("*.example.com");
        assert!(below.matches(&name("a.example.com"), 443));
        assert!(below.matches(&name("a.b.example.com"), 443));
        assert!(!below.matches(&name("example.com"), 443));
        assert!(!below.matches(&name("badexample.com"), 443));
        assert!(rule("example.com:8443").matches(&name("example.com"), 8443));
        assert!(!rule("example.com:8443").matches(&name("example.com"), 443));
        assert!(rule("example.com:*").matches(&name("example.com"), 22));
        assert!(rule("*").matches(&name("anything.test"), 443));
    }

    #[test]
    fn names_never_match_ip_rules_and_back() {
        let ip = Target::parse("203.0.113.7").unwrap();
        assert!(!rule("*").matches(&ip, 443), "* is names only");
        assert!(rule("203.0.113.0/24").matches(&ip, 443));
        assert!(rule("203.0.113.7:443").matches(&ip, 443));
        assert!(!rule("203.0.113.8").matches(&ip, 443));
        let mapped = Target::parse("[::ffff:203.0.113.7]").unwrap();
        assert!(rule("203.0.113.0/24").matches(&mapped, 443));
        assert!(!rule("example.com").matches(&ip, 443));
    }

    #[test]
    fn targets_are_canonical() {
        assert_eq!(Target::parse("API.example.COM.").unwrap(), name("api.example.com"));
        assert_eq!(Target::parse("[2001:db8::1]").unwrap().to_string(), "[2001:db8::1]");
        assert!(Target::parse("bad host").is_err());
        assert!(Target::parse("").is_err());
    }

    #[test]
    fn coverage_follows_hosts_and_ports() {
        let covers = |outer: &str, inner: &str| rule(outer).covers(&rule(inner));
        assert!(covers("api.example.com", "api.example.com"));
        assert!(covers("api.example.com", "api.example.com:443"));
        assert!(!covers("api.example.com", "api.example.com:8443"));
        assert!(covers("api.example.com:*", "api.example.com:8443"));
        assert!(
            !covers("api.example.com:443", "api.example.com"),
            "the entry also allows port 80"
        );
        assert!(covers("*.example.com", "api.example.com"));
        assert!(covers("*.example.com", "*.example.com"));
        assert!(covers("*.example.com", "*.api.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("api.example.com", "*.api.example.com"));
        assert!(covers("*", "*.example.com"));
        assert!(!covers("*", "203.0.113.7"));
        assert!(covers("203.0.113.0/24", "203.0.113.7"));
        assert!(covers("203.0.0.0/16", "203.0.113.0/24"));
        assert!(!covers("203.0.113.0/24", "203.0.0.0/16"));
        assert!(!covers("api.example.com", "*"));
    }
}
