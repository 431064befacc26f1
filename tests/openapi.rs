//! The published contract: `/openapi.json` documents every route, and `/docs` works
//! from assets inside the binary.

mod common;

use common::TestServer;
use serde_json::Value;

/// Every route the router serves, as (method, OpenAPI path). A new route must be
/// added here and to the document.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/shorten"),
    ("post", "/api/v1/links"),
    ("get", "/api/v1/links"),
    ("post", "/api/v1/links/bulk"),
    ("get", "/api/v1/links/{code}"),
    ("patch", "/api/v1/links/{code}"),
    ("delete", "/api/v1/links/{code}"),
    ("get", "/api/v1/links/{code}/qr"),
    ("get", "/api/v1/tags"),
    ("get", "/api/v1/domains"),
    ("post", "/api/v1/domains"),
    ("delete", "/api/v1/domains/{name}"),
    ("get", "/api/v1/stats"),
    ("get", "/api/v1/links/{code}/stats"),
    ("get", "/api/v1/links/{code}/visits"),
    ("get", "/api/v1/links/{code}/live"),
    ("get", "/{code}"),
    ("post", "/{code}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

async fn document(server: &TestServer) -> Value {
    let response = server.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn document_is_openapi_3_1_and_covers_every_route() {
    let server = TestServer::start().await;
    let doc = document(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);
}

#[tokio::test]
async fn every_api_operation_documents_auth_limits_and_failures() {
    let server = TestServer::start().await;
    let doc = document(&server).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let name = format!("{method} {path}");
            assert!(responses.contains_key("500"), "{name}");
            assert!(responses.contains_key("503"), "{name}");
            assert!(operation["summary"].is_string(), "{name} has no summary");
            if path.starts_with("/api/") {
                assert!(responses.contains_key("401"), "{name}");
                assert!(responses.contains_key("429"), "{name}");
                assert!(operation["security"].is_array(), "{name}");
            }
        }
    }
    // Every problem answer points at the one Problem schema.
    let problem = &doc["components"]["schemas"]["Problem"];
    let required: Vec<&str> = problem["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["type", "title", "status", "detail"]);
    let too_many = &doc["components"]["responses"]["TooManyRequests"];
    assert!(too_many["headers"]["Retry-After"].is_object());
}

#[tokio::test]
async fn created_link_matches_its_documented_schema_fields() {
    let server = TestServer::start().await;
    let doc = document(&server).await;
    let link = server
        .create_ok(serde_json::json!({"url": "https://example.com/doc"}))
        .await;
    let schema = &doc["components"]["schemas"]["LinkBody"];
    let mut properties: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    let mut fields: Vec<&String> = link.as_object().unwrap().keys().collect();
    properties.sort();
    fields.sort();
    assert_eq!(properties, fields);
}

#[tokio::test]
async fn docs_page_loads_only_its_own_assets() {
    let server = TestServer::start().await;
    let page = server.get("/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "not the Swagger UI page");
    for attribute in ["src=\"", "href=\""] {
        for reference in html.split(attribute).skip(1) {
            let target = reference.split('"').next().unwrap();
            assert!(
                !target.starts_with("http") && !target.starts_with("//"),
                "/docs loads {target} from elsewhere"
            );
        }
    }
    let init = server.get("/docs/swagger-initializer.js").await;
    assert_eq!(init.status(), 200);
    assert!(init.text().await.unwrap().contains("/openapi.json"));
    let script = server.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.status(), 200);
    assert!(script.bytes().await.unwrap().len() > 100_000);
}
