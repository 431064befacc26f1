//! The JSON create body: `POST /api/v1/links` parsing (`http::extract::parse_json` into
//! `CreateLinkBody`, strict fields) and validation (`LinkRequest::validate`).
//!
//! Checks: no panic on any bytes; a body that is refused is refused as bad JSON; a
//! request that fails validation names a field the body carried; a draft that passes
//! holds only valid values (its URL validates to itself, its alias passes the alias
//! rules, its title, tags, expiry, click limit, redirect and password are within their
//! rules, and its tags are already in their stored form).

#![no_main]

mod common;

use hop::domain::code::validate_alias;
use hop::domain::link::{LinkRequest, MAX_TAGS, MAX_TITLE_CHARS, valid_tags};
use hop::domain::password;
use hop::domain::url::{TargetUrl, UrlPolicy};
use hop::http::extract::parse_json;
use hop::http::links::CreateLinkBody;
use hop::http::problem::ApiError;
use libfuzzer_sys::fuzz_target;

/// A fixed "now" (2027-01-15), so that a run is reproducible.
const NOW: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let body = match parse_json::<CreateLinkBody>(data) {
        Ok(body) => body,
        Err(ApiError::BadJson { detail, .. }) => {
            assert!(!detail.is_empty());
            return;
        }
        Err(other) => panic!("a body refused as {other:?}"),
    };
    let present = |field: &str| match field {
        "url" => true,
        "alias" => body.alias.is_some(),
        "title" => body.title.is_some(),
        "expiresAt" => body.expires_at.is_some(),
        "maxClicks" => body.max_clicks.is_some(),
        "redirectType" => body.redirect_type.is_some(),
        "tags" => body.tags.is_some(),
        "password" => body.password.is_some(),
        other => panic!("validation named unknown field {other:?}"),
    };
    for policy in [common::default_policy(), common::wide_policy()] {
        check(&body, &policy, &present);
    }
});

/// Validates `body` under `policy`; `present` tells whether the body carried a field.
fn check(body: &CreateLinkBody, policy: &UrlPolicy, present: &dyn Fn(&str) -> bool) {
    let request = LinkRequest::from(CreateLinkBody {
        url: body.url.clone(),
        alias: body.alias.clone(),
        title: body.title.clone(),
        expires_at: body.expires_at.clone(),
        max_clicks: body.max_clicks,
        redirect_type: body.redirect_type,
        tags: body.tags.clone(),
        password: body.password.clone(),
        domain: body.domain.clone(),
    });
    let draft = match request.validate(policy, NOW) {
        Ok(draft) => draft,
        Err(error) => {
            assert!(
                present(error.field()),
                "{error} names a field the body lacks"
            );
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    assert_eq!(
        TargetUrl::parse(draft.url.as_str(), policy).as_ref(),
        Ok(&draft.url)
    );
    assert_eq!(draft.alias, body.alias);
    if let Some(alias) = &draft.alias {
        assert_eq!(validate_alias(alias), Ok(()));
    }
    if let Some(title) = &draft.title {
        assert!(title.chars().count() <= MAX_TITLE_CHARS);
        assert!(!title.chars().any(char::is_control));
        assert!(!title.trim().is_empty(), "a blank title is stored as none");
    }
    if let Some(at) = draft.expires_at {
        assert!(at > NOW, "expiry {at} is not in the future");
    }
    if let Some(max) = draft.max_clicks {
        assert!(max >= 1);
        assert_eq!(Some(max as i64), body.max_clicks);
    }
    assert!(matches!(draft.redirect.code(), 301 | 302 | 307 | 308));
    assert_eq!(draft.redirect.code(), body.redirect_type.unwrap_or(302));
    assert!(draft.tags.len() <= MAX_TAGS);
    assert!(
        draft.tags.windows(2).all(|w| w[0] < w[1]),
        "tags sorted, no repeats"
    );
    assert_eq!(
        valid_tags(draft.tags.clone()).as_ref(),
        Ok(&draft.tags),
        "tags are stored form"
    );
    if let Some(pw) = &draft.password {
        assert!(password::is_valid(pw));
        assert_eq!(Some(pw), body.password.as_ref());
    }
}
