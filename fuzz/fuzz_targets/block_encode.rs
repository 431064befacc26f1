//! The visit-block encoder and decoder (`analytics::block`) on structured input: any
//! link's visits, with any profiles and times.
//!
//! Checks: `encode` splits into blocks of at most `MAX_VISITS` in time order, each
//! with its first and last time and only the profiles its visits use; every block
//! decodes to exactly the visits (time and profile) that went in.

#![no_main]

use hop::analytics::block::{self, BlockProfile, MAX_VISITS};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Profile<'a> {
    bot: bool,
    qr: bool,
    browser: &'a str,
    os: &'a str,
    device: &'a str,
    language: Option<&'a str>,
    referrer_host: Option<&'a str>,
    referrer_url: Option<&'a str>,
    country: Option<&'a str>,
    region: Option<&'a str>,
    city: Option<&'a str>,
    ip: Option<&'a str>,
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    link_id: i64,
    /// Repeats the visits, so that a small input can make a drain over `MAX_VISITS`.
    repeat: u8,
    profiles: Vec<Profile<'a>>,
    visits: Vec<(i64, u16)>,
}

fuzz_target!(|input: Input<'_>| {
    if input.profiles.is_empty() {
        return;
    }
    let profiles: Vec<BlockProfile<'_>> = input
        .profiles
        .iter()
        .map(|p| BlockProfile {
            bot: p.bot,
            qr: p.qr,
            browser: p.browser,
            os: p.os,
            device: p.device,
            language: p.language,
            referrer_host: p.referrer_host,
            referrer_url: p.referrer_url,
            country: p.country,
            region: p.region,
            city: p.city,
            ip: p.ip,
        })
        .collect();
    let count = profiles.len();
    let mut visits: Vec<(i64, u32)> = Vec::new();
    for round in 0..=i64::from(input.repeat % 4) * 32 {
        visits.extend(
            input
                .visits
                .iter()
                .map(|&(at, p)| (at.wrapping_add(round), u32::from(p) % count as u32)),
        );
    }

    let mut sorted = visits.clone();
    sorted.sort_unstable();
    let blocks = block::encode(input.link_id, &profiles, &mut visits);
    assert_eq!(visits, sorted, "encode leaves the visits sorted");
    assert_eq!(blocks.len(), sorted.len().div_ceil(MAX_VISITS));

    for (encoded, chunk) in blocks.iter().zip(sorted.chunks(MAX_VISITS)) {
        assert_eq!(encoded.link_id, input.link_id);
        assert_eq!(encoded.visits, chunk.len());
        assert_eq!(encoded.first_at, chunk[0].0);
        assert_eq!(encoded.last_at, chunk[chunk.len() - 1].0);
        let decoded = block::decode(encoded.first_at, &encoded.data).expect("own block decodes");
        assert_eq!(decoded.visits.len(), chunk.len());
        let mut used = vec![false; decoded.profiles.len()];
        for (&(at, p), &(want_at, want_p)) in decoded.visits.iter().zip(chunk) {
            assert_eq!(at, want_at);
            assert_eq!(decoded.profiles[p as usize], profiles[want_p as usize]);
            used[p as usize] = true;
        }
        assert!(
            used.iter().all(|&u| u),
            "a block carries a profile no visit uses"
        );
    }
});
