//! Pure types and rules: short codes, domain names, target URLs, links, API keys. No I/O here; every
//! rule is unit-tested next to its code.

pub mod code;
pub mod host;
pub mod key;
pub mod link;
pub mod password;
pub mod url;
