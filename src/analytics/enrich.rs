//! From what the redirect saw ([`RawProfile`]) to what analytics keep ([`Profile`]).
//!
//! The redirect handler hands over a borrowed [`RawProfileRef`] (a few headers and the
//! client address) and the time, and moves on. The queue holds visits as a [`RawBatch`]:
//! each header value and each visitor once, each visit as (time, visitor). Enrichment
//! runs off the hot path, in the analytics pipeline, once per distinct header value,
//! address and visitor, never per visit. This is also where the visitor's address stops:
//! geolocation reads it, [`IpRetention`] decides what (if anything) of it survives, and
//! a `Profile` never holds the full address.

use super::agent;
use super::anonymize::IpRetention;
use super::geo::{GeoIp, Location};
use super::language;
use super::referrer;
use hashbrown::HashMap;
use serde::Serialize;
use std::borrow::Cow;
use std::net::IpAddr;

/// What the redirect saw of a visitor, except the time. Header values are as received;
/// nothing here is derived yet.
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
    /// Whether the click is already in the link's total (a click limit's reservation
    /// counted it), so that storing the visit must not count it again.
    pub counted: bool,
}

/// A [`RawProfile`] borrowed from a request: what the redirect passes to the queue.
#[derive(Debug, Clone, Copy)]
pub struct RawProfileRef<'a> {
    pub link_id: i64,
    pub user_agent: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub accept_language: Option<&'a str>,
    pub client: IpAddr,
    pub qr: bool,
    pub counted: bool,
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
            counted: self.counted,
        }
    }
}

/// Absent header value in a [`RawVisitor`].
const NO_TEXT: u32 = u32::MAX;

/// A visitor as a [`RawBatch`] holds it (and the click stream carries it): header
/// values as indexes into the batch's texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
struct RawVisitor {
    link_id: i64,
    user_agent: u32,
    referer: u32,
    accept_language: u32,
    client: IpAddr,
    qr: bool,
    counted: bool,
}

/// Captured visits, dictionary-encoded: every distinct header value and visitor is kept
/// once, and a visit is its time and its visitor's index. A repeat visitor costs a few
/// lookups and a pushed pair; only a header value not seen since the last drain is
/// copied. The pipeline's queue is a few of these.
#[derive(Debug, Default)]
pub struct RawBatch {
    texts: HashMap<Box<str>, u32>,
    visitors: Vec<RawVisitor>,
    visitor_index: HashMap<RawVisitor, u32>,
    /// (Unix ms, visitor index), in capture order.
    visits: Vec<(i64, u32)>,
}

impl RawBatch {
    /// An empty batch with room for as many texts, visitors and visits as `other` holds.
    pub fn with_capacity_of(other: &Self) -> Self {
        Self {
            texts: HashMap::with_capacity(other.texts.len()),
            visitors: Vec::with_capacity(other.visitors.len()),
            visitor_index: HashMap::with_capacity(other.visitors.len()),
            visits: Vec::with_capacity(other.visits.len()),
        }
    }

    /// Adds a visit served at `at_ms`.
    pub fn push(&mut self, at_ms: i64, visitor: RawProfileRef<'_>) {
        let visitor = RawVisitor {
            link_id: visitor.link_id,
            user_agent: self.text(visitor.user_agent),
            referer: self.text(visitor.referer),
            accept_language: self.text(visitor.accept_language),
            client: visitor.client,
            qr: visitor.qr,
            counted: visitor.counted,
        };
        let next = self.visitors.len() as u32;
        let index = *self.visitor_index.entry(visitor).or_insert(next);
        if index == next {
            self.visitors.push(visitor);
        }
        self.visits.push((at_ms, index));
    }

    fn text(&mut self, value: Option<&str>) -> u32 {
        let Some(value) = value else {
            return NO_TEXT;
        };
        if let Some(&id) = self.texts.get(value) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.insert(value.into(), id);
        id
    }

    /// Visits held.
    pub fn len(&self) -> usize {
        self.visits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.visits.is_empty()
    }

    /// Distinct visitors held.
    pub fn visitors(&self) -> usize {
        self.visitors.len()
    }

