//! Raw visits stored in blocks: one row per link per drain of the queue, not one per
//! visit.
//!
//! A drain holds thousands of visits that are mostly repeats of a few visitor profiles
//! (a hot link, a handful of browsers). Written as rows, each visit cost an insert into
//! a table and two indexes, the biggest part of what analytics added to a redirect
//! (docs/benchmarks.md). A block stores a link's visits from one drain as a table of
//! distinct profiles and, per visit, its time and profile: two small integers. Rollups
//! never read raw visits; only the visit listing, the CSV export and retention do, and
//! those read whole blocks anyway.
//!
//! Encoding: a format byte ([`FORMAT`]), then a [postcard] record: the profiles, then
//! the visits in time order as (milliseconds since the previous visit, or since the
//! block's `first_at` for the first; profile index). Postcard writes integers as
//! varints, so a visit usually takes two or three bytes.
//!
//! A visit's listing id is `block id << ID_SHIFT | position in the block`, which keeps
//! ids increasing in arrival order and lets a cursor name a visit inside a block.

use super::enrich::{Profile, VisitGroup};
use crate::domain::link::format_ms;
use crate::store::StoredVisit;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The encoding written first in every block; a block in any other is refused.
pub const FORMAT: u8 = 1;
/// Visits per block at most: a busy link's drain is split, so that listing a page of
/// visits decodes a few kilobytes, not megabytes.
pub const MAX_VISITS: usize = 4096;
/// Bits of a visit id that hold its position in the block.
pub const ID_SHIFT: u32 = 16;
const _: () = assert!(MAX_VISITS <= 1 << ID_SHIFT);

/// A visitor profile as a block stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockProfile<'a> {
    pub bot: bool,
    pub qr: bool,
    pub browser: &'a str,
    pub os: &'a str,
    pub device: &'a str,
    #[serde(borrow)]
    pub language: Option<&'a str>,
    #[serde(borrow)]
    pub referrer_host: Option<&'a str>,
    #[serde(borrow)]
    pub referrer_url: Option<&'a str>,
    #[serde(borrow)]
    pub country: Option<&'a str>,
    #[serde(borrow)]
    pub region: Option<&'a str>,
    #[serde(borrow)]
    pub city: Option<&'a str>,
    /// The truncated address, as text (`"81.2.69.0"`), when kept.
    #[serde(borrow)]
    pub ip: Option<&'a str>,
}

impl BlockProfile<'_> {
    /// The listed form of a visit with this profile (`id`: `None` in the live feed).
    pub fn visit(&self, id: Option<i64>, at_ms: i64) -> StoredVisit {
        let text = |value: Option<&str>| value.map(str::to_owned);
        StoredVisit {
            id,
            at: format_ms(at_ms),
            bot: self.bot,
            qr: self.qr,
            browser: self.browser.to_owned(),
            os: self.os.to_owned(),
            device: self.device.to_owned(),
            language: text(self.language),
            referrer_host: text(self.referrer_host),
            referrer_url: text(self.referrer_url),
            country: text(self.country),
            region: text(self.region),
            city: text(self.city),
            ip: text(self.ip),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    profiles: Vec<BlockProfile<'a>>,
    /// (ms since the previous visit, profile index), in time order.
    visits: Vec<(u64, u32)>,
}

/// One block, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBlock {
    pub link_id: i64,
    /// The first and last visit's time, Unix ms.
    pub first_at: i64,
    pub last_at: i64,
    pub visits: usize,
    pub data: Vec<u8>,
}

/// A block that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("visit block in unknown format {0}")]
    Format(u8),
    #[error("visit block damaged: {0}")]
    Damaged(String),
}

/// Encodes `visits` (time, index into `profiles`) of one link as blocks of at most
/// [`MAX_VISITS`], each with only the profiles its visits use.
pub fn encode(
    link_id: i64,
    profiles: &[BlockProfile<'_>],
    visits: &mut [(i64, u32)],
) -> Vec<EncodedBlock> {
    visits.sort_unstable();
    let mut local = vec![u32::MAX; profiles.len()];
    visits
        .chunks(MAX_VISITS)
        .map(|chunk| {
            local.fill(u32::MAX);
            let mut used = Vec::new();
            let mut previous = chunk[0].0;
            let wire_visits = chunk
                .iter()
                .map(|&(at, profile)| {
                    let slot = &mut local[profile as usize];
                    if *slot == u32::MAX {
                        *slot = used.len() as u32;
                        used.push(profiles[profile as usize].clone());
                    }
                    // `at >= previous` (sorted), but the difference of two i64 can
                    // exceed i64::MAX: taken as u64, which holds any such gap.
                    let delta = at.abs_diff(previous);
                    previous = at;
                    (delta, *slot)
                })
                .collect();
            let wire = Wire {
                profiles: used,
                visits: wire_visits,
            };
            let data =
                postcard::to_extend(&wire, vec![FORMAT]).expect("encoding into a Vec cannot fail");
            EncodedBlock {
                link_id,
                first_at: chunk[0].0,
                last_at: chunk[chunk.len() - 1].0,
                visits: chunk.len(),
                data,
            }
        })
        .collect()
}

/// One link's profiles, and its visits as (time, profile index).
type LinkVisits<'a> = (Vec<BlockProfile<'a>>, Vec<(i64, u32)>);

