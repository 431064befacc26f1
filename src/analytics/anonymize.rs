//! How much of a visitor's IP address a click keeps: by default nothing, optionally a
//! truncated prefix. The full address is never stored; geolocation, which needs it, runs
//! before the address is dropped.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// What is kept of the visitor's address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IpRetention {
    /// Nothing (the default).
    #[default]
    None,
    /// The network prefix only: /24 for IPv4, /48 for IPv6 (see [`truncate`]). Enough to
    /// tell networks apart, not enough to name a household.
    Truncated,
}

/// A retention setting that is neither `none` nor `truncated`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown IP retention {0:?}: expected \"none\" or \"truncated\"")]
pub struct UnknownIpRetention(String);

impl IpRetention {
    /// Parses the configuration value: `"none"` or `"truncated"` (case-insensitive).
    pub fn parse(value: &str) -> Result<Self, UnknownIpRetention> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("none") {
            Ok(Self::None)
        } else if value.eq_ignore_ascii_case("truncated") {
            Ok(Self::Truncated)
        } else {
            Err(UnknownIpRetention(value.to_owned()))
        }
    }

    /// The configuration spelling, as [`IpRetention::parse`] accepts it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Truncated => "truncated",
        }
    }

    /// What to store for a visitor coming from `ip`.
    pub fn apply(self, ip: IpAddr) -> Option<IpAddr> {
        match self {
            Self::None => None,
            Self::Truncated => Some(truncate(ip)),
        }
    }
}

impl FromStr for IpRetention {
    type Err = UnknownIpRetention;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl fmt::Display for IpRetention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Zeroes the host part of an address: keeps /24 of IPv4 and /48 of IPv6. An IPv4-mapped
/// IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports for IPv4 clients) is
/// an IPv4 client and is truncated, and returned, as IPv4.
pub fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(truncate_v4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(truncate_v4(v4)),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !(u128::MAX >> 48))),
        },
    }
}

fn truncate_v4(ip: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from_bits(ip.to_bits() & 0xffff_ff00)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_config_values() {
        assert_eq!(IpRetention::parse("none"), Ok(IpRetention::None));
        assert_eq!(IpRetention::parse("truncated"), Ok(IpRetention::Truncated));
        assert_eq!(" Truncated ".parse(), Ok(IpRetention::Truncated));
        assert_eq!(IpRetention::default(), IpRetention::None);
        let err = IpRetention::parse("full").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown IP retention \"full\": expected \"none\" or \"truncated\""
        );
        for retention in [IpRetention::None, IpRetention::Truncated] {
            assert_eq!(IpRetention::parse(retention.as_str()), Ok(retention));
        }
    }

    #[test]
    fn truncates_to_the_network() {
        let cases = [
            ("203.0.113.77", "203.0.113.0"),
            ("10.1.2.255", "10.1.2.0"),
            ("0.0.0.0", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.0"),
            ("2001:db8:abcd:1234:5678:9abc:def0:1234", "2001:db8:abcd::"),
            ("2001:db8:abcd:ffff::1", "2001:db8:abcd::"),
            ("::1", "::"),
            ("::ffff:198.51.100.23", "198.51.100.0"),
        ];
        for (from, to) in cases {
            assert_eq!(truncate(ip(from)), ip(to), "{from}");
        }
    }

    #[test]
    fn retention_applies() {
        assert_eq!(IpRetention::None.apply(ip("203.0.113.77")), None);
        assert_eq!(
            IpRetention::Truncated.apply(ip("203.0.113.77")),
            Some(ip("203.0.113.0"))
        );
    }

    proptest! {
        #[test]
        fn truncation_is_idempotent_and_keeps_the_prefix(bits: u128, v4: u32) {
            let v6 = IpAddr::V6(Ipv6Addr::from_bits(bits));
            let once = truncate(v6);
            prop_assert_eq!(truncate(once), once);
            if let IpAddr::V6(t) = once {
                prop_assert_eq!(t.to_bits() >> 80, bits >> 80);
                prop_assert_eq!(t.to_bits() & (u128::MAX >> 48), 0);
            }
            let v4 = Ipv4Addr::from_bits(v4);
            prop_assert_eq!(truncate(IpAddr::V4(v4)), IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & 0xffff_ff00)));
        }
    }
}