    /// The link of each visit whose click is not yet in a total: what must still be
    /// counted if the batch itself is given up.
    pub fn uncounted_clicks(&self) -> impl Iterator<Item = i64> + '_ {
        self.visits.iter().filter_map(|&(_, visitor)| {
            let visitor = &self.visitors[visitor as usize];
            (!visitor.counted).then_some(visitor.link_id)
        })
    }

    /// The batch as the click stream carries it: postcard, still dictionary-encoded.
    pub fn encode(&self) -> Vec<u8> {
        let mut texts = vec![""; self.texts.len()];
        for (text, &id) in &self.texts {
            texts[id as usize] = text;
        }
        let wire = WireBatch {
            texts,
            visitors: Cow::Borrowed(&self.visitors),
            visits: Cow::Borrowed(&self.visits),
        };
        postcard::to_allocvec(&wire).expect("a batch always serializes")
    }

    /// Reads a batch written by [`RawBatch::encode`]; anything malformed (an index past
    /// the end, trailing bytes) is refused, since the bytes come off the network.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (wire, rest): (WireBatch<'_>, _) =
            postcard::take_from_bytes(bytes).map_err(|e| format!("not a visit batch: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after a visit batch".into());
        }
        let known = |id: u32| id == NO_TEXT || (id as usize) < wire.texts.len();
        let mut batch = RawBatch::default();
        for text in &wire.texts {
            let id = batch.texts.len() as u32;
            if batch.texts.insert((*text).into(), id).is_some() {
                return Err("a text repeated in a visit batch".into());
            }
        }
        for &visitor in wire.visitors.iter() {
            if !(known(visitor.user_agent)
                && known(visitor.referer)
                && known(visitor.accept_language))
            {
                return Err("a visitor names a text the batch lacks".into());
            }
            let next = batch.visitors.len() as u32;
            if batch.visitor_index.insert(visitor, next).is_some() {
                return Err("a visitor repeated in a visit batch".into());
            }
            batch.visitors.push(visitor);
        }
        if wire
            .visits
            .iter()
            .any(|&(_, visitor)| visitor as usize >= batch.visitors.len())
        {
            return Err("a visit names a visitor the batch lacks".into());
        }
        batch.visits = wire.visits.into_owned();
        Ok(batch)
    }

    /// Splits the batch into two of about half the visits each (for a message-size
    /// limit); a batch of one visit comes back whole, beside an empty one.
    pub fn halves(self) -> [RawBatch; 2] {
        let mut texts = vec![""; self.texts.len()];
        for (text, &id) in &self.texts {
            texts[id as usize] = text;
        }
        let text = |id: u32| texts.get(id as usize).copied();
        let middle = self.visits.len().div_ceil(2);
        let mut halves = [RawBatch::default(), RawBatch::default()];
        for (n, &(at, visitor)) in self.visits.iter().enumerate() {
            let v = &self.visitors[visitor as usize];
            halves[usize::from(n >= middle)].push(
                at,
                RawProfileRef {
                    link_id: v.link_id,
                    user_agent: text(v.user_agent),
                    referer: text(v.referer),
                    accept_language: text(v.accept_language),
                    client: v.client,
                    qr: v.qr,
                    counted: v.counted,
                },
            );
        }
        halves
    }
}

/// A [`RawBatch`] on the wire: its texts in id order, its visitors and its visits.
#[derive(serde::Serialize, serde::Deserialize)]
struct WireBatch<'a> {
    #[serde(borrow)]
    texts: Vec<&'a str>,
    visitors: Cow<'a, [RawVisitor]>,
    visits: Cow<'a, [(i64, u32)]>,
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
    /// The visits' clicks are already in the link's total (see [`RawProfile::counted`]);
    /// not shown anywhere.
    #[serde(skip)]
    pub counted: bool,
}

