//! The Custom API Action against the simulated tenant: method, relative URL, Query, Headers and
//! Body as sent; Status Code, Headers and Body as Kandji answered, errors of every shape included.

use crate::harness::TestApp;
use crate::harness::kandji::*;
use serde_json::{Value, json};

/// The Custom API Action's outputs for a request of this method (`request_type`).
async fn custom(s: &TestApp, method: &str, inputs: Value) -> Value {
    s.outputs(
        "custom_api_request",
        inputs,
        json!({"request_type": method}),
    )
    .await
}

#[tokio::test]
async fn get_with_query_in_the_url_and_in_the_query_object() {
    let s = start().await;
    let raw = kandji(&s, "/devices?platform=iPhone&limit=2&ordering=device_name").await;
    let out = custom(&s, "GET", json!({"relative_url": "/devices?platform=iPhone&limit=2", "query": {"ordering": "device_name"}})).await;
    let req = only(
        &s,
        "GET /api/v1/devices?platform=iPhone&limit=2&ordering=device_name",
    );
    assert_no_body(&req);
    assert_keys(&out, &["body", "headers", "status_code"]);
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["headers"]["content-type"], JSON);
    assert_eq!(out["body"], raw, "Kandji's body, untouched");
    assert_eq!(out["body"].as_array().unwrap().len(), 2);

    // Query values of every JSON scalar type, written as Kandji expects them.
    let out = custom(&s, "GET", json!({"relative_url": "/devices", "query": {"limit": 1, "filevault_enabled": true, "platform": "Mac"}})).await;
    let req = take(&s, 1).remove(0);
    assert_eq!(req.path, "/api/v1/devices");
    let mut pairs = req.query_pairs();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("filevault_enabled".to_string(), "true".to_string()),
            ("limit".into(), "1".into()),
            ("platform".into(), "Mac".into()),
        ]
    );
    assert_eq!(out["body"][0]["platform"], "Mac");

    // A query already percent-encoded in the URL is sent as written.
    let email = user_email(&s, &device(&s, "Mac")).unwrap();
    let encoded = email.replace('@', "%40");
    let out = custom(
        &s,
        "GET",
        json!({"relative_url": format!("/devices?user_email_exact={encoded}")}),
    )
    .await;
    only(
        &s,
        &format!("GET /api/v1/devices?user_email_exact={encoded}"),
    );
    assert_eq!(out["body"][0]["user"]["email"], email);
}

#[tokio::test]
async fn post_patch_and_delete_send_the_body_as_json() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let dev = id(&mac);

    let out = custom(&s, "POST", json!({"relative_url": format!("/devices/{dev}/notes"), "body": {"content": "From a custom action"}})).await;
    let req = only(&s, &format!("POST /api/v1/devices/{dev}/notes"));
    assert_json(&req, json!({"content": "From a custom action"}));
    assert_eq!(out["status_code"], 201);
    assert_eq!(out["body"]["content"], "From a custom action");
    let note_id = out["body"]["note_id"].as_str().unwrap().to_string();

    let out = custom(&s, "PATCH", json!({"relative_url": format!("/devices/{dev}"), "body": {"asset_tag": "CUSTOM-1", "tags": ["loaner"]}})).await;
    let req = only(&s, &format!("PATCH /api/v1/devices/{dev}"));
    assert_json(&req, json!({"asset_tag": "CUSTOM-1", "tags": ["loaner"]}));
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["body"]["asset_tag"], "CUSTOM-1");
    assert_eq!(out["body"]["tags"], json!(["loaner"]));

    let out = custom(
        &s,
        "DELETE",
        json!({"relative_url": format!("/devices/{dev}/notes/{note_id}")}),
    )
    .await;
    let req = only(&s, &format!("DELETE /api/v1/devices/{dev}/notes/{note_id}"));
    assert_no_body(&req);
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["body"]["note_id"], note_id.as_str());
    assert!(
        s.sim
            .tenant()
            .notes_of(&mac.device_id)
            .iter()
            .all(|n| n.note_id.to_string() != note_id)
    );

    // A JSON list body is sent as a list; Kandji's bare-string 400 comes back in Body and error.
    let out = custom(
        &s,
        "POST",
        json!({"relative_url": format!("/devices/{dev}/action/setname"), "body": ["x"]}),
    )
    .await;
    let req = only(&s, &format!("POST /api/v1/devices/{dev}/action/setname"));
    assert_json(&req, json!(["x"]));
    assert_eq!(out["status_code"], 400);
    assert_eq!(out["body"], "Invalid data. Expected a dictionary.");
    assert_eq!(out["error"], "Invalid data. Expected a dictionary.");
}

