//! From what the redirect saw ([`RawProfile`]) to what analytics keep ([`Profile`]).
//!
//! The redirect handler hands over a borrowed [`RawProfileRef`] (a few headers and the
//! client address) and the time, and moves on; visits that look the same are queued as
//! one profile with many times, and enrichment runs once per profile, off the hot path,
//! in the analytics pipeline. This is also where the visitor's address stops:
//! geolocation reads it, [`IpRetention`] decides what (if anything) of it survives, and
//! a `Profile` never holds the full address.

use super::agent;
use super::anonymize::IpRetention;
use super::geo::{GeoIp, Location};
use super::language;
use super::referrer;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// What the redirect saw of a visitor, except the time. Header values are as received;
/// nothing here is derived yet. The queue groups visits by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawProfile {
    pub link_id: i64,
    pub user_agent: Option<Box<str>>,
    pub referer: Option<Box<str>>,
    pub accept_language: Option<Box<str>>,
    /// The client address (after the trusted-proxy rule). Used for geolocation, then
    /// dropped or truncated.
    pub client: IpAddr,
    /// Whether the visit came through the link's QR code.
    pub qr: bool,
}

/// A [`RawProfile`] borrowed from a request: what the redirect passes to the queue,
/// copied only when the queue has not seen it since its last drain. Hashes like the
/// `RawProfile` it stands for (same fields, same order).
#[derive(Debug, Clone, Copy, Hash)]
pub struct RawProfileRef<'a> {
    pub link_id: i64,
    pub user_agent: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub accept_language: Option<&'a str>,
    pub client: IpAddr,
    pub qr: bool,
}

impl RawProfileRef<'_> {
    pub fn to_owned(&self) -> RawProfile {
        RawProfile {
            link_id: self.link_id,
            user_agent: self.user_agent.map(Box::from),
            referer: self.referer.map(Box::from),
            accept_language: self.accept_language.map(Box::from),
            client: self.client,
            qr: self.qr,
        }
    }
}

impl hashbrown::Equivalent<RawProfile> for RawProfileRef<'_> {
    fn equivalent(&self, key: &RawProfile) -> bool {
        self.link_id == key.link_id
            && self.client == key.client
            && self.qr == key.qr
            && self.user_agent == key.user_agent.as_deref()
            && self.referer == key.referer.as_deref()
            && self.accept_language == key.accept_language.as_deref()
    }
}

impl RawProfile {
    pub fn as_ref(&self) -> RawProfileRef<'_> {
        RawProfileRef {
            link_id: self.link_id,
            user_agent: self.user_agent.as_deref(),
            referer: self.referer.as_deref(),
            accept_language: self.accept_language.as_deref(),
            client: self.client,
            qr: self.qr,
        }
    }
}

/// A visitor, enriched: everything stored, listed and streamed about a visit except
/// its time. Serialized in camelCase with every field present (`null` when unknown), so
/// clients see one shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub link_id: i64,
    /// See [`agent::Agent`] for the values.
    pub browser: &'static str,
    pub os: &'static str,
    pub device: &'static str,
    pub bot: bool,
    /// Primary language subtag, lower-case (`"fr"`).
    pub language: Option<String>,
    /// Referring host, lower-case, without port or `www.` (`"news.ycombinator.com"`).
    pub referrer_host: Option<String>,
    /// Full referrer URL without credentials or fragment, only when configured.
    pub referrer_url: Option<String>,
    /// ISO 3166-1 alpha-2 code, when a GeoIP database is configured and knows the address.
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    /// The truncated client address when retention is `truncated`; otherwise `None`.
    /// Never the full address.
    pub ip: Option<IpAddr>,
    pub qr: bool,
}

/// Visits of one enriched profile: what the pipeline stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitGroup {
    pub profile: Profile,
    /// When each visit was served, Unix milliseconds, in no particular order.
    pub times: Vec<i64>,
}