#[cfg(test)]
impl Profile {
    /// A human on desktop Linux visiting `link_id` with `browser`, nothing else known:
    /// the tests' starting point, changed field by field.
    pub(crate) fn for_test(link_id: i64, browser: &'static str) -> Self {
        Profile {
            link_id,
            browser,
            os: "Linux",
            device: "desktop",
            bot: false,
            language: None,
            referrer_host: None,
            referrer_url: None,
            country: None,
            region: None,
            city: None,
            ip: None,
            qr: false,
            counted: false,
        }
    }
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
        let mut batch = RawBatch::default();
        batch.push(0, raw.as_ref());
        let mut groups = self.enrich_batch(vec![batch]);
        groups.pop().expect("one visit makes one group").profile
    }

    /// Enriches drained batches: each distinct user agent, language, referrer and
    /// address is worked out once, and visitors that come out the same (two Chrome
    /// builds, two addresses in one city when no address is kept) become one group.
    pub fn enrich_batch(&self, batches: Vec<RawBatch>) -> Vec<VisitGroup> {
        let mut memo = Memo::default();
        let mut groups: Vec<VisitGroup> = Vec::new();
        let mut group_index: HashMap<GroupKey, usize> = HashMap::new();
        for batch in &batches {
            let mut texts = vec![""; batch.texts.len()];
            for (text, &id) in &batch.texts {
                texts[id as usize] = text;
            }
            // What each of this batch's texts means, per role, filled as needed.
            let mut roles = [
                vec![NO_TEXT; texts.len()],
                vec![NO_TEXT; texts.len()],
                vec![NO_TEXT; texts.len()],
            ];
            let visitor_groups: Vec<usize> = batch
                .visitors
                .iter()
                .map(|visitor| {
                    let mut meaning = |role: usize, id: u32| -> u32 {
                        let text = texts.get(id as usize).copied();
                        match roles[role].get_mut(id as usize) {
                            Some(slot) if *slot != NO_TEXT => *slot,
                            Some(slot) => {
                                *slot = memo.meaning(self, role, text);
                                *slot
                            }
                            None => memo.meaning(self, role, None),
                        }
                    };
                    let key = GroupKey {
                        link_id: visitor.link_id,
                        agent: meaning(AGENT, visitor.user_agent),
                        referrer: meaning(REFERRER, visitor.referer),
                        language: meaning(LANGUAGE, visitor.accept_language),
                        location: memo.location(self, visitor.client),
                        ip: self.ip.apply(visitor.client),
                        qr: visitor.qr,
                        counted: visitor.counted,
                    };
                    *group_index.entry(key).or_insert_with(|| {
                        groups.push(VisitGroup {
                            profile: memo.profile(&key),
                            times: Vec::new(),
                        });
                        groups.len() - 1
                    })
                })
                .collect();
            for &(at_ms, visitor) in &batch.visits {
                groups[visitor_groups[visitor as usize]].times.push(at_ms);
            }
        }
        groups
    }

    /// The referrer's host, and its full URL when kept.
    fn referrer(&self, referer: Option<&str>) -> (Option<String>, Option<String>) {
        match referer.and_then(referrer::parse) {
            Some(url) => (
                referrer::host_of(&url),
                self.keep_referrer_url.then(|| referrer::sanitized(url)),
            ),
            None => (None, None),
        }
    }

    fn locate(&self, client: IpAddr) -> Location {
        self.geo
            .as_ref()
            .map(|geo| geo.lookup(client))
            .unwrap_or_default()
    }
}

const AGENT: usize = 0;
const REFERRER: usize = 1;
const LANGUAGE: usize = 2;

/// An enriched visitor, each part an index into a [`Memo`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey {
    link_id: i64,
    agent: u32,
    referrer: u32,
    language: u32,
    location: u32,
    ip: Option<IpAddr>,
    qr: bool,
    counted: bool,
}

/// One table of distinct derived values, and where each input landed in it.
#[derive(Debug)]
struct Table<V> {
    values: Vec<V>,
    index: HashMap<V, u32>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<V: std::hash::Hash + Eq + Clone> Table<V> {
    fn add(&mut self, value: V) -> u32 {
        if let Some(&id) = self.index.get(&value) {
            return id;
        }
        let id = self.values.len() as u32;
        self.index.insert(value.clone(), id);
        self.values.push(value);
        id
    }
}

/// What a drain's header values and addresses mean, each worked out once.
#[derive(Debug, Default)]
struct Memo {
    /// Derived value index by header text, per role, and for an absent header.
    by_text: [HashMap<Box<str>, u32>; 3],
    absent: [Option<u32>; 3],
    agents: Table<agent::Agent>,
    /// (host, full URL when kept).
    referrers: Table<(Option<String>, Option<String>)>,
    languages: Table<Option<String>>,
    by_address: HashMap<IpAddr, u32>,
    locations: Table<Location>,
}

impl Memo {
    /// The derived value index of a header text (`None`: absent) in `role`.
    fn meaning(&mut self, enricher: &Enricher, role: usize, text: Option<&str>) -> u32 {
        let known = match text {
            Some(text) => self.by_text[role].get(text).copied(),
            None => self.absent[role],
        };
        if let Some(id) = known {
            return id;
        }
        let id = match role {
            AGENT => self.agents.add(agent::classify(text.unwrap_or(""))),
            REFERRER => self.referrers.add(enricher.referrer(text)),
            _ => self.languages.add(
                text.and_then(language::primary_language)
                    .map(|language| language.as_str().to_owned()),
            ),
        };
        match text {
            Some(text) => {
                self.by_text[role].insert(text.into(), id);
            }
            None => self.absent[role] = Some(id),
        }
        id
    }

    fn location(&mut self, enricher: &Enricher, client: IpAddr) -> u32 {
        if enricher.geo.is_none() {
            return self.locations.add(Location::default());
        }
        if let Some(&id) = self.by_address.get(&client) {
            return id;
        }
        let id = self.locations.add(enricher.locate(client));
        self.by_address.insert(client, id);
        id
    }

