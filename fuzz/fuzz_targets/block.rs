//! The visit-block decoder (`analytics::block::decode`) on arbitrary bytes: what a
//! damaged or foreign `visit_blocks` row would give it.
//!
//! Checks: no panic, and no allocation past a budget proportional to the input (the
//! allocator below refuses it, which aborts, which libFuzzer reports as a crash); a block
//! that decodes names only profiles it has, its times never go back, and encoding what
//! was decoded and decoding that again gives the same visits.

#![no_main]

use cap::Cap;
use hop::analytics::block::{self, BlockProfile};
use libfuzzer_sys::fuzz_target;
use std::alloc::System;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// What decoding may allocate: serde's cautious preallocation for a sequence
/// (1 MiB at most) for each of the two, plus a bounded number of bytes per input byte.
fn budget(input_len: usize) -> usize {
    4 * 1024 * 1024 + 64 * input_len
}

fuzz_target!(|data: &[u8]| {
    for first_at in [1_800_000_000_000, i64::MIN, i64::MAX] {
        ALLOCATOR
            .set_limit(ALLOCATOR.allocated() + budget(data.len()))
            .expect("limit above what is allocated");
        let decoded = block::decode(first_at, data);
        ALLOCATOR.set_limit(usize::MAX).expect("no limit");
        let Ok(decoded) = decoded else {
            continue;
        };
        // Each visit takes two varints, a byte at least each.
        assert!(decoded.visits.len() <= data.len() / 2);
        let mut previous = first_at;
        for &(at, profile) in &decoded.visits {
            assert!((profile as usize) < decoded.profiles.len());
            assert!(at >= previous, "time went back in a block");
            previous = at;
        }
        round_trip(&decoded.profiles, &decoded.visits);
    }
});

/// Encodes visits and decodes the blocks: the same (time, profile) sequence comes back.
fn round_trip(profiles: &[BlockProfile<'_>], visits: &[(i64, u32)]) {
    let mut sorted = visits.to_vec();
    let blocks = block::encode(7, profiles, &mut sorted);
    let mut back = Vec::new();
    for encoded in &blocks {
        let decoded = block::decode(encoded.first_at, &encoded.data).expect("own block decodes");
        back.extend(
            decoded
                .visits
                .iter()
                .map(|&(at, p)| (at, decoded.profiles[p as usize].clone())),
        );
    }
    let want: Vec<_> = sorted
        .iter()
        .map(|&(at, p)| (at, profiles[p as usize].clone()))
        .collect();
    assert_eq!(back, want);
}