/// The blocks of a drained and enriched batch, one or more per link.
pub fn encode_groups(groups: &[VisitGroup]) -> Vec<EncodedBlock> {
    let texts: Vec<Option<String>> = groups
        .iter()
        .map(|group| group.profile.ip.map(|ip| ip.to_string()))
        .collect();
    let mut links: BTreeMap<i64, LinkVisits<'_>> = BTreeMap::new();
    for (group, ip) in groups.iter().zip(&texts) {
        let (profiles, visits) = links.entry(group.profile.link_id).or_default();
        let index = profiles.len() as u32;
        profiles.push(block_profile(&group.profile, ip.as_deref()));
        visits.extend(group.times.iter().map(|&at| (at, index)));
    }
    links
        .into_iter()
        .flat_map(|(link, (profiles, mut visits))| encode(link, &profiles, &mut visits))
        .collect()
}

/// `profile` as a block stores it; `ip` is its address as text.
pub fn block_profile<'a>(profile: &'a Profile, ip: Option<&'a str>) -> BlockProfile<'a> {
    BlockProfile {
        bot: profile.bot,
        qr: profile.qr,
        browser: profile.browser,
        os: profile.os,
        device: profile.device,
        language: profile.language.as_deref(),
        referrer_host: profile.referrer_host.as_deref(),
        referrer_url: profile.referrer_url.as_deref(),
        country: profile.country.as_deref(),
        region: profile.region.as_deref(),
        city: profile.city.as_deref(),
        ip,
    }
}

/// A stored block, decoded: its profiles borrow from the block's bytes.
pub struct Decoded<'a> {
    pub profiles: Vec<BlockProfile<'a>>,
    /// (time in Unix ms, profile index), in time order.
    pub visits: Vec<(i64, u32)>,
}

/// Where a `/visits` cursor (the listing id of the last visit shown) points: the block
/// and the position in it; no cursor starts from the newest block's end.
pub fn cursor_position(before: Option<i64>) -> (i64, usize) {
    match before {
        Some(id) => (id >> ID_SHIFT, (id & ((1 << ID_SHIFT) - 1)) as usize),
        None => (i64::MAX, usize::MAX),
    }
}

impl Decoded<'_> {
    /// Appends block `id`'s visits to `out`, newest first, until `out` holds `limit`;
    /// in the cursor's own block (`last_block`), only those before `position`.
    pub fn page_into(
        &self,
        id: i64,
        (last_block, position): (i64, usize),
        limit: usize,
        out: &mut Vec<crate::store::StoredVisit>,
    ) {
        let end = if id == last_block {
            position.min(self.visits.len())
        } else {
            self.visits.len()
        };
        for at in (0..end).rev().take(limit.saturating_sub(out.len())) {
            let (at_ms, profile) = self.visits[at];
            let visit_id = id << ID_SHIFT | at as i64;
            out.push(self.profiles[profile as usize].visit(Some(visit_id), at_ms));
        }
    }
}

/// Reads back a block stored with `first_at`.
pub fn decode(first_at: i64, data: &[u8]) -> Result<Decoded<'_>, BlockError> {
    let (&format, rest) = data
        .split_first()
        .ok_or_else(|| BlockError::Damaged("empty".into()))?;
    if format != FORMAT {
        return Err(BlockError::Format(format));
    }
    let wire: Wire<'_> =
        postcard::from_bytes(rest).map_err(|e| BlockError::Damaged(e.to_string()))?;
    let mut at = first_at;
    let mut visits = Vec::with_capacity(wire.visits.len());
    for (delta, profile) in wire.visits {
        if profile as usize >= wire.profiles.len() {
            return Err(BlockError::Damaged(format!("no profile {profile}")));
        }
        at = at.saturating_add_unsigned(delta);
        visits.push((at, profile));
    }
    Ok(Decoded {
        profiles: wire.profiles,
        visits,
    })
}

/// Dedupes profiles for [`encode`] when visits arrive one at a time (stored rows).
#[derive(Default)]
pub struct ProfileTable<'a> {
    pub profiles: Vec<BlockProfile<'a>>,
    index: HashMap<BlockProfile<'a>, u32>,
}