/// Turns raw profiles into profiles. Built once at startup, shared by the pipeline.
#[derive(Debug, Default)]
pub struct Enricher {
    /// Country, region and city; `None` when no database is configured.
    geo: Option<GeoIp>,
    /// Whether the full referrer URL is kept, or just its host.
    keep_referrer_url: bool,
    /// What survives of the client address.
    ip: IpRetention,
}

impl Enricher {
    /// An enricher that keeps no address and no full referrer URL, and does no
    /// geolocation; the `with_*` methods turn those on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locates visitors with this City database.
    pub fn with_geo(mut self, geo: GeoIp) -> Self {
        self.geo = Some(geo);
        self
    }

    /// Keeps the full (sanitized) referrer URL as well as the host.
    pub fn with_referrer_url(mut self, keep: bool) -> Self {
        self.keep_referrer_url = keep;
        self
    }

    /// Sets what is kept of the client address.
    pub fn with_ip_retention(mut self, ip: IpRetention) -> Self {
        self.ip = ip;
        self
    }

    /// Derives everything analytics keep about one visitor.
    pub fn enrich(&self, raw: &RawProfile) -> Profile {
        let agent = agent::classify(raw.user_agent.as_deref().unwrap_or(""));
        let location = self.locate(raw.client);
        self.assemble(raw, agent, location)
    }

    /// Enriches a drained queue: each distinct user agent is classified and each
    /// distinct address located once, and raw profiles that come out the same (two
    /// Chrome builds, two addresses in one city) become one group.
    pub fn enrich_batch(&self, raws: Vec<(RawProfile, Vec<i64>)>) -> Vec<VisitGroup> {
        let mut agents: HashMap<Box<str>, agent::Agent> = HashMap::new();
        let mut locations: HashMap<IpAddr, Location> = HashMap::new();
        let mut groups: Vec<VisitGroup> = Vec::with_capacity(raws.len());
        let mut index: HashMap<Profile, usize> = HashMap::with_capacity(raws.len());
        for (raw, mut times) in raws {
            let ua = raw.user_agent.as_deref().unwrap_or("");
            let agent = match agents.get(ua) {
                Some(agent) => *agent,
                None => *agents.entry(ua.into()).or_insert(agent::classify(ua)),
            };
            let location = locations
                .entry(raw.client)
                .or_insert_with(|| self.locate(raw.client))
                .clone();
            let profile = self.assemble(&raw, agent, location);
            match index.get(&profile) {
                Some(&at) => groups[at].times.append(&mut times),
                None => {
                    index.insert(profile.clone(), groups.len());
                    groups.push(VisitGroup { profile, times });
                }
            }
        }
        groups
    }

    fn locate(&self, client: IpAddr) -> Location {
        self.geo
            .as_ref()
            .map(|geo| geo.lookup(client))
            .unwrap_or_default()
    }

