//! Target URLs: the only user input that ends up in a `Location` header, so the rules
//! are strict. A URL must be absolute, use an allowed scheme, have a host, carry no
//! whitespace, control characters or embedded credentials, fit the length limit, and
//! must not point back at hop itself (a redirect loop).

use std::fmt;

/// What a deployment allows as a redirect target.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    /// Lower-case schemes accepted, `["http", "https"]` by default.
    pub allowed_schemes: Vec<String>,
    /// Longest URL accepted, in bytes.
    pub max_len: usize,
    /// `(host, port)` pairs that are hop itself; links to them would loop.
    pub own_origins: Vec<(String, u16)>,
    /// Ports hop listens on: `localhost`, a loopback or an unspecified address (in any
    /// spelling, `[::ffff:127.0.0.1]` too) on one of them is hop itself as well.
    pub own_local_ports: Vec<u16>,
}

/// A validated redirect target. The string is what is stored and sent in `Location`:
/// the input exactly when it is ASCII, otherwise its normalised form (IDNA host,
/// percent-encoded path), because a header can only carry ASCII safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(String);

impl TargetUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Validates `raw` against `policy`.
    pub fn parse(raw: &str, policy: &UrlPolicy) -> Result<Self, UrlError> {
        if raw.is_empty() {
            return Err(UrlError::Empty);
        }
        if raw.len() > policy.max_len {
            return Err(UrlError::TooLong {
                len: raw.len(),
                max: policy.max_len,
            });
        }
        // Checked on the raw text: the URL parser silently strips tabs and newlines.
        if let Some((index, _)) = raw
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || c.is_control())
        {
            return Err(UrlError::Whitespace { index });
        }
        let parsed = url::Url::parse(raw).map_err(|e| UrlError::NotAbsolute(e.to_string()))?;
        let scheme = parsed.scheme();
        if !policy.allowed_schemes.iter().any(|s| s == scheme) {
            return Err(UrlError::Scheme {
                scheme: scheme.to_owned(),
                allowed: policy.allowed_schemes.join(", "),
            });
        }
        let host = match parsed.host_str() {
            Some(host) if !host.is_empty() => host.to_ascii_lowercase(),
            _ => return Err(UrlError::NoHost),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(UrlError::Credentials);
        }
        if let Some(port) = parsed.port_or_known_default() {
            // `sho.rt.` is the same host as `sho.rt`.
            let host = host.strip_suffix('.').unwrap_or(&host);
            let own_origin = policy
                .own_origins
                .iter()
                .any(|(own_host, own_port)| own_host == host && *own_port == port);
            let own_local = policy.own_local_ports.contains(&port) && is_local(&parsed);
            if own_origin || own_local {
                return Err(UrlError::PointsAtHop);
            }
        }
        let stored = if raw.is_ascii() {
            raw.to_owned()
        } else {
            let normalised = parsed.as_str().to_owned();
            if normalised.len() > policy.max_len {
                return Err(UrlError::TooLong {
                    len: normalised.len(),
                    max: policy.max_len,
                });
            }
            normalised
        };
        Ok(Self(stored))
    }
}

