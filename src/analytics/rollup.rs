//! Rollups of a batch of visits, summed in memory before any backend writes them:
//! visits per (link, hour) and human visits per (link, dimension, day, value). Both
//! backends write exactly these sums, so a stats answer cannot differ by backend.

use crate::analytics::enrich::{Profile, VisitGroup};
use std::collections::{BTreeMap, HashMap};

pub const HOUR_S: i64 = 3600;
pub const DAY_S: i64 = 86_400;

/// The dimensions visits are broken down by, as named in `visit_day_dims.dims`.
/// `source` is how the visitor came: `link` or `qr` (scanned the link's QR code).
pub const DIMENSIONS: [&str; 9] = [
    "country", "region", "city", "referrer", "browser", "os", "device", "language", "source",
];

pub fn floor_to(seconds: i64, unit: i64) -> i64 {
    seconds.div_euclid(unit) * unit
}

/// The values a profile contributes to each dimension ('' when unknown).
fn dimension_values(profile: &Profile) -> [&str; 9] {
    fn text(value: &Option<String>) -> &str {
        value.as_deref().unwrap_or("")
    }
    [
        text(&profile.country),
        text(&profile.region),
        text(&profile.city),
        text(&profile.referrer_host),
        profile.browser,
        profile.os,
        profile.device,
        text(&profile.language),
        if profile.qr { "qr" } else { "link" },
    ]
}

/// Visit times (Unix ms) as runs of (period start in Unix s, visits) for periods of
/// `unit` seconds: a group's visits mostly share an hour and a day, so a run is added
/// to a rollup once instead of each visit.
pub fn runs(times: &[i64], unit: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
    let mut periods = times
        .iter()
        .map(move |at_ms| floor_to(at_ms.div_euclid(1000), unit))
        .peekable();
    std::iter::from_fn(move || {
        let period = periods.next()?;
        let mut n = 1;
        while periods.next_if_eq(&period).is_some() {
            n += 1;
        }
        Some((period, n))
    })
}

/// The key of one dimension's value in a day's breakdowns: `"country:SE"`, `"city:"`
/// (unknown). Dimension names hold no `:`, so the first one splits it back.
pub fn dim_key(dim: &str, value: &str) -> String {
    format!("{dim}:{value}")
}

/// A breakdown key and its summed clicks, as a stats answer lists it: (dimension,
/// value, clicks); `None` for a key [`dim_key`] did not make.
pub fn split_dim_key(key: &str, clicks: i64) -> Option<(String, String, u64)> {
    let (dim, value) = key.split_once(':')?;
    Some((dim.to_owned(), value.to_owned(), clicks.max(0) as u64))
}

/// A link's human visits of one day by dimension, as stored in one row: a JSON object
/// from [`dim_key`] to visits (`{"browser:Firefox": 3, "country:SE": 3, …}`). One row
/// per link and day instead of one per dimension value: a visit to a link seen for the
/// first time that day writes one row, not nine.
pub fn dims_json(counts: &BTreeMap<String, i64>) -> String {
    serde_json::to_string(counts).expect("a map of strings to integers always encodes")
}

/// A batch's rollups, each key once and in key order (so that writers touch rows in
/// the same order and concurrent writers cannot deadlock).
#[derive(Debug, Default)]
pub struct Rollups {
    /// (link, hour start) → (humans, bots).
    pub hours: BTreeMap<(i64, i64), (i64, i64)>,
    /// (link, day start) → the day's human visits by dimension, as [`dims_json`].
    pub days: BTreeMap<(i64, i64), String>,
    /// (link, hour start) → clicks not yet in the links' totals: every visit except
    /// those a click-limit reservation already counted.
    pub uncounted: BTreeMap<(i64, i64), i64>,
}

impl Rollups {
    pub fn of(groups: &[VisitGroup]) -> Self {
        let mut hours: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
        let mut uncounted: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        // Human visits are first counted per (link, day, all nine values), then spread
        // over the dimensions: a batch is a few visitor profiles with many visits each.
        let mut profiles: HashMap<(i64, i64, [&str; 9]), i64> = HashMap::new();
        for group in groups {
            let profile = &group.profile;
            let link = profile.link_id;
            for (hour, n) in runs(&group.times, HOUR_S) {
                if !profile.counted {
                    *uncounted.entry((link, hour)).or_default() += n;
                }
                let counts = hours.entry((link, hour)).or_default();
                if profile.bot {
                    counts.1 += n;
                } else {
                    counts.0 += n;
                }
            }
            if profile.bot {
                continue;
            }
            let values = dimension_values(profile);
            for (day, n) in runs(&group.times, DAY_S) {
                *profiles.entry((link, day, values)).or_default() += n;
            }
        }
        let mut dims: BTreeMap<(i64, i64), BTreeMap<String, i64>> = BTreeMap::new();
        for ((link, day, values), clicks) in profiles {
            let counts = dims.entry((link, day)).or_default();
            for (dim, value) in DIMENSIONS.iter().zip(values) {
                *counts.entry(dim_key(dim, value)).or_default() += clicks;
            }
        }
        let days = dims
            .into_iter()
            .map(|(key, counts)| (key, dims_json(&counts)))
            .collect();
        Self {
            hours,
            days,
            uncounted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_count_consecutive_visits_of_a_period() {
        let times = [0, 999, 3_599_999, 3_600_000, 1_000, -1];
        let found: Vec<(i64, i64)> = runs(&times, HOUR_S).collect();
        assert_eq!(found, [(0, 3), (3600, 1), (0, 1), (-3600, 1)]);
        assert_eq!(runs(&[], DAY_S).count(), 0);
    }

    #[test]
    fn breakdown_keys_split_at_the_first_colon() {
        let key = dim_key("referrer", "example.org:8080");
        assert_eq!(key, "referrer:example.org:8080");
        assert_eq!(
            split_dim_key(&key, 4),
            Some(("referrer".into(), "example.org:8080".into(), 4))
        );
        assert_eq!(
            split_dim_key("city:", 1),
            Some(("city".into(), "".into(), 1))
        );
        assert_eq!(split_dim_key("nodim", 1), None);
    }
}
