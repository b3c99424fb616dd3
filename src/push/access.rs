//! The IP allow-list of a push endpoint without a signature (the outbound-result callback,
//! cec-api.md 3.1): the addresses and networks the platform pushes from.
//!
//! An entry is an address (`192.168.1.20`, `::1`) or a network in CIDR form
//! (`10.0.0.0/8`, `fd00::/8`). An IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`, as a dual-stack
//! listener reports IPv4 clients) is matched as the IPv4 address it carries. **An empty list
//! allows every address.**

use std::fmt;
use std::net::IpAddr;

/// One network: the first `prefix` bits of `addr` (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(ip.to_bits()), self.prefix, 32) == u128::from(net.to_bits())
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(ip.to_bits(), self.prefix, 128) == net.to_bits()
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `bits` (an address of `width` bits) with all but its first `prefix` bits cleared.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits & (u128::MAX << (width - prefix)) & (u128::MAX >> (128 - width))
    }
}

/// The peer address as matched: an IPv4-mapped IPv6 address becomes IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An entry of the list that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allow-list entry `{entry}`: {problem}; write an address (192.168.1.20, ::1) or a network (10.0.0.0/8, fd00::/8)")]
pub struct BadAllowListEntry {
    /// The entry as configured.
    pub entry: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The addresses allowed to push. Empty: everyone is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowList {
    networks: Vec<Network>,
}

impl IpAllowList {
    /// Reads the configured entries. A network with host bits set (`10.1.2.3/8`) is
    /// refused, since it is most likely a typo of the intended network.
    pub fn parse(entries: &[String]) -> Result<Self, BadAllowListEntry> {
        let networks = entries.iter().map(|entry| parse_entry(entry)).collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    /// Whether `ip` may push: always when the list is empty.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.is_empty() || self.networks.iter().any(|net| net.contains(ip))
    }
}

impl fmt::Display for IpAllowList {
    /// The entries in CIDR form, comma-separated, or `any` for an empty list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.networks.is_empty() {
            return f.write_str("any");
        }
        for (i, net) in self.networks.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

fn parse_entry(entry: &str) -> Result<Network, BadAllowListEntry> {
    let bad = |problem: String| BadAllowListEntry { entry: entry.to_string(), problem };
    let text = entry.trim();
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr =
        addr.parse().map_err(|_| bad(format!("`{addr}` is not an IPv4 or IPv6 address")))?;
    let addr = canonical(addr);
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => width,
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= width)
            .ok_or_else(|| bad(format!("prefix length `{prefix}` is not 0-{width}")))?,
    };
    let bits = match addr {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    };
    if masked(bits, prefix, width) != bits {
        return Err(bad(format!("host bits are set below the /{prefix} prefix")));
    }
    Ok(Network { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> IpAllowList {
        IpAllowList::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Networks and single addresses of both families match what they cover only.
    #[test]
    fn matches_networks_and_addresses() {
        let allow = list(&["10.0.0.0/8", "192.168.1.20", "::1", "fd00::/8"]);
        for yes in ["10.0.0.1", "10.255.255.255", "192.168.1.20", "::1", "fd12:3456::9"] {
            assert!(allow.allows(ip(yes)), "{yes}");
        }
        for no in ["11.0.0.1", "192.168.1.21", "127.0.0.1", "::2", "fe00::1", "9.255.255.255"] {
            assert!(!allow.allows(ip(no)), "{no}");
        }
        assert_eq!(allow.to_string(), "10.0.0.0/8, 192.168.1.20/32, ::1/128, fd00::/8");
    }

    /// IPv4-mapped IPv6 peers are matched as IPv4, and mapped entries as IPv4 too.
    #[test]
    fn ipv4_mapped_peers_match_as_ipv4() {
        let allow = list(&["10.0.0.0/8"]);
        assert!(allow.allows(ip("::ffff:10.1.2.3")));
        assert!(!allow.allows(ip("::ffff:11.1.2.3")));
        let mapped_entry = list(&["::ffff:192.168.1.20"]);
        assert!(mapped_entry.allows(ip("192.168.1.20")));
    }

    /// The empty list allows everyone; /0 allows its whole family.
    #[test]
    fn empty_list_and_zero_prefix() {
        let empty = list(&[]);
        assert!(empty.allows(ip("203.0.113.9")) && empty.allows(ip("2001:db8::1")));
        assert_eq!(empty.to_string(), "any");
        let v4 = list(&["0.0.0.0/0"]);
        assert!(v4.allows(ip("203.0.113.9")));
        assert!(!v4.allows(ip("2001:db8::1")));
    }

    /// Bad entries are refused with the entry and the fix in the message.
    #[test]
    fn bad_entries_are_named() {
        for (entry, problem) in [
            ("10.0.0.0/33", "prefix length `33` is not 0-32"),
            ("fd00::/129", "prefix length `129` is not 0-128"),
            ("10.1.2.3/8", "host bits are set"),
            ("example.com", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/x", "prefix length `x`"),
        ] {
            let err = IpAllowList::parse(&[entry.to_string()]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(entry) && text.contains(problem), "{text}");
            assert!(text.contains("10.0.0.0/8"), "{text}");
        }
    }
}
