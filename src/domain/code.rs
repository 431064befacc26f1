//! Short codes: the generated ones (a counter mapped through a keyed permutation of
//! the base62 code space) and the custom ones (aliases), plus the reserved paths
//! neither may take.
//!
//! Why a permutation and not random codes: random codes need a uniqueness query (or
//! a retry loop on conflict) per create, and sequential base62 reveals creation order
//! and lets anyone enumerate every link. A counter is unique by construction; passing
//! it through a keyed bijection of `[0, 62^len)` keeps that uniqueness while making
//! consecutive counters land on unrelated codes. The bijection is a balanced Feistel
//! network (SipHash-1-3 round function, keyed by a secret kept in the database) over
//! the smallest even bit width that covers the space, with cycle-walking to stay
//! inside `[0, 62^len)`.

use siphasher::sip::SipHasher13;
use std::fmt;
use std::hash::Hasher;

/// The 62 symbols of a generated code, in value order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Longest generated code: 62^11 no longer fits the 64-bit Feistel domain comfortably.
pub const MAX_GENERATED_LEN: u32 = 10;
/// Shortest generated code a deployment may configure (62^4 ≈ 14.8 million codes).
pub const MIN_GENERATED_LEN: u32 = 4;

/// Longest custom alias.
pub const MAX_ALIAS_LEN: usize = 64;

/// First path segments that belong to hop itself and can never be a short code.
/// Compared case-insensitively so that `/API` cannot shadow `/api` in a reader's eyes.
/// This is the one list: the router's own top-level paths must all appear here.
pub const RESERVED_PATHS: &[&str] = &[
    "api",
    "app",
    "docs",
    "healthz",
    "readyz",
    "metrics",
    "static",
    "assets",
    "openapi.json",
    "favicon.ico",
    "robots.txt",
    "login",
    "logout",
    "dashboard",
    "admin",
    ".well-known",
];

/// Whether `segment` is one of hop's own paths.
pub fn is_reserved(segment: &str) -> bool {
    RESERVED_PATHS
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(segment))
}

/// Feistel rounds; 8 balanced rounds are well past the 4 that make a keyed Feistel
/// network a pseudo-random permutation, and each costs one short SipHash.
const ROUNDS: u64 = 8;

/// The space of generated codes of one length, with the keyed permutation over it.
#[derive(Clone)]
pub struct CodeSpace {
    len: u32,
    size: u64,
    half_bits: u32,
    key: [u8; 16],
}

impl fmt::Debug for CodeSpace {
    // The key is a secret: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeSpace")
            .field("len", &self.len)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl CodeSpace {
    /// A code space of `len` base62 characters (1 to [`MAX_GENERATED_LEN`]), permuted by `key`.
    pub fn new(len: u32, key: [u8; 16]) -> Self {
        assert!(
            (1..=MAX_GENERATED_LEN).contains(&len),
            "code length {len} out of range"
        );
        let size = 62u64.pow(len);
        // Bits needed to hold size-1, rounded up to an even number for a balanced network.
        let bits = 64 - (size - 1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        Self {
            len,
            size,
            half_bits,
            key,
        }
    }

    /// Number of distinct codes: 62^len.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Code length in characters.
    pub fn code_len(&self) -> u32 {
        self.len
    }

    fn round(&self, round: u64, half: u64) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write_u64(round);
        hasher.write_u64(half);
        hasher.finish() & self.half_mask()
    }

    fn half_mask(&self) -> u64 {
        (1u64 << self.half_bits) - 1
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = self.half_mask();
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for round in 0..ROUNDS {
            let next = left ^ self.round(round, right);
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }

    fn feistel_inverse(&self, x: u64) -> u64 {
        let mask = self.half_mask();
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for round in (0..ROUNDS).rev() {
            let prev = right ^ self.round(round, left);
            right = left;
            left = prev;
        }
        (left << self.half_bits) | right
    }

    /// Maps `n` in `[0, size)` to a unique value in `[0, size)`.
    ///
    /// Cycle-walking: the Feistel domain is at most 4× the code space, so on average
    /// fewer than four steps land back inside it, and the walk stays a bijection.
    pub fn permute(&self, n: u64) -> u64 {
        debug_assert!(n < self.size);
        let mut x = self.feistel(n);
        while x >= self.size {
            x = self.feistel(x);
        }
        x
    }

    /// The inverse of [`CodeSpace::permute`].
    pub fn unpermute(&self, x: u64) -> u64 {
        debug_assert!(x < self.size);
        let mut n = self.feistel_inverse(x);
        while n >= self.size {
            n = self.feistel_inverse(n);
        }
        n
    }

    /// The code for counter value `n` (which must be below [`CodeSpace::size`]).
    pub fn encode(&self, n: u64) -> String {
        let mut value = self.permute(n);
        let mut out = vec![b'0'; self.len as usize];
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(value % 62) as usize];
            value /= 62;
        }
        String::from_utf8(out).expect("alphabet is ASCII")
    }

