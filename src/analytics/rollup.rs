//! Rollups of a batch of visits, summed in memory before any backend writes them:
//! visits per (link, hour) and human visits per (link, dimension, day, value). Both
//! backends write exactly these sums, so a stats answer cannot differ by backend.

use crate::analytics::enrich::{Profile, VisitGroup};
use std::collections::BTreeMap;

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

/// A breakdown key of a day's row and its summed clicks, as a stats answer lists them:
/// (dimension, value, clicks). A key is `"dimension:value"` (`"country:SE"`, `"city:"`
/// for unknown); dimension names hold no `:`, so the first one splits it. `None` for a
/// key [`dims_json`] did not write.
pub fn split_dim_key(key: &str, clicks: i64) -> Option<(String, String, u64)> {
    let (dim, value) = key.split_once(':')?;
    Some((dim.to_owned(), value.to_owned(), clicks.max(0) as u64))
}

/// A link's human visits of one day by dimension, as stored in one row: a JSON object
/// from `"dimension:value"` to visits (`{"browser:Firefox": 3, "country:SE": 3, …}`).
/// One row per link and day instead of one per dimension value: a visit to a link seen
/// for the first time that day writes one row, not nine. `counts` names each
/// (dimension, value) once.
pub fn dims_json<'a>(counts: impl IntoIterator<Item = (&'a str, &'a str, i64)>) -> String {
    use std::io::Write;
    let mut out = Vec::with_capacity(256);
    let mut key = String::new();
    out.push(b'{');
    for (i, (dim, value, clicks)) in counts.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        key.clear();
        key.push_str(dim);
        key.push(':');
        key.push_str(value);
        serde_json::to_writer(&mut out, &key).expect("writing into a Vec cannot fail");
        write!(out, ":{clicks}").expect("writing into a Vec cannot fail");
    }
    out.push(b'}');
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// A batch's rollups, each key once and in key order (so that writers touch rows in
/// the same order and concurrent writers cannot deadlock).
#[derive(Debug, Default)]
pub struct Rollups {
    /// (link, hour start) → (humans, bots).
    pub hours: BTreeMap<(i64, i64), (i64, i64)>,
    /// (link, day start) → the day's human visits by dimension, as [`dims_json`].
    pub days: BTreeMap<(i64, i64), String>,
    /// Link → clicks not yet in its total: every visit except those a click-limit
    /// reservation already counted.
    pub uncounted: BTreeMap<i64, i64>,
}

/// One (dimension index into [`DIMENSIONS`], value, visits) of a day being summed.
type DayEntry<'a> = (u8, &'a str, i64);

impl Rollups {
    pub fn of(groups: &[VisitGroup]) -> Self {
        let mut hours: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
        let mut uncounted: BTreeMap<i64, i64> = BTreeMap::new();
        // Human visits per (link, day): each run of a group adds its nine values, which
        // are summed per (dimension, value) once the batch is in. Rows of a day are
        // what the store writes, so this is one allocation per row, not per value.
        let mut days: BTreeMap<(i64, i64), Vec<DayEntry<'_>>> = BTreeMap::new();
        for group in groups {
            let profile = &group.profile;
            let link = profile.link_id;
            if !profile.counted {
                *uncounted.entry(link).or_default() += group.times.len() as i64;
            }
            for (hour, n) in runs(&group.times, HOUR_S) {
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
                let entries = days.entry((link, day)).or_default();
                entries.extend((0..).zip(values).map(|(dim, value)| (dim, value, n)));
            }
        }
        let days = days
            .into_iter()
            .map(|(key, mut entries)| {
                entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
                entries.dedup_by(|next, kept| {
                    let same = (next.0, next.1) == (kept.0, kept.1);
                    if same {
                        kept.2 += next.2;
                    }
                    same
                });
                let counts = entries
                    .iter()
                    .map(|&(dim, value, n)| (DIMENSIONS[dim as usize], value, n));
                (key, dims_json(counts))
            })
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
        assert_eq!(
            split_dim_key("referrer:example.org:8080", 4),
            Some(("referrer".into(), "example.org:8080".into(), 4))
        );
        assert_eq!(
            split_dim_key("city:", 1),
            Some(("city".into(), "".into(), 1))
        );
        assert_eq!(split_dim_key("nodim", 1), None);
        let json = dims_json([("city", "\"Malmö\"", 2), ("country", "", 1)]);
        let parsed: BTreeMap<String, i64> = serde_json::from_str(&json).unwrap();
        assert_eq!(
            parsed.into_iter().collect::<Vec<_>>(),
            [("city:\"Malmö\"".to_owned(), 2), ("country:".to_owned(), 1)]
        );
    }

    #[test]
    fn a_day_sums_its_values_over_every_group_of_the_batch() {
        use crate::analytics::enrich::Profile;
        let group = |browser: &'static str, bot: bool, times: Vec<i64>| VisitGroup {
            profile: Profile {
                bot,
                country: Some("SE".into()),
                ..Profile::for_test(7, browser)
            },
            times,
        };
        let day = DAY_S * 1000;
        let groups = [
            group("Firefox", false, vec![0, 1, day]),
            group("Chrome", false, vec![2]),
            group("Firefox", false, vec![3]),
            group("Bot", true, vec![4]),
        ];
        let rollups = Rollups::of(&groups);
        let first: BTreeMap<String, i64> = serde_json::from_str(&rollups.days[&(7, 0)]).unwrap();
        assert_eq!(first["browser:Firefox"], 3);
        assert_eq!(first["browser:Chrome"], 1);
        assert_eq!(first["country:SE"], 4);
        assert_eq!(first["source:link"], 4);
        assert!(!first.contains_key("browser:Bot"));
        assert_eq!(first.len(), 2 + 8);
        let second: BTreeMap<String, i64> =
            serde_json::from_str(&rollups.days[&(7, DAY_S)]).unwrap();
        assert_eq!(second["browser:Firefox"], 1);
        assert_eq!(rollups.hours[&(7, 0)], (4, 1));
    }
}
