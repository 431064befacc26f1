//! The visitor's preferred language, from the `Accept-Language` header.
//!
//! Analytics want "which languages do my visitors read", not the full preference list or
//! the region: `fr-CH, fr;q=0.9, en;q=0.8` counts as `fr`. Only the primary subtag of the
//! entry with the highest quality is kept.

use std::fmt;

/// At most this many entries of a header are examined, so a hostile header costs bounded
/// work. Browsers send a handful.
const MAX_ENTRIES: usize = 16;

/// A primary language subtag (BCP 47: 2 to 8 letters), lower-cased, stored inline so that
/// finding it allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Language {
    bytes: [u8; 8],
    len: u8,
}

impl Language {
    /// The subtag, e.g. `"en"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }

    fn from_subtag(subtag: &str) -> Option<Self> {
        // One-letter primary subtags are `i-` (grandfathered) and `x-` (private use):
        // not languages anyone can count.
        if !(2..=8).contains(&subtag.len()) || !subtag.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let mut bytes = [0; 8];
        for (to, from) in bytes.iter_mut().zip(subtag.bytes()) {
            *to = from.to_ascii_lowercase();
        }
        Some(Self {
            bytes,
            len: subtag.len() as u8,
        })
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Language({:?})", self.as_str())
    }
}

/// The primary subtag of the most preferred language in an `Accept-Language` value, or
/// `None` when there is none worth counting (`*`, only `q=0` entries, garbage).
///
/// Ties keep the first entry, as browsers list languages in order of preference. Entries
/// that do not parse are skipped rather than failing the whole header.
pub fn primary_language(accept_language: &str) -> Option<Language> {
    let mut best: Option<(Language, u16)> = None;
    for entry in accept_language.split(',').take(MAX_ENTRIES) {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let Some(quality) = quality(parts) else {
            continue;
        };
        if quality == 0 {
            continue;
        }
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        let Some(language) = Language::from_subtag(primary) else {
            continue;
        };
        if best.is_none_or(|(_, q)| quality > q) {
            best = Some((language, quality));
        }
    }
    best.map(|(language, _)| language)
}

/// The `q` parameter in thousandths (1000 when absent), or `None` when it is malformed.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut quality = 1000;
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            quality = parse_qvalue(value.trim())?;
        }
    }
    Some(quality)
}

/// RFC 9110 `qvalue`: `0` to `1` with at most three decimals.
fn parse_qvalue(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut scale = 100;
    for digit in fraction.bytes() {
        thousandths += u16::from(digit - b'0') * scale;
        scale /= 10;
    }
    (thousandths <= 1000).then_some(thousandths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(header: &str) -> Option<String> {
        primary_language(header).map(|l| l.to_string())
    }

    #[test]
    fn picks_the_primary_subtag_of_the_highest_quality() {
        let cases = [
            ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", Some("fr")),
            ("en-US,en;q=0.5", Some("en")),
            ("en", Some("en")),
            ("de;q=0.5, ja;q=0.9", Some("ja")),
            ("PT-br", Some("pt")),
            ("zh_TW", Some("zh")),
            ("zh-Hant-TW;q=1.0", Some("zh")),
            ("  es  ;  q=0.8 ", Some("es")),
            ("de;Q=0.2, it;q=0.3", Some("it")),
            ("fil-PH", Some("fil")),
            // Ties keep the first.
            ("nl;q=0.8, sv;q=0.8", Some("nl")),
            // `*` is not a language; the next one is.
            ("*, en;q=0.1", Some("en")),
        ];
        for (header, want) in cases {
            assert_eq!(lang(header).as_deref(), want, "{header:?}");
        }
    }

    #[test]
    fn none_when_nothing_is_worth_counting() {
        let cases = [
            "",
            "*",
            "en;q=0",
            "en;q=0.000, fr;q=0",
            "x-klingon",
            "i-default",
            "12345",
            "€€€",
            ";;;,,,",
            "en;q=2",
            "en;q=0.5555",
            "en;q=abc",
            "en;q=-1",
            "toolonglanguage",
        ];
        for header in cases {
            assert_eq!(lang(header), None, "{header:?}");
        }
    }

    #[test]
    fn malformed_entries_are_skipped_not_fatal() {
        assert_eq!(lang("en;q=abc, fr;q=0.3").as_deref(), Some("fr"));
        assert_eq!(lang("???, de").as_deref(), Some("de"));
    }

    #[test]
    fn long_headers_are_cut_after_max_entries() {
        let mut header = vec!["zz;q=0.1"; MAX_ENTRIES];
        header.push("en");
        assert_eq!(lang(&header.join(",")).as_deref(), Some("zz"));
        let huge = "x,".repeat(1_000_000);
        assert_eq!(lang(&huge), None);
    }

    #[test]
    fn quality_values() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("1.001"), None);
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.05"), Some(50));
        assert_eq!(parse_qvalue("0."), Some(0));
        assert_eq!(parse_qvalue(""), None);
    }
}
