//! The dry run, `POST /v1/cards/{id}/preview`: checked exactly as invoke checks the same body,
//! answered with the Kandji request(s) invoke would send, and nothing reaches the tenant (every
//! test asserts the simulated tenant saw no request), no budget is taken, no idempotency key
//! is claimed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::card_fixtures::{self, Expected};
use crate::harness::kandji::{device, devices, id, start_with, take};
use crate::harness::{
    API_KEY, Receiver, Resp, TestApp, builtin_card, eventually, helper_flow, operator_cards,
};

async fn preview(app: &TestApp, card: &str, inputs: Value, options: Value) -> Resp {
    app.post(
        &format!("/v1/cards/{card}/preview"),
        json!({"connection": app.connection, "inputs": inputs, "options": options}),
    )
    .await
}

/// The preview of `card`: its 200 body, checked as `planned` checks it.
async fn plan(app: &TestApp, card: &str, inputs: Value, options: Value) -> Value {
    planned(app, preview(app, card, inputs, options).await)
}

/// A preview's 200 body, asserting that nothing reached the tenant and the answer is not cached.
#[track_caller]
fn planned(app: &TestApp, r: Resp) -> Value {
    let cache = r
        .headers
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.ok();
    assert_eq!(cache.as_deref(), Some("no-store"), "{body}");
    assert_eq!(body["dry_run"], true);
    take(app, 0);
    let text = body.to_string();
    assert!(
        !text.contains(&app.sim.token()),
        "the connection's token is in the preview: {text}"
    );
    body
}

/// `METHOD url` of each planned request.
fn lines(p: &Value) -> Vec<String> {
    p["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["url"].as_str().unwrap()
            )
        })
        .collect()
}

fn header<'a>(r: &'a Value, name: &str) -> Option<&'a str> {
    r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .map(|h| h["value"].as_str().unwrap())
}

/// Checks one planned request against a fixture's expected Kandji request.
fn assert_matches(app: &TestApp, card: &str, got: &Value, want: &Expected) {
    let url = match &want.query {
        Some(q) => format!("{}{}?{q}", app.sim.base_url(), want.path),
        None => format!("{}{}", app.sim.base_url(), want.path),
    };
    assert_eq!(got["method"], want.method.as_str(), "{card}: {got}");
    assert_eq!(got["url"], url.as_str(), "{card}: {got}");
    assert_eq!(header(got, "accept"), Some("application/json"), "{card}");
    assert_eq!(
        header(got, "authorization"),
        None,
        "{card}: credentials shown"
    );
    let body = &got["body"];
    match (&want.json, &want.form) {
        (Some(json), None) => {
            assert_eq!(body["encoding"], "json", "{card}: {got}");
            assert_eq!(header(got, "content-type"), Some("application/json"));
            let sent: Value = serde_json::from_str(body["text"].as_str().unwrap()).unwrap();
            assert_eq!(&sent, json, "{card}");
        }
        (None, Some(pairs)) => {
            assert_eq!(body["encoding"], "form", "{card}: {got}");
            assert_eq!(
                header(got, "content-type"),
                Some("application/x-www-form-urlencoded")
            );
            let mut sent: Vec<(String, String)> =
                serde_urlencoded::from_str(body["text"].as_str().unwrap()).unwrap();
            let mut pairs = pairs.clone();
            sent.sort();
            pairs.sort();
            assert_eq!(sent, pairs, "{card}");
        }
        _ => {
            assert_eq!(body, &Value::Null, "{card}: {got}");
            assert_eq!(header(got, "content-type"), None, "{card}");
        }
    }
}

/// Every card, previewed with its fixture's invocation (tests/fixtures/cards), plans exactly
/// the requests the fixture says the invocation sends: all of them for a card that is not a
/// list (the lost-mode cards' follow-up read included), the first page of a list. And the
/// tenant sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cards_preview_is_what_its_invocation_sends() {
    let app = TestApp::start().await;
    let cards = card_fixtures::catalog(&app).await;
    assert!(cards.len() > 40, "{cards:?}");
    let mut lists = 0;
    for card in &cards {
        let f = card_fixtures::fixture(&app, card);
        let p = plan(&app, card, f.inputs.clone(), f.options.clone()).await;
        assert_eq!(p["card"], card.as_str());
        let got = p["requests"].as_array().unwrap();
        if p["paging"].is_null() {
            assert_eq!(got.len(), f.kandji.len(), "{card}: planned {:?}", lines(&p));
        } else {
            lists += 1;
            assert_eq!(got.len(), 1, "{card}: a list plans its first page");
            assert_eq!(got[0]["role"], "first_page");
        }
        for (g, w) in got.iter().zip(&f.kandji) {
            assert_matches(&app, card, g, w);
        }
    }
    assert!(lists >= 10, "{lists} list cards");
}

