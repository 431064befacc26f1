//! `Accept-Language` (`analytics::language::primary_language`), run on every click.
//!
//! Checks: no panic; a result is a 2 to 8 letter lower-case subtag that the header
//! carries; it is its own primary language; ASCII case changes nothing; only the first
//! 16 entries are read (the bound on a hostile header's cost).

#![no_main]

use hop::analytics::language::primary_language;
use libfuzzer_sys::fuzz_target;

/// Entries read per header (`MAX_ENTRIES` in the module).
const MAX_ENTRIES: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let language = primary_language(header);
    if let Some(language) = language {
        let tag = language.as_str();
        assert!((2..=8).contains(&tag.len()), "{header:?} gave {tag:?}");
        assert!(
            tag.bytes().all(|b| b.is_ascii_lowercase()),
            "{header:?} gave {tag:?}"
        );
        assert!(
            header.to_ascii_lowercase().contains(tag),
            "{header:?} gave {tag:?}, which it does not carry"
        );
        assert_eq!(primary_language(tag), Some(language));
        assert_eq!(language.to_string(), tag);
    }
    assert_eq!(
        primary_language(&header.to_ascii_uppercase()),
        language,
        "{header:?} in upper case"
    );
    assert_eq!(
        primary_language(&header.to_ascii_lowercase()),
        language,
        "{header:?} in lower case"
    );
    let first: Vec<&str> = header.split(',').take(MAX_ENTRIES).collect();
    assert_eq!(
        primary_language(&first.join(",")),
        language,
        "{header:?}: entries past the first {MAX_ENTRIES} counted"
    );
});
