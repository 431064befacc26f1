//! API keys: how they look, how they are generated, and how they are stored.
//!
//! A key is `hop_` followed by 40 base62 characters (~238 bits of randomness). Because
//! keys are long and random, a single SHA-256 is the right stored form: a slow password
//! hash (Argon2) protects guessable secrets and would only add milliseconds to every API
//! call here. The first 12 characters are kept in clear as a visible prefix so that a
//! person can tell keys apart in listings and logs without seeing the secret.

use rand::Rng;
use sha2::{Digest, Sha256};

const KEY_PREFIX: &str = "hop_";
const KEY_RANDOM_CHARS: usize = 40;
/// Characters of a key shown in listings: `hop_` plus eight.
pub const VISIBLE_PREFIX_LEN: usize = 12;

/// A freshly generated key: the secret (shown once) and what is stored.
pub struct GeneratedKey {
    pub secret: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

/// Generates a new random API key.
pub fn generate() -> GeneratedKey {
    let mut rng = rand::rng();
    let mut secret = String::with_capacity(KEY_PREFIX.len() + KEY_RANDOM_CHARS);
    secret.push_str(KEY_PREFIX);
    for _ in 0..KEY_RANDOM_CHARS {
        let index = rng.random_range(0..super::code::ALPHABET.len());
        secret.push(char::from(super::code::ALPHABET[index]));
    }
    GeneratedKey {
        prefix: secret[..VISIBLE_PREFIX_LEN].to_owned(),
        hash: hash(&secret),
        secret,
    }
}

/// The stored form of a key.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `secret` has the shape of a hop key (checked before any lookup).
pub fn looks_like_key(secret: &str) -> bool {
    secret.len() == KEY_PREFIX.len() + KEY_RANDOM_CHARS
        && secret.starts_with(KEY_PREFIX)
        && secret[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let a = generate();
        let b = generate();
        assert!(looks_like_key(&a.secret));
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.prefix, &a.secret[..12]);
        assert_eq!(a.hash, hash(&a.secret));
        assert!(!looks_like_key("hop_short"));
        assert!(!looks_like_key(&a.secret.replace("hop_", "pop_")));
    }
}
