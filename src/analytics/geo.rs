//! Country, region and city of a visitor's address, from a MaxMind-format City database
//! (GeoIP2 City, GeoLite2 City, or anything built to the same schema).
//!
//! The database is read into memory once (a City file is 30–70 MB; lookups then touch no
//! disk and need no `unsafe` memory map). A lookup decodes only the four fields hop keeps,
//! borrowing the strings from the database, so the only allocations are the three
//! `String`s of the answer. A record that does not have the expected shape gives an empty
//! [`Location`] rather than an error: a click is never lost to geolocation.

use maxminddb::{MaxMindDbError, Reader};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where an address is, as far as the database knows. Every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code, e.g. `"GB"`.
    pub country: Option<String>,
    /// The first (largest) subdivision: its English name, or its ISO 3166-2 code when it has
    /// no English name. `"England"`, `"Washington"`.
    pub region: Option<String>,
    /// The city's English name.
    pub city: Option<String>,
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read or is not a MaxMind DB file.
    // The cause is in the message and not chained as a source: callers print error
    // chains, and the cause would then be printed twice.
    #[error("cannot open GeoIP database {path}: {cause}")]
    Open {
        path: PathBuf,
        cause: MaxMindDbError,
    },
    /// The file is a MaxMind DB, but not one with cities (a Country, ASN, ISP… database).
    #[error(
        "GeoIP database {path} is of type {found:?}, but a City database is needed \
         (GeoIP2-City or GeoLite2-City)"
    )]
    NotCity { path: PathBuf, found: String },
}

/// An open City database. Cheap to share behind an `Arc`; lookups take `&self`.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

impl fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metadata = self.reader.metadata();
        f.debug_struct("GeoIp")
            .field("database_type", &metadata.database_type)
            .field("build_epoch", &metadata.build_epoch)
            .finish()
    }
}

impl GeoIp {
    /// Reads the database at `path` into memory and checks that it is a City database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GeoError> {
        let path = path.as_ref();
        let reader = Reader::open_readfile(path).map_err(|cause| GeoError::Open {
            path: path.to_owned(),
            cause,
        })?;
        let found = &reader.metadata().database_type;
        if !found.contains("City") {
            return Err(GeoError::NotCity {
                path: path.to_owned(),
                found: found.clone(),
            });
        }
        Ok(Self { reader })
    }

    /// The database's type, e.g. `"GeoIP2-City"`, for logs and health output.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Where `ip` is. Empty for private, loopback and other non-public addresses, for
    /// addresses the database does not know, and for records it cannot decode.
    pub fn lookup(&self, ip: IpAddr) -> Location {
        let ip = ip.to_canonical();
        if !is_public(ip) {
            return Location::default();
        }
        let Ok(result) = self.reader.lookup(ip) else {
            return Location::default();
        };
        match result.decode::<Record<'_>>() {
            Ok(Some(record)) => record.into_location(),
            Ok(None) | Err(_) => Location::default(),
        }
    }
}

/// Skipping the tree walk for addresses no database locates: private networks (a proxy
/// not configured as trusted, a local test), loopback, link-local, multicast.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64))
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
    }
}

/// The part of a GeoIP2 City record hop reads. Every other field is skipped by the decoder
/// without being materialized. (`maxminddb::geoip2::City` would decode every name in
/// eight languages and allocate the subdivision list on each click.)
#[derive(Deserialize, Default)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Country<'a>,
    #[serde(borrow, default, deserialize_with = "first_subdivision")]
    subdivisions: Option<Subdivision<'a>>,
    #[serde(borrow, default)]
    city: City<'a>,
}

#[derive(Deserialize, Default)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Subdivision<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Names<'a>,
}

#[derive(Deserialize, Default)]
struct City<'a> {
    #[serde(borrow, default)]
    names: Names<'a>,
}

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

impl Record<'_> {
    fn into_location(self) -> Location {
        let country = self
            .country
            .iso_code
            .filter(|code| code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()));
        let region = self
            .subdivisions
            .and_then(|sub| non_empty(sub.names.en).or(non_empty(sub.iso_code)));
        Location {
            country: country.map(str::to_owned),
            region: region.map(str::to_owned),
            city: non_empty(self.city.names.en).map(str::to_owned),
        }
    }
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.filter(|text| !text.trim().is_empty())
}

