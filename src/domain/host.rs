//! Domain names that links can live under: the strict form an admin registers
//! (`go.example.com`, `go.example.com:8443`), and how a request's `Host` is compared
//! with them.
//!
//! A registered name is lower-case ASCII: international names are accepted and kept
//! in their IDNA (punycode) form, which is what browsers send in `Host`. IP literals
//! and `localhost` cannot be registered: those hosts always reach the default domain
//! (that is how operators and health checks reach a node directly).

/// Longest host name DNS allows, in characters (without a port).
const MAX_HOST_LEN: usize = 253;
/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// Why a domain name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("domain name is empty")]
    Empty,
    #[error(
        "give a bare host name such as go.example.com (optionally with :port), not a URL or path"
    )]
    NotBare,
    #[error("`{0}` is not a valid port (1 to 65535)")]
    Port(String),
    #[error("domain name is not a valid host name: {0}")]
    Invalid(String),
    #[error("IP addresses and localhost always reach the default domain; register a host name")]
    Literal,
}

/// A validated, normalised domain name: lower-case host, then `:port` if one was given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// Parses a name as an admin typed it: surrounding whitespace is an error like any
    /// other stray character, letters are lower-cased, non-ASCII names become punycode.
    pub fn parse(text: &str) -> Result<Self, HostError> {
        if text.is_empty() {
            return Err(HostError::Empty);
        }
        if text.bytes().any(|b| {
            matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\' | b'[' | b']') || b.is_ascii_whitespace()
        }) {
            return Err(HostError::NotBare);
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let port = match port {
            Some(port) => {
                let valid = !port.is_empty()
                    && port.len() <= 5
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && !port.starts_with('0');
                match port.parse::<u16>() {
                    Ok(number) if valid && number > 0 => Some(number),
                    _ => return Err(HostError::Port(port.to_owned())),
                }
            }
            None => None,
        };
        let parsed = url::Host::parse(host).map_err(|e| HostError::Invalid(e.to_string()))?;
        let url::Host::Domain(ascii) = parsed else {
            return Err(HostError::Literal);
        };
        let ascii = ascii.trim_end_matches('.');
        if ascii == "localhost" || ascii.ends_with(".localhost") {
            return Err(HostError::Literal);
        }
        if ascii.is_empty() || ascii.len() > MAX_HOST_LEN {
            return Err(HostError::Invalid(format!(
                "a host name has 1 to {MAX_HOST_LEN} characters"
            )));
        }
        for label in ascii.split('.') {
            let valid = !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(HostError::Invalid(format!(
                    "label `{label}`: each dot-separated part has 1 to {MAX_LABEL_LEN} letters, \
                     digits or inner hyphens"
                )));
            }
        }
        // A last label that is a number makes URL parsers read the whole host as an IPv4
        // address (WHATWG URL's "ends in a number"). Checked after the trailing dots
        // are gone: `0x..` is a domain to the parser, but `0x` (what is stored) is 0.0.0.0.
        if ascii.rsplit('.').next().is_some_and(is_number_label) {
            return Err(HostError::Literal);
        }
        Ok(Self(match port {
            Some(port) => format!("{ascii}:{port}"),
            None => ascii.to_owned(),
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Whether a (lower-case) label is a number to the IPv4 parser of WHATWG URL: decimal
/// (`123`, octal `017` too) or hexadecimal (`0x1f`, and `0x` alone, which is 0).
fn is_number_label(label: &str) -> bool {
    match label.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The host part of a `Host` value, without its port (IPv6 literals keep brackets).
pub fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a `Host` value names the machine rather than a site: an IP literal or
/// `localhost`. Such requests reach the default domain. Allocation-free: this runs
/// on every redirect that is not to the default host by name.
pub fn is_machine_host(host: &str) -> bool {
    let name = without_port(host);
    name.starts_with('[')
        || name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
}

/// Whether `host` (a `Host` header) names `name` (a registered or default domain,
/// lower-case): the same text ignoring ASCII case, or, when `name` has no port, the
/// same host on any port.
pub fn host_matches(host: &str, name: &str) -> bool {
    host.eq_ignore_ascii_case(name)
        || (!name.contains(':') && without_port(host).eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        for (input, expected) in [
            ("go.example.com", "go.example.com"),
            ("Go.Example.COM", "go.example.com"),
            ("go.example.com:8443", "go.example.com:8443"),
            ("go", "go"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("a-b.example.com.", "a-b.example.com"),
        ] {
            assert_eq!(
                DomainName::parse(input).unwrap().as_str(),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn anything_but_a_bare_host_is_refused() {
        for (input, error) in [
            ("", HostError::Empty),
            ("https://go.example.com", HostError::NotBare),
            ("go.example.com/x", HostError::NotBare),
            (" go.example.com", HostError::NotBare),
            ("user@go.example.com", HostError::NotBare),
            ("[::1]", HostError::NotBare),
            ("go.example.com:0", HostError::Port("0".into())),
            ("go.example.com:65536", HostError::Port("65536".into())),
            ("go.example.com:", HostError::Port(String::new())),
            ("go.example.com:08", HostError::Port("08".into())),
            ("127.0.0.1", HostError::Literal),
            ("10.0.0.1:80", HostError::Literal),
            ("localhost", HostError::Literal),
            ("LocalHost:8080", HostError::Literal),
            // Found by fuzz/fuzz_targets/host.rs: stored without its dots, `0x` is an
            // address (0.0.0.0) and would not parse again as a name.
            ("0X..", HostError::Literal),
            ("go.0x1f..", HostError::Literal),
            ("go.017..", HostError::Literal),
        ] {
            assert_eq!(DomainName::parse(input), Err(error), "{input}");
        }
        for name in ["0xg.example", "go.x0", "0x1g", "go.0xabc-d"] {
            assert!(DomainName::parse(name).is_ok(), "{name}");
        }
        for input in [
            "x.123",
            "-a.example",
            "a..example",
            "a_b.example",
            "a.example:x:1",
            "a b",
        ] {
            assert!(DomainName::parse(input).is_err(), "{input}");
        }
        assert!(DomainName::parse(&format!("{}.example", "a".repeat(64))).is_err());
    }

    #[test]
    fn hosts_match_names_with_and_without_ports() {
        assert!(host_matches("Go.Example.com", "go.example.com"));
        assert!(host_matches("go.example.com:8080", "go.example.com"));
        assert!(host_matches("go.example.com:8443", "go.example.com:8443"));
        assert!(!host_matches("go.example.com", "go.example.com:8443"));
        assert!(!host_matches("go.example.com:80", "go.example.com:8443"));
        assert!(!host_matches("evil.com", "go.example.com"));
        assert!(!host_matches("go.example.com.evil.com", "go.example.com"));
    }

    #[test]
    fn machine_hosts() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:80",
            "localhost",
            "LOCALHOST:3000",
        ] {
            assert!(is_machine_host(host), "{host}");
        }
        for host in ["go.example.com", "localhost.example", "1.2.3.4.example"] {
            assert!(!is_machine_host(host), "{host}");
        }
    }
}
