//! Who the client is: the peer address, or behind a trusted reverse proxy the address it
//! names in `X-Forwarded-For` (`[http] trusted_proxies`). The console's sign-in limit counts
//! failures per client; behind a proxy every request's peer is the proxy itself.

use std::net::IpAddr;

use ipnet::IpNet;

/// An address (`10.0.0.1`) or a range (`10.0.0.0/8`).
pub fn parse_proxy(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client's address. A peer that is not a trusted proxy is the client, whatever its
/// headers say (anyone can send `X-Forwarded-For`). From a trusted proxy, the header is read
/// from the right (each proxy appends the address it saw): the first address that is not a
/// trusted proxy is the client; unreadable entries stop the walk at the last trusted hop.
pub fn client_address(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = forwarded_for.iter().rev().flat_map(|h| h.rsplit(',')).map(str::trim);
    let mut client = peer;
    for hop in hops {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| parse_proxy(s).unwrap()).collect()
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_nobody_else_does() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let trusted = nets(&["127.0.0.1", "10.0.0.0/8"]);
        // Behind the proxy: the address it appended.
        assert_eq!(client_address(proxy, &["203.0.113.7"], &trusted), "203.0.113.7".parse::<IpAddr>().unwrap());
        // A client's own forged entry is left of the one the proxy appended.
        assert_eq!(
            client_address(proxy, &["198.51.100.1, 203.0.113.7"], &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Two trusted hops (an inner proxy at 10.1.2.3), and the header split over two lines.
        assert_eq!(
            client_address(proxy, &["203.0.113.7", "10.1.2.3"], &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Not from a trusted proxy: the header is ignored.
        let stranger: IpAddr = "192.0.2.50".parse().unwrap();
        assert_eq!(client_address(stranger, &["203.0.113.7"], &trusted), stranger);
        // No proxy configured: the peer.
        assert_eq!(client_address(proxy, &["203.0.113.7"], &[]), proxy);
        // Garbage: the last trusted hop, never a made-up address.
        assert_eq!(client_address(proxy, &["not-an-ip"], &trusted), proxy);
        assert!(parse_proxy("::1").is_some() && parse_proxy("fd00::/8").is_some() && parse_proxy("nope").is_none());
    }
}
