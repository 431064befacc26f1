//! Every API endpoint against every kind of caller: no key, a revoked key, an expired
//! key, the owner (user A), another user (B), and an admin.

mod common;

use common::{TestServer, create_key};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Nobody,
    Revoked,
    Expired,
    Owner,
    Other,
    Admin,
}

/// An endpoint, its body, and the status each caller must get.
struct Case {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    owner: u16,
    other: u16,
    admin: u16,
}

fn cases() -> Vec<Case> {
    let link = || Some(json!({"url": "https://example.com/authz"}));
    vec![
        Case {
            method: Method::POST,
            path: "/api/v1/shorten",
            body: link(),
            owner: 201,
            other: 201,
            admin: 201,
        },
        Case {
            method: Method::POST,
            path: "/api/v1/links",
            body: link(),
            owner: 201,
            other: 201,
            admin: 201,
        },
        Case {
            method: Method::POST,
            path: "/api/v1/links/bulk",
            body: Some(json!({"links": [{"url": "https://example.com/authz"}]})),
            owner: 200,
            other: 200,
            admin: 200,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/links",
            body: None,
            owner: 200,
            other: 200,
            admin: 200,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/tags",
            body: None,
            owner: 200,
            other: 200,
            admin: 200,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/links/owned",
            body: None,
            owner: 200,
            other: 404,
            admin: 200,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/links/owned/qr",
            body: None,
            owner: 200,
            other: 404,
            admin: 200,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/links/owned/stats",
            body: None,
            owner: 200,
            other: 404,
            admin: 200,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/links/owned/visits",
            body: None,
            owner: 200,
            other: 404,
            admin: 200,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/links/owned/visits?format=csv",
            body: None,
            owner: 200,
            other: 404,
            admin: 200,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/links/owned/live",
            body: None,
            owner: 200,
            other: 404,
            admin: 200,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/stats",
            body: None,
            owner: 200,
            other: 200,
            admin: 200,
        },
        Case {
            method: Method::PATCH,
            path: "/api/v1/links/owned",
            body: Some(json!({"title": "changed"})),
            owner: 200,
            other: 404,
            admin: 200,
        },
        Case {
            method: Method::DELETE,
            path: "/api/v1/links/owned",
            body: None,
            owner: 204,
            other: 404,
            admin: 204,
        },
        Case {
            method: Method::GET,
            path: "/api/v1/domains",
            body: None,
            owner: 200,
            other: 200,
            admin: 200,
        },
        Case {
            method: Method::POST,
            path: "/api/v1/domains",
            body: Some(json!({"name": "new.example.com"})),
            owner: 403,
            other: 403,
            admin: 201,
        },
        Case {
            method: Method::DELETE,
            path: "/api/v1/domains/empty.example.com",
            body: None,
            owner: 403,
            other: 403,
            admin: 204,
        },
        // A link in another domain is owned like any other.
        Case {
            method: Method::GET,
            path: "/api/v1/links/owned?domain=go.example.com",
            body: None,
            owner: 200,
            other: 404,
            admin: 200,
        },
        Case {
            method: Method::DELETE,
            path: "/api/v1/links/owned?domain=go.example.com",
            body: None,
            owner: 204,
            other: 404,
            admin: 204,
        },
    ]
}

#[tokio::test]
async fn every_endpoint_against_every_caller() {
    for who in [
        Who::Nobody,
        Who::Revoked,
        Who::Expired,
        Who::Owner,
        Who::Other,
        Who::Admin,
    ] {
        // A fresh server per caller, so that a delete by one does not change the next.
        let server = TestServer::start().await;
        let owner = create_key(&server.state, "owner", false).await;
        let other = create_key(&server.state, "other", false).await;
        let revoked = create_key(&server.state, "revoked", false).await;
        let revoked_prefix = &revoked[..hop::domain::key::VISIBLE_PREFIX_LEN];
        assert!(
            server
                .state
                .stores
                .keys
                .revoke_key(revoked_prefix)
                .await
                .unwrap()
        );
        let expired = {
            let user = server
                .state
                .stores
                .keys
                .user_by_name("revoked")
                .await
                .unwrap()
                .unwrap();
            let soon = hop::domain::link::now_ms() + 50;
            let (_, secret) = hop::app::issue_key(&server.state.stores, &user, "soon", Some(soon))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(80)).await;
            secret
        };
        let made = server
            .create_as(
                &owner,
                json!({"url": "https://example.com/owned", "alias": "owned"}),
            )
            .await;
        assert_eq!(made.status(), 201);
        for name in ["go.example.com", "empty.example.com"] {
            server
                .state
                .stores
                .domains
                .insert_domain(name)
                .await
                .unwrap();
        }
        server
            .state
            .hosts
            .reload(server.state.stores.domains.as_ref())
            .await
            .unwrap();
        let made = server
            .create_as(
                &owner,
                json!({"url": "https://example.com/owned", "alias": "owned", "domain": "go.example.com"}),
            )
            .await;
        assert_eq!(made.status(), 201);

        for case in cases() {
            let mut request = server
                .client
                .request(case.method.clone(), server.url(case.path));
            if let Some(body) = &case.body {
                request = request.json(body);
            }
            request = match who {
                Who::Nobody => request,
                Who::Revoked => request.bearer_auth(&revoked),
                Who::Expired => request.bearer_auth(&expired),
                Who::Owner => request.bearer_auth(&owner),
                Who::Other => request.header("x-api-key", &other),
                Who::Admin => request.bearer_auth(&server.admin_key),
            };
            let response = request.send().await.unwrap();
            let expected = match who {
                Who::Nobody | Who::Revoked | Who::Expired => 401,
                Who::Owner => case.owner,
                Who::Other => case.other,
                Who::Admin => case.admin,
            };
            assert_eq!(
                response.status().as_u16(),
                expected,
                "{who:?} {} {}",
                case.method,
                case.path
            );
            if expected >= 400 {
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json"
                );
            }
        }
        // Listings show each caller only what they may see.
        if matches!(who, Who::Other) {
            let page: Value = server
                .client
                .get(server.url("/api/v1/links?q=owned"))
                .bearer_auth(&other)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|l| l["code"] != "owned")
            );
        }
    }
}
