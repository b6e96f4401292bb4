//! Where the proxy never connects: addresses inside the executor's world.
//! The proxy resolves every name itself and connects only to an address it
//! checked here, so a name that resolves (or re-resolves, DNS rebinding) to
//! loopback, link-local, a private range or one of the executor's own
//! networks is refused — unless the operator lists that network in
//! MCP_SANDBOX_EGRESS_ALLOWED_NETWORKS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use nix::ifaddrs::getifaddrs;

use super::allow_list::{IpNetwork, canonical};

/// How long one name lookup may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an address is off limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    Unspecified,
    Loopback,
    LinkLocal,
    Private,
    Multicast,
    /// An address of a network one of the executor's interfaces is on.
    OwnNetwork,
}

impl Internal {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::LinkLocal => "a link-local address (such as a cloud metadata service)",
            Self::Private => "a private-network address",
            Self::Multicast => "a multicast or broadcast address",
            Self::OwnNetwork => "an address on one of the executor's own networks",
        }
    }
}

/// The addresses the proxy may connect to.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Exempt from every check below (the operator's choice).
    allowed: Vec<IpNetwork>,
    /// Names the operator pinned to addresses instead of DNS; checked all the same.
    pinned: Vec<(String, IpAddr)>,
}

/// Why no address of a name could be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The name did not resolve (or not in time).
    Unresolvable(String),
    /// Every address it resolved to is internal; the first one says why.
    Internal { ip: IpAddr, why: Internal },
}

impl AddressPolicy {
    pub fn new(allowed: Vec<IpNetwork>, pinned: Vec<(String, IpAddr)>) -> Self {
        Self { allowed, pinned }
    }

    /// `None` when the proxy may connect to `ip`.
    pub fn refusal(&self, ip: IpAddr) -> Option<Internal> {
        let ip = canonical(ip);
        if self.allowed.iter().any(|network| network.contains(ip)) {
            return None;
        }
        special(ip).or_else(|| on_own_network(ip).then_some(Internal::OwnNetwork))
    }

    /// The usable addresses of `host:port`, in the resolver's order. An IP
    /// literal is checked as it is.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Unusable> {
        let pinned: Vec<SocketAddr> = self
            .pinned
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(host))
            .map(|(_, ip)| SocketAddr::new(*ip, port))
            .collect();
        let found: Vec<SocketAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) if !pinned.is_empty() => pinned,
            Err(_) => match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(e)) => return Err(Unusable::Unresolvable(e.to_string())),
                Err(_) => {
                    return Err(Unusable::Unresolvable(format!(
                        "no answer within {} s",
                        RESOLVE_TIMEOUT.as_secs()
                    )));
                }
            },
        };
        let mut first_refusal = None;
        let usable: Vec<SocketAddr> = found
            .into_iter()
            .filter(|addr| match self.refusal(addr.ip()) {
                None => true,
                Some(why) => {
                    first_refusal.get_or_insert((addr.ip(), why));
                    false
                }
            })
            .collect();
        match (usable.is_empty(), first_refusal) {
            (false, _) => Ok(usable),
            (true, Some((ip, why))) => Err(Unusable::Internal { ip, why }),
            (true, None) => Err(Unusable::Unresolvable("the name has no addresses".into())),
        }
    }
}

/// Ranges that are internal wherever the executor runs.
fn special(ip: IpAddr) -> Option<Internal> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<Internal> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some(Internal::Unspecified)
    } else if ip.is_loopback() {
        Some(Internal::Loopback)
    } else if ip.is_link_local() {
        Some(Internal::LinkLocal)
    // RFC 1918, and the carrier-grade NAT range 100.64.0.0/10.
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some(Internal::Private)
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some(Internal::Multicast)
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<Internal> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some(Internal::Unspecified)
    } else if ip.is_loopback() {
        Some(Internal::Loopback)
    // fe80::/10 link-local, fec0::/10 the old site-local.
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        Some(Internal::LinkLocal)
    // fc00::/7 unique local.
    } else if first & 0xfe00 == 0xfc00 {
        Some(Internal::Private)
    } else if ip.is_multicast() {
        Some(Internal::Multicast)
    // NAT64 (64:ff9b::/96) reaches whatever IPv4 address it embeds.
    } else if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = ip.segments();
        special_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
    } else {
        None
    }
}