/// For each bad body, preview answers exactly what invoke answers (status, content type and
/// problem body), and neither sends anything.
#[tokio::test]
async fn preview_refuses_what_invoke_refuses_with_the_same_problem() {
    let app = kandji_app().await;
    let mac = id(&device(&app, "Mac"));
    let c = app.connection.clone();
    let cases: Vec<(&str, Value)> = vec![
        (
            "lock_device",
            json!({"connection": "conn_nope", "inputs": {}}),
        ),
        (
            "lock_device",
            json!({"connection": c, "inputs": {"device_id": "a/../b"}}),
        ),
        (
            "lock_device",
            json!({"connection": c, "inputs": {"device_id": mac, "extra": 1}}),
        ),
        (
            "lock_device",
            json!({"connection": c, "inputs": {"device_id": 42}}),
        ),
        (
            "lock_device",
            json!({"connection": c, "inputs": {"device_id": mac}, "dry_run": true}),
        ),
        ("lock_devices", json!({"connection": c, "inputs": {}})),
        ("list_devices", json!({"connection": c, "inputs": {}})),
        (
            "list_devices",
            json!({"connection": c, "options": {"result_set": "all_of_them"}}),
        ),
        (
            "list_devices",
            json!({"connection": c, "options": {"result_set": "stream_matching_records"}}),
        ),
        (
            "list_devices",
            json!({"connection": c, "options": {"result_set": "first_matching_record",
                "helper_flow": {"url": "https://example.com/hook"}}}),
        ),
        (
            "list_devices",
            json!({"connection": c, "options": {"result_set": "stream_matching_records",
                "helper_flow": {"url": "https://10.0.0.1/hook"}, "record_limit": -1}}),
        ),
        (
            "custom_api_request",
            json!({"connection": c, "inputs": {"relative_url": "//evil.example/x"},
                "options": {"request_type": "GET"}}),
        ),
        (
            "custom_api_request",
            json!({"connection": c, "inputs": {"relative_url": "/devices",
                "headers": {"Authorization": "Bearer mine"}}, "options": {"request_type": "GET"}}),
        ),
        (
            "custom_api_request",
            json!({"connection": c, "inputs": {"relative_url": "/devices"},
                "options": {"request_type": "TRACE"}}),
        ),
        (
            "get_device_trust",
            json!({"connection": c, "inputs": {"serial_number": "has space"}}),
        ),
        ("get_blueprint", json!({"connection": c, "inputs": {}})),
        (
            "create_blueprint",
            json!({"connection": c, "inputs": {"name": ""}}),
        ),
    ];
    for (card, body) in cases {
        let invoked = app
            .post(&format!("/v1/cards/{card}/invoke"), body.clone())
            .await;
        let previewed = app
            .post(&format!("/v1/cards/{card}/preview"), body.clone())
            .await;
        assert!(
            invoked.status >= 400,
            "{card} {body}: invoke accepted it: {}",
            invoked.body
        );
        assert_eq!(
            (previewed.status, previewed.content_type(), &previewed.body),
            (invoked.status, invoked.content_type(), &invoked.body),
            "{card} {body}"
        );
        take(&app, 0);
    }
    // Malformed JSON and a malformed Idempotency-Key, as the extractor and invoke say.
    for path in ["invoke", "preview"] {
        let r = app
            .post_raw(
                &format!("/v1/cards/lock_device/{path}"),
                "{\"connection\": ",
            )
            .await;
        assert_eq!(r.status, 400, "{path}");
        let body = json!({"connection": c, "inputs": {"device_id": mac}});
        let r = app
            .post_keyed(&format!("/v1/cards/lock_device/{path}"), body, "")
            .await;
        assert_eq!(r.status, 422, "{path}");
        assert_eq!(
            r.body["errors"][0]["loc"],
            json!(["headers", "Idempotency-Key"])
        );
    }
    take(&app, 0);
}