    /// The counter value a generated code came from, or `None` if it is not a code of
    /// this space (wrong length or a character outside the alphabet).
    pub fn decode(&self, code: &str) -> Option<u64> {
        if code.len() != self.len as usize {
            return None;
        }
        let mut value = 0u64;
        for byte in code.bytes() {
            let digit = match byte {
                b'0'..=b'9' => byte - b'0',
                b'A'..=b'Z' => byte - b'A' + 10,
                b'a'..=b'z' => byte - b'a' + 36,
                _ => return None,
            };
            value = value * 62 + u64::from(digit);
        }
        Some(self.unpermute(value))
    }
}

/// The code spaces of every generated length under one key: what turns any code back
/// into the counter value (and so the link id) it would have been generated from.
///
/// Stores use it to find a generated link by its integer key: links are stored in
/// counter order, and a lookup decodes the code, reads the row with that id and
/// checks that its code is the one asked for (see docs/ARCHITECTURE.md, "Link
/// storage").
#[derive(Clone, Debug)]
pub struct CodeBook {
    spaces: Vec<CodeSpace>,
}

impl CodeBook {
    /// Every length from 1 to [`MAX_GENERATED_LEN`], permuted by `key`.
    pub fn new(key: [u8; 16]) -> Self {
        Self {
            spaces: (1..=MAX_GENERATED_LEN)
                .map(|len| CodeSpace::new(len, key))
                .collect(),
        }
    }

    /// The space of codes `len` characters long.
    pub fn space(&self, len: u32) -> &CodeSpace {
        &self.spaces[len as usize - 1]
    }

    /// The counter value `code` decodes to, if it has the shape of a generated code.
    pub fn decode(&self, code: &str) -> Option<u64> {
        let len = code.len();
        if !(1..=MAX_GENERATED_LEN as usize).contains(&len) {
            return None;
        }
        self.spaces[len - 1].decode(code)
    }

    /// [`CodeBook::decode`] as the id a generated link with this code has (values are
    /// below 62^10, so they fit).
    pub fn decode_id(&self, code: &str) -> Option<i64> {
        self.decode(code).map(|v| v as i64)
    }
}

