//! (being written) The IP allow-list of the outbound-result callback.

use std::net::IpAddr;

/// Peers allowed to push.
#[derive(Debug, Clone, Default)]
pub struct IpAllowList(Vec<IpAddr>);

impl IpAllowList {
    /// Parses addresses.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| e.parse().map_err(|_| format!("'{e}' is not an address")))
            .collect::<Result<_, _>>()
            .map(Self)
    }
    /// Whether `ip` may push (an empty list allows everyone).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.0.contains(&ip)
    }
}