/// The same scopes as invoke: `cards:invoke`, and `secrets:read` for a card that returns
/// secrets.
#[tokio::test]
async fn preview_needs_the_scopes_of_invoke() {
    let app = TestApp::builder()
        .key("catalog-only-key-0123456789 catalog:read")
        .key("invoke-only-key-0123456789 cards:invoke")
        .start()
        .await;
    let mac = id(&device(&app, "Mac"));
    let body = json!({"connection": app.connection, "inputs": {"device_id": mac}});
    for (key, card, status) in [
        ("catalog-only-key-0123456789", "lock_device", 403),
        (
            "invoke-only-key-0123456789",
            "get_filevault_recovery_key",
            403,
        ),
        ("invoke-only-key-0123456789", "lock_device", 403),
        ("invoke-only-key-0123456789", "restart_device", 200),
        (API_KEY, "lock_device", 200),
    ] {
        for path in ["invoke", "preview"] {
            if path == "invoke" && status == 200 {
                continue;
            }
            let r = app
                .send(
                    Method::POST,
                    &format!("/v1/cards/{card}/{path}"),
                    Some(body.clone()),
                    Some(key),
                )
                .await;
            assert_eq!(r.status, status, "{key} {card} {path}: {}", r.body);
        }
    }
    let r = app
        .send(
            Method::POST,
            "/v1/cards/lock_device/preview",
            Some(body),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    take(&app, 0);
}

/// A preview takes nothing from the connection's budget and claims no idempotency key: with a
/// budget of 3 requests an hour, 20 previews leave it whole, and an invocation with the key a
/// preview carried (and another body) runs.
#[tokio::test]
async fn preview_takes_no_budget_and_claims_no_idempotency_key() {
    let app = TestApp::builder().requests_per_hour(3).start().await;
    let mac = id(&device(&app, "Mac"));
    let iphone = id(&device(&app, "iPhone"));
    for _ in 0..20 {
        let body = json!({"connection": app.connection, "inputs": {"device_id": iphone}});
        let r = app
            .post_keyed("/v1/cards/restart_device/preview", body, "restart-1")
            .await;
        assert_eq!(r.status, 200);
    }
    take(&app, 0);
    let budget = app
        .get(&format!("/v1/connections/{}", app.connection))
        .await
        .ok()["budget"]
        .clone();
    assert_eq!(budget["used_last_hour"], 0, "{budget}");
    assert_eq!(budget["remaining_this_hour"], 3, "{budget}");

    let body = json!({"connection": app.connection, "inputs": {"device_id": mac}});
    let r = app
        .post_keyed("/v1/cards/restart_device/invoke", body, "restart-1")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("idempotent-replayed").is_none());
    take(&app, 1);
}