    fn profile(&self, key: &GroupKey) -> Profile {
        let agent = self.agents.values[key.agent as usize];
        let (referrer_host, referrer_url) = self.referrers.values[key.referrer as usize].clone();
        let Location {
            country,
            region,
            city,
        } = self.locations.values[key.location as usize].clone();
        Profile {
            link_id: key.link_id,
            browser: agent.browser,
            os: agent.os,
            device: agent.device,
            bot: agent.bot,
            language: self.languages.values[key.language as usize].clone(),
            referrer_host,
            referrer_url,
            country,
            region,
            city,
            ip: key.ip,
            qr: key.qr,
            counted: key.counted,
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
            counted: false,
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
                counted: false,
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
        let mut first = RawBatch::default();
        first.push(1, raw().as_ref());
        first.push(2, raw().as_ref());
        first.push(3, other_chrome_address.as_ref());
        first.push(4, bot.as_ref());
        // Another thread's buffer: its own texts and visitors.
        let mut second = RawBatch::default();
        second.push(5, other_language_order.as_ref());
        second.push(6, bot.as_ref());
        assert_eq!((first.len(), first.visitors()), (4, 3));
        let groups = enricher.enrich_batch(vec![first, second]);
        // Without geolocation or a kept address, the address makes no difference; "en-GB"
        // and "en-US" are both "en".
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].times, [1, 2, 3, 5]);
        assert_eq!(groups[0].profile, enricher.enrich(&raw()));
        assert!(groups[1].profile.bot);
        assert_eq!(groups[1].times, [4, 6]);
    }

    #[test]
    fn a_batch_enriches_like_one_visit_at_a_time() {
        let enricher = Enricher::new()
            .with_geo(GeoIp::open(CITY_TEST_DB).unwrap())
            .with_referrer_url(true)
            .with_ip_retention(IpRetention::Truncated);
        let visitors = [
            raw(),
            RawProfile {
                client: "216.160.83.56".parse().unwrap(),
                referer: None,
                ..raw()
            },
            RawProfile {
                user_agent: None,
                accept_language: None,
                link_id: 7,
                ..raw()
            },
            RawProfile {
                client: "81.2.69.160".parse().unwrap(),
                qr: false,
                ..raw()
            },
        ];
        let mut batch = RawBatch::default();
        for (at, visitor) in visitors.iter().enumerate() {
            batch.push(at as i64, visitor.as_ref());
        }
        let groups = enricher.enrich_batch(vec![batch]);
        assert_eq!(groups.len(), visitors.len());
        for (group, visitor) in groups.iter().zip(&visitors) {
            assert_eq!(group.profile, enricher.enrich(visitor));
        }
    }

    fn sample_batch() -> RawBatch {
        let mut batch = RawBatch::default();
        let first = raw();
        let second = RawProfile {
            link_id: 7,
            referer: None,
            counted: true,
            ..raw()
        };
        for at in 0..5 {
            batch.push(at, first.as_ref());
            batch.push(100 + at, second.as_ref());
        }
        batch
    }

    #[test]
    fn a_batch_survives_the_wire_and_enriches_the_same() {
        let batch = sample_batch();
        let decoded = RawBatch::decode(&batch.encode()).unwrap();
        assert_eq!((decoded.len(), decoded.visitors()), (10, 2));
        let enricher = Enricher::new();
        let mut sent = enricher.enrich_batch(vec![sample_batch()]);
        let mut received = enricher.enrich_batch(vec![decoded]);
        sent.sort_by_key(|g| g.profile.link_id);
        received.sort_by_key(|g| g.profile.link_id);
        assert_eq!(sent, received);
        // Only the first visitor's clicks are not yet in a total.
        let uncounted: Vec<_> = sample_batch().uncounted_clicks().collect();
        assert_eq!(uncounted, [42; 5]);
    }

    #[test]
    fn malformed_batches_are_refused() {
        let bytes = sample_batch().encode();
        assert!(RawBatch::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(RawBatch::decode(&longer).is_err());
        // A visit naming a visitor that is not there.
        let wire = WireBatch {
            texts: vec!["curl/8"],
            visitors: vec![].into(),
            visits: vec![(1, 0)].into(),
        };
        let err = RawBatch::decode(&postcard::to_allocvec(&wire).unwrap()).unwrap_err();
        assert!(err.contains("visitor"), "{err}");
        // A visitor naming a text that is not there.
        let wire = WireBatch {
            texts: vec![],
            visitors: vec![RawVisitor {
                link_id: 1,
                user_agent: 3,
                referer: NO_TEXT,
                accept_language: NO_TEXT,
                client: [127, 0, 0, 1].into(),
                qr: false,
                counted: false,
            }]
            .into(),
            visits: vec![].into(),
        };
        assert!(RawBatch::decode(&postcard::to_allocvec(&wire).unwrap()).is_err());
    }

    #[test]
    fn halves_keep_every_visit() {
        let [a, b] = sample_batch().halves();
        assert_eq!((a.len(), b.len()), (5, 5));
        let enricher = Enricher::new();
        let count =
            |groups: Vec<VisitGroup>| -> usize { groups.iter().map(|g| g.times.len()).sum() };
        assert_eq!(count(enricher.enrich_batch(vec![a, b])), 10);
    }
}
