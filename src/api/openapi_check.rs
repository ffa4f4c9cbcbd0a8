//! Keeps `docs/openapi.json` (the committed copy of the document served at `/openapi.json`)
//! equal to the document generated from the router, and checks what every operation must say.

use std::collections::BTreeSet;

use serde_json::Value;

use super::openapi::document_json;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_str(&document_json()).expect("the generated document is JSON")
}

#[test]
fn committed_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = document_json();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/openapi.json differs from the document generated from the routes (first at line {}: committed {:?}, generated {:?}); regenerate it with `cargo run -- openapi > docs/openapi.json` and commit it",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end>"),
            generated.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

/// Every operation of the document: (method, path, operation, path item).
fn operations(doc: &Value) -> Vec<(String, String, &Value, &Value)> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    let mut out = Vec::new();
    for (path, item) in paths {
        let item_obj = item
            .as_object()
            .unwrap_or_else(|| panic!("path item {path} is not an object"));
        for (key, op) in item_obj {
            if METHODS.contains(&key.as_str()) {
                out.push((key.clone(), path.clone(), op, item));
            }
        }
    }
    out
}

/// The JSON value a local `$ref` ("#/components/...") points at, following chains of refs.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        let ptr = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        v = doc
            .pointer(ptr)
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    panic!("$ref chain too long")
}

#[test]
fn openapi_is_json_3_1() {
    let doc = doc();
    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(
        version.starts_with("3.1."),
        "openapi is {version:?}, want 3.1.x"
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
}

/// The router's routes, as the document lists them (the document is built from the router, so
/// this pins the set: a route added or removed shows here as well as in the committed file).
#[test]
fn openapi_lists_every_route() {
    let documented: BTreeSet<String> = operations(&doc())
        .into_iter()
        .map(|(m, p, _, _)| format!("{m} {p}"))
        .collect();
    for route in [
        "get /healthz",
        "get /readyz",
        "get /openapi.json",
        "get /",
        "get /console/{asset}",
        "get /v1/cards",
        "get /v1/cards/{id}",
        "post /v1/cards/{id}/invoke",
        "post /v1/cards/{id}/preview",
        "get /v1/connections",
        "post /v1/connections",
        "get /v1/connections/{id}",
        "patch /v1/connections/{id}",
        "delete /v1/connections/{id}",
        "get /v1/connections/{id}/device-trust",
        "get /v1/streams",
        "get /v1/streams/{id}",
        "delete /v1/streams/{id}",
        "get /v1/streams/{id}/failures",
        "get /v1/events",
        "get /v1/events/{id}",
        "get /v1/subscriptions",
        "post /v1/subscriptions",
        "get /v1/subscriptions/{id}",
        "delete /v1/subscriptions/{id}",
        "get /v1/subscriptions/{id}/deliveries",
        "post /v1/subscriptions/{id}/replay",
    ] {
        assert!(documented.contains(route), "{route} is not documented");
    }
}

/// The routes behind the API-key layer: `/v1`, and `/metrics` (scope `metrics:read`).
fn needs_key(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/v1" || path == "/metrics"
}

#[test]
fn openapi_security_bearer_exactly_on_v1() {
    let doc = doc();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let bearer: Value = serde_json::json!([{ "bearer": [] }]);
    for (method, path, op, _) in operations(&doc) {
        // An operation's own `security` overrides the document's top-level one.
        let effective = op.get("security").or_else(|| doc.get("security"));
        if needs_key(&path) {
            assert_eq!(
                effective,
                Some(&bearer),
                "{method} {path} must require the bearer scheme"
            );
        } else {
            let none = effective.is_none_or(|s| s.as_array().is_some_and(Vec::is_empty));
            assert!(
                none,
                "{method} {path} must not require authentication, has {effective:?}"
            );
        }
    }
}

#[test]
fn openapi_operations_are_complete() {
    let doc = doc();
    let mut ids = BTreeSet::new();
    for (method, path, op, item) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has no responses"));
        assert!(!responses.is_empty(), "{method} {path} has no responses");
        if path.starts_with("/v1/") {
            assert!(
                responses.contains_key("401"),
                "{method} {path} does not document 401"
            );
        }
        // Errors are problem+json.
        for (code, resp) in responses {
            let resp = resolve(&doc, resp);
            if code.starts_with('4') || code.starts_with('5') {
                let schema = &resp["content"]["application/problem+json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/Problem",
                    "{method} {path} {code} is not application/problem+json with the Problem schema"
                );
            }
        }
        // Every `{param}` of the path is declared as a path parameter (on the path item or the operation).
        let declared: BTreeSet<String> = item
            .get("parameters")
            .into_iter()
            .chain(op.get("parameters"))
            .flat_map(|p| p.as_array().into_iter().flatten())
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        let templated: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect();
        assert_eq!(
            templated, declared,
            "{method} {path}: path parameters and template differ"
        );
    }
}

#[test]
fn openapi_refs_resolve() {
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(_)) = m.get("$ref") {
                    resolve(doc, v);
                }
                m.values().for_each(|c| walk(doc, c));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(doc, c)),
            _ => {}
        }
    }
    let doc = doc();
    walk(&doc, &doc);
}

/// Every documented operation is served: under `/v1` and at `/metrics` behind the API-key
/// layer (401 without a key, where an unknown route would be 404), elsewhere without one; and `/openapi.json`
/// serves this very document.
#[tokio::test]
async fn every_documented_operation_is_served() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use secrecy::SecretString;
    use tower::ServiceExt;

    use crate::config::Config;
    use crate::store::TokenCipher;

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        max_concurrent_requests: 16,
        request_timeout: std::time::Duration::from_secs(10),
        ..Config::defaults(
            format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
            TokenCipher::generate().0,
            vec![super::auth::ApiKey::all(&SecretString::from(
                "k".repeat(32),
            ))],
        )
    };
    let state = crate::build_state(config).await.unwrap();
    let app = super::router(state.clone());
    let doc = doc();
    for (method, path, _, _) in operations(&doc) {
        let req = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(path.replace("{id}", "x").replace("{asset}", "main.js"))
            .body(Body::empty())
            .unwrap();
        let status = app.clone().oneshot(req).await.unwrap().status();
        if needs_key(&path) {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        } else {
            assert_eq!(status, StatusCode::OK, "{method} {path}");
        }
    }
    let resp = app
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    assert_eq!(served, document_json().as_bytes());
    state.streams.shutdown().await;
    state.trust.shutdown().await;
}