/// An action card: its command on the tenant's host, with the JSON body Kandji gets, then the
/// read-back of the device for the 2025 card's device outputs.
#[tokio::test]
async fn an_action_plans_its_command_with_its_json_body() {
    let app = kandji_app().await;
    let mac = id(&device(&app, "Mac"));
    let p = plan(
        &app,
        "erase_device",
        json!({"device_id": mac, "pin": "123456", "preserve_data_plan": true}),
        json!({}),
    )
    .await;
    assert_eq!(p["effect"], "destructive");
    assert_eq!(
        lines(&p),
        [
            format!(
                "POST {}/api/v1/devices/{mac}/action/erase",
                app.sim.base_url()
            ),
            format!("GET {}/api/v1/devices/{mac}", app.sim.base_url())
        ]
    );
    assert_ne!(p["requests"][1]["role"], "request", "{p}");
    let r = &p["requests"][0];
    assert_eq!(
        (&r["role"], &r["when"]),
        (&json!("request"), &json!("always"))
    );
    assert_eq!(r["query"], json!([]));
    assert_eq!(r["body"]["content_type"], "application/json");
    let body: Value = serde_json::from_str(r["body"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["PIN"], "123456");
    assert_eq!(body["PreserveDataPlan"], true);
    assert_eq!(
        header(r, "user-agent"),
        Some(concat!("kandji-connector/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        p["credentials"],
        "Authorization: Bearer <the connection's API token>"
    );
    assert_eq!(
        (&p["paging"], &p["resolver"], &p["stream"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    // Lock Device's own JSON-less command, the card the console shows.
    let p = plan(&app, "lock_device", json!({"device_id": mac}), json!({})).await;
    assert_eq!(
        lines(&p),
        [
            format!(
                "POST {}/api/v1/devices/{mac}/action/lock",
                app.sim.base_url()
            ),
            format!("GET {}/api/v1/devices/{mac}", app.sim.base_url())
        ]
    );
}

/// Create Blueprint's body is a form with dotted keys, shown as the exact bytes sent.
#[tokio::test]
async fn a_form_body_is_shown_in_its_encoding() {
    let app = kandji_app().await;
    let p = plan(&app, "create_blueprint",
            json!({"name": "Sales & Support", "enrollment_code_is_active": true, "enrollment_code": "1234"}),
            json!({})).await;
    let r = &p["requests"][0];
    assert_eq!(r["method"], "POST");
    assert_eq!(
        r["url"],
        format!("{}/api/v1/blueprints", app.sim.base_url())
    );
    assert_eq!(r["body"]["encoding"], "form");
    assert_eq!(
        r["body"]["content_type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        r["body"]["text"],
        "enrollment_code.code=1234&enrollment_code.is_active=true&name=Sales+%26+Support"
    );
}

/// Each paging style: the first page's request and how paging goes on.
#[tokio::test]
async fn lists_plan_their_first_page_and_say_how_paging_goes_on() {
    let app = kandji_app().await;
    let base = app.sim.base_url();
    let ade = app.sim.tenant().ade_integrations[0].id.to_string();
    let cases = [
        (
            "list_devices",
            json!({"platform": "Mac"}),
            json!({"result_set": "first_200_matching_records"}),
            format!("GET {base}/api/v1/devices?platform=Mac&ordering=device_id&limit=200&offset=0"),
            "offset",
            json!(200),
            "`offset`",
        ),
        (
            "list_devices",
            json!({"serial_number": "C02"}),
            json!({"result_set": "first_matching_record"}),
            format!(
                "GET {base}/api/v1/devices?serial_number=C02&ordering=device_id&limit=1&offset=0"
            ),
            "offset",
            json!(1),
            "`limit`",
        ),
        (
            "list_blueprints",
            json!({}),
            json!({"result_set": "first_200_records"}),
            format!("GET {base}/api/v1/blueprints?limit=200&offset=0"),
            "drf",
            json!(200),
            "`next`",
        ),
        (
            "list_ade_devices",
            json!({"ade_token_id": ade}),
            json!({"result_set": "first_300_records"}),
            format!("GET {base}/api/v1/integrations/apple/ade/{ade}/devices"),
            "page",
            json!(300),
            "`page=2`",
        ),
        (
            "list_users",
            json!({"user_email": "ada"}),
            json!({"result_set": "first_300_records"}),
            format!("GET {base}/api/v1/users?email=ada"),
            "cursor",
            json!(300),
            "opaque cursor",
        ),
    ];
    for (card, inputs, options, first, style, wanted, says) in cases {
        let p = plan(&app, card, inputs, options).await;
        assert_eq!(lines(&p), [first], "{card}");
        assert_eq!(p["requests"][0]["role"], "first_page");
        let paging = &p["paging"];
        assert_eq!(paging["style"], style, "{card}: {paging}");
        assert_eq!(paging["records_wanted"], wanted, "{card}: {paging}");
        assert_eq!(paging["page_size"], 300, "{card}");
        let continues = paging["continues"].as_str().unwrap();
        assert!(continues.contains(says), "{card}: {continues}");
        let size_param = if matches!(style, "offset" | "drf") {
            json!("limit")
        } else {
            Value::Null
        };
        assert_eq!(paging["size_param"], size_param, "{card}");
    }

    // Get Blueprint by name reads whole pages until its pick matches, at most 20.
    let p = plan(
        &app,
        "get_blueprint",
        json!({"blueprint_name": "Sales"}),
        json!({}),
    )
    .await;
    assert_eq!(
        lines(&p),
        [format!(
            "GET {base}/api/v1/blueprints?name=Sales&limit=300&offset=0"
        )]
    );
    assert_eq!(p["paging"]["max_pages"], 20);
    assert!(
        p["paging"]["continues"]
            .as_str()
            .unwrap()
            .contains("until a record matches")
    );
}

/// A stream result set plans the stream's first page (as few records as `record_limit` asks
/// for, none for 0) and says where the records would go; no stream starts.
#[tokio::test]
async fn a_stream_plans_its_first_page_and_its_delivery() {
    let app = kandji_app().await;
    let receiver = Receiver::start().await;
    let base = app.sim.base_url();
    let options = |limit: Value| json!({"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url()), "record_limit": limit});
    let p = plan(&app, "list_devices", json!({}), options(json!(5))).await;
    assert_eq!(
        lines(&p),
        [format!(
            "GET {base}/api/v1/devices?ordering=device_id&limit=5&offset=0"
        )]
    );
    assert_eq!(
        p["stream"],
        json!({"delivers_to": format!("http://{}", receiver.addr), "record_limit": 5})
    );
    assert_eq!(p["paging"]["records_wanted"], 5);

    let p = plan(&app, "list_devices", json!({}), options(Value::Null)).await;
    assert_eq!(
        lines(&p),
        [format!(
            "GET {base}/api/v1/devices?ordering=device_id&limit=300&offset=0"
        )],
        "every record: the largest page"
    );
    assert_eq!(p["paging"]["records_wanted"], Value::Null);
    assert!(
        p["paging"]["continues"]
            .as_str()
            .unwrap()
            .contains("every record is read")
    );

    let p = plan(&app, "list_devices", json!({}), options(json!(0))).await;
    assert_eq!(p["requests"], json!([]));

    let streams = app.get("/v1/streams").await.ok();
    assert_eq!(streams["streams"], json!([]), "no stream started");
    assert_eq!(receiver.hit_count(), 0);
}

/// The lost-mode cards compose outputs from a follow-up read of the device: the command, then
/// that read, with when it is sent.
#[tokio::test]
async fn composed_outputs_plan_their_follow_up_read() {
    let app = kandji_app().await;
    let iphone = id(&device(&app, "iPhone"));
    let base = app.sim.base_url();
    let p = plan(&app, "turn_on_lost_mode",
            json!({"device_id": iphone, "lock_message": "Please return", "phone_number": "+1 415 555 0100"}),
            json!({})).await;
    assert_eq!(
        lines(&p),
        [
            format!("POST {base}/api/v1/devices/{iphone}/action/enablelostmode"),
            format!("GET {base}/api/v1/devices/{iphone}"),
        ]
    );
    let lookup = &p["requests"][1];
    assert_eq!(lookup["role"], "lookup");
    assert_eq!(lookup["lookup"], "device");
    assert!(
        lookup["when"]
            .as_str()
            .unwrap()
            .contains("when Kandji accepted it")
    );
    assert_eq!(lookup["body"], Value::Null);
    assert_eq!(p["requests"][0]["lookup"], Value::Null);
}

/// The Custom API Action: the method from its option, the relative URL's own query then the
/// query input, the caller's headers, and the JSON body verbatim.
#[tokio::test]
async fn the_custom_api_action_plans_exactly_what_it_was_given() {
    let app = kandji_app().await;
    let p = planned(
        &app,
        preview(
            &app,
            "custom_api_request",
            json!({
                "relative_url": "/blueprints/abc/assign-library-item?dry=1",
                "query": {"note": "a b", "n": 2},
                "headers": {"X-Trace": "trace-7", "Accept": "application/json; version=2"},
                "body": {"library_item_id": "li-1", "nested": [1, {"x": null}]},
            }),
            json!({"request_type": "PATCH"}),
        )
        .await,
    );
    let r = &p["requests"][0];
    assert_eq!(r["method"], "PATCH");
    assert_eq!(
        r["url"],
        format!(
            "{}/api/v1/blueprints/abc/assign-library-item?dry=1&n=2&note=a+b",
            app.sim.base_url()
        )
    );
    assert_eq!(
        r["query"],
        json!([{"name": "dry", "value": "1"}, {"name": "n", "value": "2"}, {"name": "note", "value": "a b"}])
    );
    assert_eq!(header(r, "x-trace"), Some("trace-7"));
    assert_eq!(
        header(r, "accept"),
        Some("application/json; version=2"),
        "the caller's Accept replaces the default"
    );
    assert_eq!(
        r["body"]["text"],
        r#"{"library_item_id":"li-1","nested":[1,{"x":null}]}"#
    );
    assert_eq!(p["effect"], "destructive");
}

/// Get Device Trust has no request of its own: without an inventory it plans the live lookup;
/// once the inventory knows the serial number, nothing at all.
#[tokio::test]
async fn device_trust_says_whether_it_would_ask_kandji() {
    let app = start_with(devices(50)).await;
    let serial = device(&app, "Mac").serial_number.to_string();
    let p = plan(
        &app,
        "get_device_trust",
        json!({"serial_number": serial}),
        json!({}),
    )
    .await;
    assert_eq!(
        lines(&p),
        [format!(
            "GET {}/api/v1/devices?serial_number={serial}&limit=300",
            app.sim.base_url()
        )]
    );
    assert_eq!(p["requests"][0]["role"], "live_lookup");
    assert_eq!(p["resolver"]["name"], "device_trust");
    assert!(
        p["resolver"]["answer_from"]
            .as_str()
            .unwrap()
            .contains("inventory_sync is off")
    );

    let path = format!("/v1/connections/{}", app.connection);
    app.patch(&path, json!({"inventory_sync": true})).await.ok();
    eventually("the first sync", Duration::from_secs(30), async || {
        !app.get(&path).await.ok()["inventory"]["last_sync"].is_null()
    })
    .await;
    app.sim.clear_requests();
    let p = plan(
        &app,
        "get_device_trust",
        json!({"serial_number": serial}),
        json!({}),
    )
    .await;
    assert_eq!(p["requests"], json!([]));
    assert!(
        p["resolver"]["answer_from"]
            .as_str()
            .unwrap()
            .contains("nothing is sent to Kandji")
    );
}

async fn kandji_app() -> TestApp {
    crate::harness::kandji::start().await
}

/// A list without paging (an operator's card, `"paging": "none"`: no built-in card uses it)
/// plans its one request, without paging parameters.
#[tokio::test]
async fn a_list_without_paging_plans_one_request() {
    let mut card = builtin_card("list_tags");
    card["id"] = json!("list_tags_at_once");
    card["title"] = json!("List Tags At Once");
    card["requests"][0]["list"] =
        json!({"paging": "none", "records": "/results", "page_size": 300});
    let cards = operator_cards(&[&card]);
    let app = TestApp::builder().cards_dir(cards.path()).start().await;
    let p = plan(
        &app,
        "list_tags_at_once",
        json!({"name": "Sales"}),
        json!({"result_set": "first_300_records"}),
    )
    .await;
    assert_eq!(
        lines(&p),
        [format!(
            "GET {}/api/v1/tags?search=Sales",
            app.sim.base_url()
        )]
    );
    assert_eq!(p["paging"]["style"], "none");
    assert_eq!(p["paging"]["size_param"], Value::Null);
    assert!(
        p["paging"]["continues"]
            .as_str()
            .unwrap()
            .starts_with("one request")
    );
}

/// The 2025 revisions are previewed like the rest: List ADE Devices with a filter plans
/// Kandji's global ADE device list, without one the seed's token-scoped list.
#[tokio::test]
async fn list_ade_devices_previews_the_list_its_filters_choose() {
    let app = kandji_app().await;
    let token = app.sim.tenant().ade_integrations[0].id.to_string();
    let base = app.sim.base_url();
    let p = plan(
        &app,
        "list_ade_devices",
        json!({"ade_token_id": token, "operating_system": "iOS"}),
        json!({"result_set": "first_record"}),
    )
    .await;
    assert_eq!(
        lines(&p),
        [format!(
            "GET {base}/api/v1/integrations/apple/ade/devices?dep_account={token}&os=iOS"
        )]
    );
    let p = plan(
        &app,
        "list_ade_devices",
        json!({"ade_token_id": token}),
        json!({"result_set": "first_record"}),
    )
    .await;
    assert_eq!(
        lines(&p),
        [format!(
            "GET {base}/api/v1/integrations/apple/ade/{token}/devices"
        )]
    );
}
