//! A member's two addresses, as openraft's `BasicNode { addr }` holds them.
//!
//! A node serves clients on one address and the other nodes (Raft, the
//! membership service) on another. The membership keeps openraft's
//! `BasicNode`, whose persisted format must not change, so its one `addr`
//! string holds both: `PEER_ADDR/CLIENT_ADDR`. A plain `HOST:PORT`, as
//! every membership written before the split has it, means one address for
//! both. This module is the only place that knows the encoding.

use std::fmt;

/// Where the other nodes reach a member (`peer`) and where clients do
/// (`client`); the same address for a single-port member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAddr {
    pub peer: String,
    pub client: String,
}

impl MemberAddr {
    /// One address for both (a single-port member).
    pub fn single(addr: &str) -> MemberAddr {
        MemberAddr {
            peer: addr.to_string(),
            client: addr.to_string(),
        }
    }

    /// Parses `PEER_ADDR/CLIENT_ADDR` or a plain `HOST:PORT`. The text comes
    /// from the command line, the network or disk: anything else is an error.
    pub fn parse(text: &str) -> Result<MemberAddr, String> {
        let mut parts = text.split('/');
        let (peer, client) = match (parts.next(), parts.next(), parts.next()) {
            (Some(one), None, None) => (one, one),
            (Some(peer), Some(client), None) => (peer, client),
            _ => {
                return Err(format!(
                    "{text:?} is not HOST:PORT or PEER_ADDR/CLIENT_ADDR"
                ))
            }
        };
        for addr in [peer, client] {
            check_host_port(addr).map_err(|why| format!("{text:?}: {why}"))?;
        }
        Ok(MemberAddr {
            peer: peer.to_string(),
            client: client.to_string(),
        })
    }

    /// The peer address in `text`, or `text` itself if it does not parse:
    /// connecting to it then fails, as a bad address always has.
    pub fn peer_of(text: &str) -> String {
        MemberAddr::parse(text).map_or_else(|_| text.to_string(), |m| m.peer)
    }

    /// The client address in `text`, or `text` itself if it does not parse.
    pub fn client_of(text: &str) -> String {
        MemberAddr::parse(text).map_or_else(|_| text.to_string(), |m| m.client)
    }

    /// Both addresses are one.
    pub fn is_single(&self) -> bool {
        self.peer == self.client
    }
}

impl fmt::Display for MemberAddr {
    /// A single-port member is written as before the split, so its
    /// membership entry reads the same to a node of either version.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.peer)
        } else {
            write!(f, "{}/{}", self.peer, self.client)
        }
    }
}

/// `HOST:PORT` with a non-empty host and a numeric port (`[::1]:7899` too).
fn check_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("address {addr:?} has no port"))?;
    if host.is_empty() {
        return Err(format!("address {addr:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("address {addr:?} has no valid port"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_address_is_both() {
        let m = MemberAddr::parse("10.0.0.1:7899").unwrap();
        assert_eq!(m.peer, "10.0.0.1:7899");
        assert_eq!(m.client, "10.0.0.1:7899");
        assert!(m.is_single());
        assert_eq!(m.to_string(), "10.0.0.1:7899");
    }

    #[test]
    fn peer_then_client() {
        let m = MemberAddr::parse("10.0.0.1:7999/node1:7899").unwrap();
        assert_eq!(m.peer, "10.0.0.1:7999");
        assert_eq!(m.client, "node1:7899");
        assert!(!m.is_single());
        assert_eq!(m.to_string(), "10.0.0.1:7999/node1:7899");
        assert_eq!(MemberAddr::parse(&m.to_string()).unwrap(), m);
    }

    #[test]
    fn ipv6_literals_parse() {
        let m = MemberAddr::parse("[::1]:7999/[::1]:7899").unwrap();
        assert_eq!(m.peer, "[::1]:7999");
        assert_eq!(m.client, "[::1]:7899");
    }

    #[test]
    fn the_same_address_twice_is_written_once() {
        let m = MemberAddr::parse("a:1/a:1").unwrap();
        assert_eq!(m.to_string(), "a:1");
    }

    #[test]
    fn malformed_addresses_are_errors() {
        for bad in [
            "",
            "nohost",
            ":7899",
            "a:1/",
            "/a:1",
            "a:1/b:2/c:3",
            "a:port",
            "a:1/b",
            "a:99999",
        ] {
            assert!(MemberAddr::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn unparsable_text_is_used_as_it_is() {
        assert_eq!(MemberAddr::peer_of("a:1/b:2"), "a:1");
        assert_eq!(MemberAddr::client_of("a:1/b:2"), "b:2");
        assert_eq!(MemberAddr::peer_of("junk"), "junk");
        assert_eq!(MemberAddr::client_of("junk"), "junk");
    }
}