#[tokio::test]
async fn caller_headers_are_passed_but_authorization_is_the_connections() {
    let s = start().await;
    let dev = id(&device(&s, "iPad"));
    let out = custom(&s, "GET", json!({"relative_url": format!("/devices/{dev}"), "headers": {"X-Request-Source": "workflows", "Accept-Language": "en"}})).await;
    // `take` checks that Authorization is the connection's token.
    let req = only(&s, &format!("GET /api/v1/devices/{dev}"));
    assert_eq!(req.header("x-request-source"), Some("workflows"));
    assert_eq!(req.header("accept-language"), Some("en"));
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["body"]["device_id"], dev.as_str());

    for name in [
        "authorization",
        "AUTHORIZATION",
        "Proxy-Authorization",
        "host",
    ] {
        let r = s
            .invoke(
                "custom_api_request",
                json!({"relative_url": "/devices", "headers": {name: "Bearer someone-elses-token"}, "body": {}}),
                json!({"request_type": "POST"}),
            )
            .await;
        assert_eq!(r.problem(422), [format!("inputs.headers.{name}")]);
    }
    take(&s, 0);
}

#[tokio::test]
async fn kandjis_errors_pass_through_whatever_their_shape() {
    let s = start().await;
    let dev = id(&device(&s, "Mac"));

    // Django's HTML 404 for an unknown path.
    let out = custom(&s, "GET", json!({"relative_url": "/no/such/endpoint"})).await;
    only(&s, "GET /api/v1/no/such/endpoint");
    assert_eq!(out["status_code"], 404);
    assert_eq!(out["error"], "Not Found");
    assert!(
        out["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        out["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("<!doctype html>") && b.contains("<h1>Not Found</h1>")),
        "{}",
        out["body"]
    );

    // DRF's {"detail": ...} for a method the path does not take.
    let out = custom(
        &s,
        "PUT",
        json!({"relative_url": format!("/devices/{dev}"), "body": {"asset_tag": "x"}}),
    )
    .await;
    let req = only(&s, &format!("PUT /api/v1/devices/{dev}"));
    assert_json(&req, json!({"asset_tag": "x"}));
    assert_eq!(
        out,
        json!({
            "status_code": 405,
            "headers": out["headers"],
            "body": {"detail": "Method \"PUT\" not allowed."},
            "error": "Method \"PUT\" not allowed.",
        })
    );
    assert_eq!(out["headers"]["allow"], "GET, PATCH, DELETE");

    // A list of strings.
    let out = custom(
        &s,
        "GET",
        json!({"relative_url": format!("/devices/{dev}/details/lostmode")}),
    )
    .await;
    only(&s, &format!("GET /api/v1/devices/{dev}/details/lostmode"));
    assert_eq!(out["status_code"], 400);
    assert_eq!(out["body"], json!(["Device is not in lost mode."]));
    assert_eq!(out["error"], "Device is not in lost mode.");

    // DRF field errors.
    let out = custom(
        &s,
        "GET",
        json!({"relative_url": "/integrations/apple/ade/devices?dep_account=nope"}),
    )
    .await;
    only(
        &s,
        "GET /api/v1/integrations/apple/ade/devices?dep_account=nope",
    );
    assert_eq!(out["status_code"], 400);
    assert_eq!(out["body"], json!({"dep_account": ["Enter a valid UUID."]}));
    assert_eq!(out["error"], "dep_account: Enter a valid UUID.");

    // Plain text, as Kandji's blueprint assignment endpoints answer.
    s.sim.push_faults(
        Some("/blueprints/"),
        vec![answer(
            400,
            "Library Item already exists in Assignment Node",
        )],
    );
    let bp = s.sim.tenant().blueprints[0].id;
    let out = custom(&s, "POST", json!({"relative_url": format!("/blueprints/{bp}/assign-library-item"), "body": {"library_item_id": "x"}})).await;
    let req = only(
        &s,
        &format!("POST /api/v1/blueprints/{bp}/assign-library-item"),
    );
    assert_json(&req, json!({"library_item_id": "x"}));
    assert_eq!(out["status_code"], 400);
    assert_eq!(
        out["body"],
        "Library Item already exists in Assignment Node"
    );
    assert_eq!(
        out["error"],
        "Library Item already exists in Assignment Node"
    );
    assert!(
        out["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("text/plain")
    );

    // A success without a body: Body is null, no error.
    let out = custom(
        &s,
        "POST",
        json!({"relative_url": format!("/devices/{dev}/action/blankpush")}),
    )
    .await;
    let req = only(&s, &format!("POST /api/v1/devices/{dev}/action/blankpush"));
    assert_no_body(&req);
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["body"], Value::Null);
    assert!(out.get("error").is_none());
}
