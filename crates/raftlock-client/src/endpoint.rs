//! Checking the `host:port` endpoints a user gives, so a typo is refused at
//! once instead of surfacing as 30 seconds of failed connections.

/// `text` as a normalized `host:port` endpoint, or why it is not one.
///
/// Accepts `host:port`, `ip:port`, `[ipv6]:port`, optionally after
/// `http://`, with a port from 1 to 65535. The error names the endpoint
/// and says what is wrong with it, to be shown as it is.
pub fn parse_endpoint(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let rest = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    if rest.is_empty() {
        return Err(format!(
            "endpoint {text:?} is empty: write HOST:PORT, e.g. 127.0.0.1:7899"
        ));
    }
    if rest.contains("://") {
        return Err(format!(
            "endpoint {text:?}: only plain HOST:PORT (or http://HOST:PORT) is supported"
        ));
    }
    let (host, port) = split_host_port(rest).ok_or_else(|| {
        format!("endpoint {text:?} has no port: write HOST:PORT, e.g. {rest}:7899")
    })?;
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(format!(
                "endpoint {text:?}: the port must be a number from 1 to 65535"
            ))
        }
    };
    if !valid_host(host) {
        return Err(format!(
            "endpoint {text:?}: {host:?} is not a host name or IP address"
        ));
    }
    Ok(format!("{host}:{port}"))
}

/// Splits at the port's colon; an IPv6 address must be in brackets.
fn split_host_port(text: &str) -> Option<(&str, &str)> {
    if let Some(inner) = text.strip_prefix('[') {
        let (address, after) = inner.split_once(']')?;
        let port = after.strip_prefix(':')?;
        // Keep the brackets: the result is used as `http://{endpoint}`.
        return Some((&text[..address.len() + 2], port));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.contains(':') {
        // A bare IPv6 address: which colon ends it is anyone's guess.
        return None;
    }
    Some((host, port))
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|label| !label.is_empty() && label.bytes().all(host_byte))
}

fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::parse_endpoint;

    #[test]
    fn accepts_and_normalizes() {
        for (given, want) in [
            ("127.0.0.1:7899", "127.0.0.1:7899"),
            (" node3:7899 ", "node3:7899"),
            ("http://host-1.example.com:80", "host-1.example.com:80"),
            ("[::1]:7899", "[::1]:7899"),
            ("localhost:65535", "localhost:65535"),
        ] {
            assert_eq!(parse_endpoint(given).as_deref(), Ok(want), "{given}");
        }
    }

    #[test]
    fn refuses_malformed() {
        for given in [
            "",
            "  ",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:-1",
            "127.0.0.1:port",
            ":7899",
            "::1:7899",
            "[::1]",
            "[nonsense]:7899",
            "https://host:7899",
            "host:7899/path",
            "two words:7899",
            "a..b:7899",
        ] {
            assert!(parse_endpoint(given).is_err(), "{given:?} was accepted");
        }
    }

    #[test]
    fn a_missing_port_is_named() {
        let err = parse_endpoint("127.0.0.1").unwrap_err();
        assert!(err.contains("no port"), "{err}");
        assert!(err.contains("127.0.0.1:7899"), "suggests a form: {err}");
    }
}