/// Whether `s` could be a short code at all (generated or alias): 1 to 64 characters of
/// `[A-Za-z0-9_-]`. The redirect path uses this to answer 404 without a lookup.
pub fn is_code_syntax(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ALIAS_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a custom alias was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AliasError {
    #[error("alias must be 1 to {MAX_ALIAS_LEN} characters long (got {0})")]
    Length(usize),
    #[error("alias may contain only letters, digits, `_` and `-` (found {0:?} at character {1})")]
    Character(char, usize),
    #[error("alias `{0}` is reserved for hop's own paths")]
    Reserved(String),
}

/// Validates a custom alias: `[A-Za-z0-9_-]{1,64}`, case-sensitive, not reserved.
pub fn validate_alias(alias: &str) -> Result<(), AliasError> {
    let chars = alias.chars().count();
    if chars == 0 || chars > MAX_ALIAS_LEN {
        return Err(AliasError::Length(chars));
    }
    if let Some((index, bad)) = alias
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(AliasError::Character(bad, index + 1));
    }
    if is_reserved(alias) {
        return Err(AliasError::Reserved(alias.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn permutation_is_a_bijection_on_a_whole_small_space() {
        // 62^3 = 238,328 values: small enough to check every one.
        let space = CodeSpace::new(3, [7; 16]);
        let mut seen = HashSet::with_capacity(space.size() as usize);
        for n in 0..space.size() {
            let x = space.permute(n);
            assert!(x < space.size());
            assert!(seen.insert(x), "{x} produced twice");
        }
        assert_eq!(seen.len() as u64, space.size());
    }

    #[test]
    fn consecutive_counters_give_unrelated_codes() {
        let space = CodeSpace::new(7, *b"0123456789abcdef");
        let codes: Vec<String> = (1000..1010).map(|n| space.encode(n)).collect();
        // No shared prefix longer than chance would give between neighbours.
        for pair in codes.windows(2) {
            let shared = pair[0]
                .bytes()
                .zip(pair[1].bytes())
                .take_while(|(a, b)| a == b)
                .count();
            assert!(shared < 3, "{} and {} look sequential", pair[0], pair[1]);
        }
    }

    #[test]
    fn different_keys_give_different_codes() {
        let a = CodeSpace::new(7, [1; 16]);
        let b = CodeSpace::new(7, [2; 16]);
        assert_ne!(a.encode(1), b.encode(1));
    }

    #[test]
    fn alias_rules() {
        assert!(validate_alias("my-link_2").is_ok());
        assert!(validate_alias("A").is_ok());
        assert_eq!(validate_alias(""), Err(AliasError::Length(0)));
        assert_eq!(validate_alias(&"x".repeat(65)), Err(AliasError::Length(65)));
        assert_eq!(validate_alias("a b"), Err(AliasError::Character(' ', 2)));
        assert_eq!(validate_alias("héllo"), Err(AliasError::Character('é', 2)));
        assert!(matches!(
            validate_alias("api"),
            Err(AliasError::Reserved(_))
        ));
        assert!(matches!(
            validate_alias("Healthz"),
            Err(AliasError::Reserved(_))
        ));
        assert!(matches!(
            validate_alias("openapi.json"),
            Err(AliasError::Character('.', 8))
        ));
    }

    proptest! {
        #[test]
        fn decode_of_encode_round_trips(len in 1u32..=MAX_GENERATED_LEN, key: [u8; 16], seed: u64) {
            let space = CodeSpace::new(len, key);
            let n = seed % space.size();
            let code = space.encode(n);
            prop_assert_eq!(code.len(), len as usize);
            prop_assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
            prop_assert_eq!(space.decode(&code), Some(n));
        }

        #[test]
        fn a_code_book_decodes_every_length(len in 1u32..=MAX_GENERATED_LEN, key: [u8; 16], seed: u64) {
            let book = CodeBook::new(key);
            let n = seed % book.space(len).size();
            prop_assert_eq!(book.decode(&book.space(len).encode(n)), Some(n));
        }

        #[test]
        fn a_code_book_refuses_what_no_space_has(code in "[A-Za-z0-9_-]{0,64}") {
            let book = CodeBook::new([3; 16]);
            let shaped = (1..=MAX_GENERATED_LEN as usize).contains(&code.len())
                && code.bytes().all(|b| b.is_ascii_alphanumeric());
            prop_assert_eq!(book.decode(&code).is_some(), shaped);
        }

        #[test]
        fn permute_is_injective_on_samples(key: [u8; 16], a: u64, b: u64) {
            let space = CodeSpace::new(7, key);
            let (a, b) = (a % space.size(), b % space.size());
            prop_assert_eq!(space.permute(a) == space.permute(b), a == b);
            prop_assert_eq!(space.unpermute(space.permute(a)), a);
        }

        #[test]
        fn every_code_decodes_to_a_counter(len in 1u32..=MAX_GENERATED_LEN, key: [u8; 16], seed: u64) {
            // Surjectivity seen from the other side: any code of the right shape comes
            // from exactly one counter value.
            let space = CodeSpace::new(len, key);
            let x = seed % space.size();
            let n = space.unpermute(x);
            prop_assert!(n < space.size());
            prop_assert_eq!(space.permute(n), x);
        }
    }
}