    fn assemble(&self, raw: &RawProfile, agent: agent::Agent, location: Location) -> Profile {
        let language = raw
            .accept_language
            .as_deref()
            .and_then(language::primary_language)
            .map(|language| language.as_str().to_owned());
        let (referrer_host, referrer_url) = match raw.referer.as_deref().and_then(referrer::parse) {
            Some(url) => (
                referrer::host_of(&url),
                self.keep_referrer_url.then(|| referrer::sanitized(url)),
            ),
            None => (None, None),
        };
        let Location {
            country,
            region,
            city,
        } = location;
        Profile {
            link_id: raw.link_id,
            browser: agent.browser,
            os: agent.os,
            device: agent.device,
            bot: agent.bot,
            language,
            referrer_host,
            referrer_url,
            country,
            region,
            city,
            ip: self.ip.apply(raw.client),
            qr: raw.qr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CITY_TEST_DB: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/GeoIP2-City-Test.mmdb"
    );

    const FIREFOX_MAC: &str =
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0";

    fn raw() -> RawProfile {
        RawProfile {
            link_id: 42,
            user_agent: Some(FIREFOX_MAC.into()),
            referer: Some("https://user:pw@www.Example.com:8443/post?id=7#comments".into()),
            accept_language: Some("en-GB,en;q=0.9,fr;q=0.5".into()),
            client: "81.2.69.142".parse().unwrap(),
            qr: true,
        }
    }

    #[test]
    fn enriches_everything_when_everything_is_configured() {
        let enricher = Enricher::new()
            .with_geo(GeoIp::open(CITY_TEST_DB).unwrap())
            .with_referrer_url(true)
            .with_ip_retention(IpRetention::Truncated);
        let visit = enricher.enrich(&raw());
        assert_eq!(
            visit,
            Profile {
                link_id: 42,
                browser: "Firefox",
                os: "macOS",
                device: "desktop",
                bot: false,
                language: Some("en".into()),
                referrer_host: Some("example.com".into()),
                referrer_url: Some("https://www.example.com:8443/post?id=7".into()),
                country: Some("GB".into()),
                region: Some("England".into()),
                city: Some("London".into()),
                ip: Some("81.2.69.0".parse().unwrap()),
                qr: true,
            }
        );
    }

    #[test]
    fn defaults_keep_no_address_no_url_and_no_place() {
        let visit = Enricher::new().enrich(&raw());
        assert_eq!(visit.ip, None);
        assert_eq!(visit.referrer_url, None);
        assert_eq!(visit.referrer_host.as_deref(), Some("example.com"));
        assert_eq!(
            (visit.country, visit.region, visit.city),
            (None, None, None)
        );
        assert_eq!(visit.browser, "Firefox");
    }

    #[test]
    fn missing_headers_make_a_bot_with_nothing_else_known() {
        let enricher = Enricher::new().with_geo(GeoIp::open(CITY_TEST_DB).unwrap());
        let raw = RawProfile {
            user_agent: None,
            referer: None,
            accept_language: None,
            client: "10.0.0.1".parse().unwrap(),
            qr: false,
            ..raw()
        };
        let visit = enricher.enrich(&raw);
        assert!(visit.bot);
        assert_eq!(
            (visit.browser, visit.os, visit.device),
            ("Other", "Other", "bot")
        );
        assert_eq!(visit.language, None);
        assert_eq!(visit.referrer_host, None);
        assert_eq!(
            (visit.country, visit.region, visit.city),
            (None, None, None)
        );
        assert!(!visit.qr);
    }

    #[test]
    fn serializes_in_camel_case_without_the_full_address() {
        let enricher = Enricher::new()
            .with_geo(GeoIp::open(CITY_TEST_DB).unwrap())
            .with_ip_retention(IpRetention::Truncated);
        let raw = RawProfile {
            client: "2001:480:10::1234".parse().unwrap(),
            ..raw()
        };
        let json = serde_json::to_value(enricher.enrich(&raw)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "linkId": 42,
                "browser": "Firefox",
                "os": "macOS",
                "device": "desktop",
                "bot": false,
                "language": "en",
                "referrerHost": "example.com",
                "referrerUrl": null,
                "country": "US",
                "region": "California",
                "city": "San Diego",
                "ip": "2001:480:10::",
                "qr": true,
            })
        );
        assert!(!json.to_string().contains("1234"));
    }

    #[test]
    fn a_batch_enriches_each_profile_once_and_merges_profiles_that_come_out_equal() {
        let enricher = Enricher::new();
        let other_chrome_address = RawProfile {
            client: "10.9.9.9".parse().unwrap(),
            ..raw()
        };
        let other_language_order = RawProfile {
            accept_language: Some("en-US,en;q=0.5".into()),
            ..raw()
        };
        let bot = RawProfile {
            user_agent: Some("Googlebot/2.1 (+http://www.google.com/bot.html)".into()),
            ..raw()
        };
        let groups = enricher.enrich_batch(vec![
            (raw(), vec![1, 2]),
            (other_chrome_address, vec![3]),
            (bot, vec![4]),
            (other_language_order, vec![5]),
        ]);
        // Without geolocation or a kept address, the address makes no difference; "en-GB"
        // and "en-US" are both "en".
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].times, [1, 2, 3, 5]);
        assert_eq!(groups[0].profile, enricher.enrich(&raw()));
        assert!(groups[1].profile.bot);
        assert_eq!(groups[1].times, [4]);
    }
}
