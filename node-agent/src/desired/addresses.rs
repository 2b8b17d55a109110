//! Address parsing shared by the ipcache and endpoint tables.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses `10.0.0.0/8`, `fd00::/64` or a bare address (a host prefix), and
/// zeroes the host bits so equal prefixes compare equal.
pub fn parse_prefix(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is not an IP address or CIDR"))
}

/// Parses an endpoint address: a bare address or a host prefix (/32, /128).
pub fn parse_host_address(text: &str) -> Result<IpAddr, String> {
    let net = parse_prefix(text)?;
    if net.prefix_len() != net.max_prefix_len() {
        return Err(format!(
            "{text:?} is a range; an endpoint address is one address"
        ));
    }
    Ok(net.addr())
}

/// The 16 address bytes of an endpoint key: IPv4 in the first 4.
pub fn address_bytes(addr: IpAddr) -> (u8, [u8; 16]) {
    let mut bytes = [0u8; 16];
    match addr {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (crate::layout::FAMILY_V4, bytes)
        }
        IpAddr::V6(v6) => (crate::layout::FAMILY_V6, v6.octets()),
    }
}