/// Keeps the first subdivision (the largest: England before Oxfordshire) and skips the
/// rest without decoding them.
fn first_subdivision<'de, D>(deserializer: D) -> Result<Option<Subdivision<'de>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct First;

    impl<'de> serde::de::Visitor<'de> for First {
        type Value = Option<Subdivision<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of subdivisions")
        }

        fn visit_seq<A>(self, mut seq: A) -> Result<Self::Value, A::Error>
        where
            A: serde::de::SeqAccess<'de>,
        {
            let first = seq.next_element::<Subdivision<'de>>()?;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }

    deserializer.deserialize_seq(First)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CITY_TEST_DB: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/GeoIP2-City-Test.mmdb"
    );
    const DOMAIN_TEST_DB: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/GeoIP2-Domain-Test.mmdb"
    );

    fn location(country: &str, region: Option<&str>, city: Option<&str>) -> Location {
        Location {
            country: Some(country.to_owned()),
            region: region.map(str::to_owned),
            city: city.map(str::to_owned),
        }
    }

    #[test]
    fn looks_up_known_addresses() {
        let geo = GeoIp::open(CITY_TEST_DB).unwrap();
        assert_eq!(geo.database_type(), "GeoIP2-City");
        let cases = [
            (
                "81.2.69.142",
                location("GB", Some("England"), Some("London")),
            ),
            (
                "2.125.160.216",
                location("GB", Some("England"), Some("Boxford")),
            ),
            (
                "89.160.20.112",
                location("SE", Some("Östergötland County"), Some("Linköping")),
            ),
            (
                "216.160.83.56",
                location("US", Some("Washington"), Some("Milton")),
            ),
            ("216.160.83.64", location("US", Some("Washington"), None)),
            (
                "175.16.199.0",
                location("CN", Some("Jilin Sheng"), Some("Changchun")),
            ),
            ("149.101.100.1", location("US", None, None)),
            (
                "2001:480:10::1",
                location("US", Some("California"), Some("San Diego")),
            ),
            ("2001:218::1", location("JP", None, None)),
            // A dual-stack socket's view of an IPv4 client.
            (
                "::ffff:81.2.69.142",
                location("GB", Some("England"), Some("London")),
            ),
        ];
        for (ip, want) in cases {
            assert_eq!(geo.lookup(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn unknown_and_private_addresses_give_an_empty_location() {
        let geo = GeoIp::open(CITY_TEST_DB).unwrap();
        for ip in [
            "10.0.0.1",
            "127.0.0.1",
            "192.168.1.1",
            "::1",
            "fe80::1",
            "1.1.1.1",
            "2.3.3.1",
        ] {
            assert_eq!(geo.lookup(ip.parse().unwrap()), Location::default(), "{ip}");
        }
    }

    #[test]
    fn refuses_a_database_without_cities() {
        let err = GeoIp::open(DOMAIN_TEST_DB).unwrap_err();
        assert!(matches!(err, GeoError::NotCity { ref found, .. } if found == "GeoIP2-Domain"));
        let message = err.to_string();
        assert!(message.contains("GeoIP2-Domain-Test.mmdb"), "{message}");
        assert!(message.contains("\"GeoIP2-Domain\""), "{message}");
        assert!(message.contains("City database is needed"), "{message}");
    }

    #[test]
    fn a_missing_or_bogus_file_is_a_clear_error() {
        let err = GeoIp::open("/nonexistent/GeoLite2-City.mmdb").unwrap_err();
        assert!(matches!(err, GeoError::Open { .. }));
        let message = err.to_string();
        assert!(
            message.starts_with("cannot open GeoIP database /nonexistent/GeoLite2-City.mmdb:"),
            "{message}"
        );

        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("bogus.mmdb");
        std::fs::write(&bogus, b"not a database").unwrap();
        let err = GeoIp::open(&bogus).unwrap_err();
        assert!(matches!(err, GeoError::Open { .. }), "{err}");
    }

    #[test]
    fn region_falls_back_to_the_subdivision_code() {
        let record = Record {
            country: Country {
                iso_code: Some("US"),
            },
            subdivisions: Some(Subdivision {
                iso_code: Some("WA"),
                names: Names::default(),
            }),
            city: City::default(),
        };
        assert_eq!(record.into_location(), location("US", Some("WA"), None));
    }

    #[test]
    fn odd_values_are_dropped_not_trusted() {
        let record = Record {
            country: Country {
                iso_code: Some("not-a-code"),
            },
            subdivisions: Some(Subdivision {
                iso_code: None,
                names: Names { en: Some("  ") },
            }),
            city: City {
                names: Names { en: Some("") },
            },
        };
        assert_eq!(record.into_location(), Location::default());
    }
}