/// Whether `ip` is on a network one of the executor's interfaces is on,
/// read afresh each time: Docker adds bridges while the executor runs.
fn on_own_network(ip: IpAddr) -> bool {
    let Ok(interfaces) = getifaddrs() else {
        // Unknown: refuse nothing more than the fixed ranges already do.
        return false;
    };
    interfaces.into_iter().any(|interface| {
        let (Some(address), Some(netmask)) = (interface.address, interface.netmask) else {
            return false;
        };
        let network = match (address.as_sockaddr_in(), netmask.as_sockaddr_in()) {
            (Some(address), Some(mask)) => Some((IpAddr::V4(address.ip()), u32::from(mask.ip()).count_ones())),
            _ => match (address.as_sockaddr_in6(), netmask.as_sockaddr_in6()) {
                (Some(address), Some(mask)) => Some((IpAddr::V6(address.ip()), u128::from(mask.ip()).count_ones())),
                _ => None,
            },
        };
        network.is_some_and(|(address, prefix)| same_network(address, ip, prefix))
    })
}

fn same_network(a: IpAddr, b: IpAddr, prefix: u32) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused() {
        let policy = AddressPolicy::default();
        for (address, why) in [
            ("0.0.0.0", Internal::Unspecified),
            ("127.0.0.1", Internal::Loopback),
            ("127.9.9.9", Internal::Loopback),
            ("169.254.169.254", Internal::LinkLocal),
            ("10.1.2.3", Internal::Private),
            ("172.17.0.1", Internal::Private),
            ("192.168.1.1", Internal::Private),
            ("100.100.100.200", Internal::Private),
            ("224.0.0.1", Internal::Multicast),
            ("255.255.255.255", Internal::Multicast),
            ("::", Internal::Unspecified),
            ("::1", Internal::Loopback),
            ("fe80::1", Internal::LinkLocal),
            ("fd00::1", Internal::Private),
            ("ff02::1", Internal::Multicast),
            ("::ffff:127.0.0.1", Internal::Loopback),
            ("64:ff9b::a9fe:a9fe", Internal::LinkLocal),
        ] {
            assert_eq!(policy.refusal(ip(address)), Some(why), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass_and_allowed_networks_are_exempt() {
        let policy = AddressPolicy::default();
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(policy.refusal(ip(public)), None, "{public}");
        }
        let policy = AddressPolicy::new(vec!["172.30.0.0/16".parse().unwrap()], Vec::new());
        assert_eq!(policy.refusal(ip("172.30.1.2")), None);
        assert_eq!(policy.refusal(ip("172.31.1.2")), Some(Internal::Private));
    }

    #[test]
    fn the_executors_own_loopback_network_counts_as_its_own() {
        assert!(on_own_network(ip("127.0.0.2")));
        assert!(same_network(ip("192.0.2.2"), ip("192.0.2.200"), 24));
        assert!(!same_network(ip("192.0.2.2"), ip("192.0.3.2"), 24));
    }

    #[tokio::test]
    async fn resolution_keeps_only_usable_addresses() {
        let policy = AddressPolicy::default();
        assert!(matches!(
            policy.resolve("localhost", 443).await,
            Err(Unusable::Internal {
                why: Internal::Loopback,
                ..
            })
        ));
        assert!(matches!(
            policy.resolve("[::1]", 443).await,
            Err(Unusable::Internal {
                why: Internal::Loopback,
                ..
            })
        ));
        assert_eq!(
            policy.resolve("203.0.113.9", 443).await.unwrap(),
            vec!["203.0.113.9:443".parse().unwrap()]
        );
        assert!(matches!(
            policy.resolve("name.invalid", 443).await,
            Err(Unusable::Unresolvable(_))
        ));
    }

    #[tokio::test]
    async fn pinned_names_skip_dns_but_not_the_checks() {
        let policy = AddressPolicy::new(
            vec!["172.30.0.0/16".parse().unwrap()],
            vec![
                ("api.internal.test".into(), ip("172.30.0.2")),
                ("rebound.test".into(), ip("127.0.0.1")),
            ],
        );
        assert_eq!(
            policy.resolve("API.internal.test", 443).await.unwrap(),
            vec!["172.30.0.2:443".parse().unwrap()]
        );
        assert!(matches!(
            policy.resolve("rebound.test", 443).await,
            Err(Unusable::Internal {
                why: Internal::Loopback,
                ..
            })
        ));
    }
}
