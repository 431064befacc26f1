//! Short codes (`domain::code`): the keyed Feistel permutation, base62 encoding and
//! decoding, the code syntax check and the alias rules.
//!
//! Input: a key, a code length, a counter and a text. Checks: `encode` gives a code of
//! the length in the alphabet and `decode(encode(n)) == n`; `unpermute(permute(n)) == n`;
//! any text `decode` accepts is exactly a code of the space and encodes back to itself
//! (so decoding is the inverse from the codes' side too); `decode` accepts exactly the
//! texts of the right length in the alphabet; `validate_alias` accepts exactly the texts
//! of code syntax that are not reserved, and names the offending character truthfully.

#![no_main]

use hop::domain::code::{
    AliasError, CodeSpace, MAX_ALIAS_LEN, MAX_GENERATED_LEN, is_code_syntax, is_reserved,
    validate_alias,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    key: [u8; 16],
    len: u8,
    counter: u64,
    text: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let len = u32::from(input.len) % MAX_GENERATED_LEN + 1;
    let space = CodeSpace::new(len, input.key);
    assert_eq!(space.size(), 62u64.pow(len));

    let n = input.counter % space.size();
    let x = space.permute(n);
    assert!(x < space.size());
    assert_eq!(space.unpermute(x), n);
    let code = space.encode(n);
    assert_eq!(code.len(), len as usize);
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{code:?}");
    assert!(is_code_syntax(&code));
    assert_eq!(space.decode(&code), Some(n), "{code:?}");

    let text = input.text;
    let shaped = text.len() == len as usize && text.bytes().all(|b| b.is_ascii_alphanumeric());
    match space.decode(text) {
        Some(m) => {
            assert!(shaped, "{text:?} decoded but is not a code of length {len}");
            assert!(m < space.size());
            assert_eq!(
                space.encode(m),
                text,
                "{text:?} decodes to {m}, which encodes elsewhere"
            );
        }
        None => assert!(
            !shaped,
            "{text:?} is a code of length {len} but did not decode"
        ),
    }

    let syntax = is_code_syntax(text);
    assert_eq!(
        syntax,
        !text.is_empty()
            && text.len() <= MAX_ALIAS_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    match validate_alias(text) {
        Ok(()) => assert!(
            syntax && !is_reserved(text),
            "{text:?} accepted as an alias"
        ),
        Err(AliasError::Length(chars)) => {
            assert_eq!(chars, text.chars().count());
            assert!(chars == 0 || chars > MAX_ALIAS_LEN);
            assert!(!syntax);
        }
        Err(AliasError::Character(bad, position)) => {
            assert!(!syntax);
            assert_eq!(text.chars().nth(position - 1), Some(bad), "{text:?}");
            assert!(!(bad.is_ascii_alphanumeric() || bad == '_' || bad == '-'));
        }
        Err(AliasError::Reserved(alias)) => {
            assert_eq!(alias, text);
            assert!(is_reserved(text));
        }
    }
    if syntax && !is_reserved(text) {
        assert_eq!(validate_alias(text), Ok(()), "{text:?} refused as an alias");
    }
});