/// Whether the URL's host is this machine: `localhost` (and `*.localhost`), a loopback
/// or unspecified address, IPv4-mapped IPv6 forms included. The URL parser has already
/// turned other IPv4 spellings (`2130706433`, `0x7f.1`) into dotted form.
fn is_local(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        }
        None => false,
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a URL was refused; each message tells the caller what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("url must not be empty")]
    Empty,
    #[error("url is {len} bytes long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error(
        "url contains whitespace or a control character at byte {index}; percent-encode it (a space is %20)"
    )]
    Whitespace { index: usize },
    #[error("url must be an absolute URL such as https://example.com/page ({0})")]
    NotAbsolute(String),
    #[error("url scheme `{scheme}` is not allowed; allowed schemes: {allowed}")]
    Scheme { scheme: String, allowed: String },
    #[error("url has no host")]
    NoHost,
    #[error("url must not contain a user name or password")]
    Credentials,
    #[error("url points at this hop server itself, which would make a redirect loop")]
    PointsAtHop,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UrlPolicy {
        UrlPolicy {
            allowed_schemes: vec!["http".into(), "https".into()],
            max_len: 100,
            own_origins: vec![("127.0.0.1".into(), 8080), ("sho.rt".into(), 443)],
            own_local_ports: vec![8080],
        }
    }

    #[test]
    fn accepts_and_keeps_ascii_urls_exactly() {
        for raw in [
            "https://example.com",
            "http://example.com/a?b=c#d",
            "https://EXAMPLE.com/%7Efoo",
            "https://127.0.0.1:8081/",
            "https://sho.rt:8443/x",
            // Other ports of this machine are other servers.
            "http://localhost:3000/",
            "http://[::ffff:127.0.0.1]:9000/x",
        ] {
            assert_eq!(TargetUrl::parse(raw, &policy()).unwrap().as_str(), raw);
        }
    }

    #[test]
    fn normalises_non_ascii_urls() {
        let url = TargetUrl::parse("https://bücher.example/straße", &policy()).unwrap();
        assert_eq!(url.as_str(), "https://xn--bcher-kva.example/stra%C3%9Fe");
    }

    #[test]
    fn rejects_each_bad_kind() {
        type Check = fn(&UrlError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, UrlError::Empty)),
            ("javascript:alert(1)", |e| {
                matches!(e, UrlError::Scheme { .. })
            }),
            ("data:text/html,hi", |e| {
                matches!(e, UrlError::Scheme { .. })
            }),
            ("file:///etc/passwd", |e| {
                matches!(e, UrlError::Scheme { .. })
            }),
            ("ftp://example.com", |e| {
                matches!(e, UrlError::Scheme { .. })
            }),
            ("example.com/page", |e| {
                matches!(e, UrlError::NotAbsolute(_))
            }),
            ("/relative", |e| matches!(e, UrlError::NotAbsolute(_))),
            ("https://exa mple.com", |e| {
                matches!(e, UrlError::Whitespace { index: 11 })
            }),
            ("https://example.com/\n", |e| {
                matches!(e, UrlError::Whitespace { .. })
            }),
            ("https://example.com/\u{7}", |e| {
                matches!(e, UrlError::Whitespace { .. })
            }),
            ("https://user:pw@example.com", |e| {
                matches!(e, UrlError::Credentials)
            }),
            ("http://127.0.0.1:8080/abc", |e| {
                matches!(e, UrlError::PointsAtHop)
            }),
            ("https://SHO.RT/abc", |e| matches!(e, UrlError::PointsAtHop)),
            ("https://sho.rt./abc", |e| {
                matches!(e, UrlError::PointsAtHop)
            }),
            // hop's own port on any spelling of this machine.
            ("http://localhost:8080/x", |e| {
                matches!(e, UrlError::PointsAtHop)
            }),
            ("http://app.localhost:8080/x", |e| {
                matches!(e, UrlError::PointsAtHop)
            }),
            ("http://127.1.2.3:8080/x", |e| {
                matches!(e, UrlError::PointsAtHop)
            }),
            ("http://2130706433:8080/x", |e| {
                matches!(e, UrlError::PointsAtHop)
            }),
            ("http://0.0.0.0:8080/x", |e| {
                matches!(e, UrlError::PointsAtHop)
            }),
            ("http://[::1]:8080/x", |e| {
                matches!(e, UrlError::PointsAtHop)
            }),
            ("http://[::ffff:127.0.0.1]:8080/x", |e| {
                matches!(e, UrlError::PointsAtHop)
            }),
            ("http://", |e| matches!(e, UrlError::NotAbsolute(_))),
        ];
        for (raw, check) in cases {
            let err = TargetUrl::parse(raw, &policy()).unwrap_err();
            assert!(check(&err), "{raw:?} gave {err:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(100));
        assert!(matches!(
            TargetUrl::parse(&long, &policy()),
            Err(UrlError::TooLong { max: 100, .. })
        ));
    }
}
