//! Link and user passwords: validated, stored as Argon2id PHC strings (salted, slow on
//! purpose, since people choose guessable passwords), verified in constant time by
//! the argon2 crate. Hashing and verifying take tens of milliseconds: callers run
//! them off the async workers.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest and longest password accepted, in characters.
pub const MIN_CHARS: usize = 4;
pub const MAX_CHARS: usize = 128;

/// Shortest password a user may sign in with: an account opens every link and key
/// of its user, so it asks for more than a link's password.
pub const MIN_ACCOUNT_CHARS: usize = 8;

/// Whether `password` may protect a link.
pub fn is_valid(password: &str) -> bool {
    is_valid_between(password, MIN_CHARS)
}

/// Whether `password` may be a user's sign-in password.
pub fn is_valid_for_account(password: &str) -> bool {
    is_valid_between(password, MIN_ACCOUNT_CHARS)
}

fn is_valid_between(password: &str, min_chars: usize) -> bool {
    let chars = password.chars().count();
    (min_chars..=MAX_CHARS).contains(&chars) && !password.chars().any(char::is_control)
}

/// The stored form of a password (Argon2id with a random salt, PHC string format).
pub fn hash(password: &str) -> String {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters accepts any password")
        .to_string()
}

/// Whether `password` matches the stored `phc` string (false for a malformed one).
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("open sesame");
        let b = hash("open sesame");
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salts must differ");
        assert!(verify("open sesame", &a));
        assert!(!verify("open sesami", &a));
        assert!(!verify("open sesame", "not a hash"));
    }

    #[test]
    fn bounds() {
        assert!(is_valid("1234"));
        assert!(!is_valid("123"));
        assert!(!is_valid(&"x".repeat(129)));
        assert!(!is_valid("abc\u{0}def"));
        assert!(!is_valid_for_account("1234567"));
        assert!(is_valid_for_account("12345678"));
        assert!(!is_valid_for_account(&"x".repeat(129)));
    }
}