impl<'a> ProfileTable<'a> {
    /// The index of `profile`, added if new.
    pub fn index(&mut self, profile: BlockProfile<'a>) -> u32 {
        let next = self.profiles.len() as u32;
        *self.index.entry(profile.clone()).or_insert_with(|| {
            self.profiles.push(profile);
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(link_id: i64, browser: &'static str, ip: Option<&str>) -> Profile {
        Profile {
            link_id,
            browser,
            os: "Linux",
            device: "desktop",
            bot: false,
            language: Some("en".into()),
            referrer_host: None,
            referrer_url: None,
            country: Some("SE".into()),
            region: None,
            city: Some("Linköping".into()),
            ip: ip.map(|ip| ip.parse().unwrap()),
            qr: false,
            counted: false,
        }
    }

    #[test]
    fn groups_round_trip_per_link_in_time_order() {
        let groups = vec![
            VisitGroup {
                profile: profile(7, "Firefox", Some("89.160.20.0")),
                times: vec![1_000_300, 1_000_100],
            },
            VisitGroup {
                profile: profile(3, "Chrome", None),
                times: vec![2_000_000],
            },
            VisitGroup {
                profile: profile(7, "Chrome", None),
                times: vec![1_000_200, 1_000_100],
            },
        ];
        let blocks = encode_groups(&groups);
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            (blocks[0].link_id, blocks[0].visits, blocks[0].first_at),
            (3, 1, 2_000_000)
        );
        let seven = &blocks[1];
        assert_eq!((seven.link_id, seven.visits), (7, 4));
        assert_eq!((seven.first_at, seven.last_at), (1_000_100, 1_000_300));
        let decoded = decode(seven.first_at, &seven.data).unwrap();
        let read: Vec<(i64, &str, Option<&str>)> = decoded
            .visits
            .iter()
            .map(|&(at, p)| {
                let p = &decoded.profiles[p as usize];
                (at, p.browser, p.ip)
            })
            .collect();
        assert_eq!(
            read,
            [
                (1_000_100, "Firefox", Some("89.160.20.0")),
                (1_000_100, "Chrome", None),
                (1_000_200, "Chrome", None),
                (1_000_300, "Firefox", Some("89.160.20.0")),
            ]
        );
        let listed = decoded.profiles[0].visit(Some(5), 1_000_100);
        assert_eq!(listed.city.as_deref(), Some("Linköping"));
        assert_eq!(listed.id, Some(5));
    }

    #[test]
    fn a_busy_drain_is_split_and_each_block_carries_only_its_profiles() {
        let (firefox, chrome) = (profile(1, "Firefox", None), profile(1, "Chrome", None));
        let profiles = [block_profile(&firefox, None), block_profile(&chrome, None)];
        // Firefox for the first MAX_VISITS visits, then Chrome.
        let mut visits: Vec<(i64, u32)> = (0..MAX_VISITS as i64 + 10)
            .map(|i| (i, u32::from(i >= MAX_VISITS as i64)))
            .collect();
        let blocks = encode(1, &profiles, &mut visits);
        assert_eq!(
            blocks.iter().map(|b| b.visits).collect::<Vec<_>>(),
            [MAX_VISITS, 10]
        );
        let first = decode(blocks[0].first_at, &blocks[0].data).unwrap();
        let second = decode(blocks[1].first_at, &blocks[1].data).unwrap();
        assert_eq!(first.profiles.len(), 1);
        assert_eq!(second.profiles[0].browser, "Chrome");
        assert_eq!(second.visits[9], (MAX_VISITS as i64 + 9, 0));
        // A repeat visit costs a few bytes, not a row.
        assert!(
            blocks[0].data.len() < MAX_VISITS * 3,
            "{}",
            blocks[0].data.len()
        );
    }

    #[test]
    fn times_at_the_ends_of_the_range_round_trip() {
        // Found by fuzz/fuzz_targets/block.rs: a gap wider than i64::MAX overflowed.
        let firefox = profile(1, "Firefox", None);
        let profiles = [block_profile(&firefox, None)];
        let mut visits = vec![(i64::MAX, 0), (i64::MIN, 0), (0, 0)];
        let blocks = encode(1, &profiles, &mut visits);
        assert_eq!(
            (blocks[0].first_at, blocks[0].last_at),
            (i64::MIN, i64::MAX)
        );
        let decoded = decode(blocks[0].first_at, &blocks[0].data).unwrap();
        assert_eq!(decoded.visits, [(i64::MIN, 0), (0, 0), (i64::MAX, 0)]);
    }

    #[test]
    fn damaged_or_foreign_blocks_are_errors_not_panics() {
        assert!(matches!(decode(0, &[]), Err(BlockError::Damaged(_))));
        assert!(matches!(decode(0, &[9, 0, 0]), Err(BlockError::Format(9))));
        let block = &encode_groups(&[VisitGroup {
            profile: profile(1, "Firefox", None),
            times: vec![5, 6],
        }])[0];
        for cut in 1..block.data.len() {
            assert!(decode(0, &block.data[..cut]).is_err(), "cut at {cut}");
        }
        // A visit naming a profile the block does not have.
        let wire = Wire {
            profiles: vec![],
            visits: vec![(0, 0)],
        };
        let data = postcard::to_extend(&wire, vec![FORMAT]).unwrap();
        assert!(matches!(decode(0, &data), Err(BlockError::Damaged(_))));
    }
}
