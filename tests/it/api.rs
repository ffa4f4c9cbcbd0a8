//! The HTTP API as a caller sees it: auth, catalog, connections, and every refusal of bad input
//! (problem+json naming the field, and nothing sent to Kandji).

use crate::harness::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const ALL_CARDS: &[(&str, &str)] = &[
    ("clear_passcode", "Clear Passcode"),
    ("create_blueprint", "Create Blueprint"),
    ("create_note", "Create Note"),
    ("custom_api_request", "Custom API Action"),
    ("erase_device", "Erase Device"),
    (
        "get_activation_lock_bypass_codes",
        "Get Activation Lock Bypass Codes",
    ),
    ("get_ade_integration", "Get ADE Integration"),
    ("get_blueprint", "Get Blueprint"),
    ("get_device", "Get Device"),
    ("get_filevault_recovery_key", "Get FileVault Recovery Key"),
    ("get_unlock_pin", "Get Unlock PIN"),
    ("list_ade_devices", "List ADE Devices"),
    ("list_ade_integrations", "List ADE Integrations"),
    ("list_blueprints", "List Blueprints"),
    ("list_device_apps", "List Device Apps"),
    ("list_device_library_items", "List Device Library Items"),
    ("list_device_notes", "List Device Notes"),
    ("list_devices", "List Devices"),
    ("lock_device", "Lock Device"),
    ("manage_apple_remote_desktop", "Manage Apple Remote Desktop"),
    ("play_lost_mode_sound", "Play Lost Mode Sound"),
    ("reinstall_kandji_agent", "Reinstall Kandji Agent"),
    ("restart_device", "Restart Device"),
    ("send_mdm_blank_push", "Send MDM Blank Push"),
    ("set_device_name", "Set Device Name"),
    ("shutdown_device", "Shutdown Device"),
    ("turn_off_lost_mode", "Turn Off Lost Mode"),
    ("turn_on_lost_mode", "Turn On Lost Mode"),
    ("unlock_user_account", "Unlock User Account"),
    ("update_device", "Update Device"),
    ("update_inventory", "Update Inventory"),
    ("update_lost_mode_location", "Update Lost Mode Location"),
];

/// The labels of a card's result sets, in order.
fn result_set_labels(card: &Value) -> Vec<&str> {
    card["result_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["label"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn health_needs_no_key_but_v1_does() {
    let s = TestApp::start().await;
    let r = s.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, 200);
    let r = s.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, 200);
    let r = s.send(Method::GET, "/v1/cards", None, None).await;
    r.problem(401);
    let r = s
        .send(
            Method::GET,
            "/v1/cards",
            None,
            Some("not-the-key-000000000"),
        )
        .await;
    r.problem(401);
    let r = s
        .send(
            Method::POST,
            "/v1/cards/lock_device/invoke",
            Some(json!({"connection": s.connection, "inputs": {"device_id": "x"}})),
            Some("wrong"),
        )
        .await;
    r.problem(401);
    assert_eq!(
        s.sim.request_count(),
        0,
        "an unauthenticated invocation reached Kandji"
    );
    let r = s.get("/openapi.json").await;
    assert_eq!(r.status, 200);
    assert!(r.body["openapi"].as_str().unwrap_or("").starts_with("3.1"));
}

#[tokio::test]
async fn catalog_lists_every_card_with_its_title() {
    let s = TestApp::start().await;
    let r = s.get("/v1/cards").await;
    assert_eq!(r.status, 200);
    let cards = r.body["cards"].as_array().unwrap();
    let got: Vec<(String, String)> = cards
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["title"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (id, title) in ALL_CARDS {
        assert!(
            got.contains(&(id.to_string(), title.to_string())),
            "missing {id} [{title}]"
        );
    }
    assert!(
        cards
            .iter()
            .all(|c| c["description"].as_str().is_some_and(|d| !d.is_empty())
                && c["category"].is_string())
    );
    // What running each card does, as its file says; destructive ones are never idempotent here.
    let effect_of = |id: &str| {
        let c = cards.iter().find(|c| c["id"] == id).unwrap();
        (
            c["effect"].as_str().unwrap().to_string(),
            c["idempotent"].as_bool().unwrap(),
        )
    };
    assert_eq!(effect_of("get_device"), ("read".into(), true));
    assert_eq!(effect_of("update_device"), ("change".into(), true));
    assert_eq!(effect_of("create_note"), ("change".into(), false));
    assert_eq!(effect_of("erase_device"), ("destructive".into(), false));
    let destructive: Vec<&str> = cards
        .iter()
        .filter(|c| c["effect"] == "destructive")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        destructive,
        [
            "clear_passcode",
            "custom_api_request",
            "erase_device",
            "lock_device",
            "remove_library_item",
            "restart_device",
            "shutdown_device",
            "turn_on_lost_mode"
        ]
    );

    let r = s.get("/v1/cards/list_devices").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        result_set_labels(&r.body),
        [
            "First Matching Record",
            "First 200 Matching Records",
            "First 300 Matching Records",
            "Stream Matching Records"
        ]
    );
    assert_eq!(
        r.body["input_schema"]["properties"]["user_email_exact"]["title"],
        "User Email - Exact"
    );
    assert_eq!(
        r.body["options_schema"]["properties"]["result_set"]["title"],
        "Result Set"
    );
    assert!(r.body["output_schema"]["properties"]["devices"].is_object());
    assert!(
        !r.body.to_string().contains("x-source"),
        "engine wiring leaked into the designer view"
    );

    // The seed's result sets, and the 2025 revisions' beside them.
    for (id, want) in [
        (
            "list_ade_devices",
            &["First Record", "First 300 Records", "Stream All Records"][..],
        ),
        (
            "list_blueprints",
            &[
                "First 200 Records",
                "First 300 Records",
                "Stream All Records",
            ][..],
        ),
        (
            "list_ade_integrations",
            &[
                "First Record",
                "First 200 Records",
                "First 300 Records",
                "Stream All Records",
            ][..],
        ),
    ] {
        let r = s.get(&format!("/v1/cards/{id}")).await;
        assert_eq!(result_set_labels(&r.body), want, "{id}");
    }
    s.get("/v1/cards/no_such_card").await.problem(404);
}

#[tokio::test]
async fn malformed_and_misshapen_invocations_are_refused() {
    let s = TestApp::start().await;
    let r = s
        .post_raw("/v1/cards/lock_device/invoke", "{\"connection\": ")
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.body["errors"][0]["loc"], json!(["body"]));

    let r = s
        .post(
            "/v1/cards/lock_device/invoke",
            json!({"connection": s.connection, "inputs": {"device_id": "a"}, "extra": 1}),
        )
        .await;
    assert_eq!(r.problem(422), ["extra"]);
    let r = s
        .post(
            "/v1/cards/lock_device/invoke",
            json!({"inputs": {"device_id": "a"}}),
        )
        .await;
    assert_eq!(r.problem(422), ["connection"]);
    let r = s
        .post(
            "/v1/cards/lock_device/invoke",
            json!({"connection": "conn_nope", "inputs": {"device_id": "a"}}),
        )
        .await;
    assert_eq!(r.problem(422), ["connection"]);
    let r = s
        .post("/v1/cards/nope/invoke", json!({"connection": s.connection}))
        .await;
    r.problem(404);
    let r = s
        .post(
            "/v1/cards/lock_device/invoke",
            json!({"connection": s.connection, "inputs": []}),
        )
        .await;
    assert_eq!(r.problem(422), ["inputs"]);
    assert_eq!(s.sim.request_count(), 0);
}

/// Each (card, inputs, options) must be refused with 422 naming exactly these fields, sending nothing.
#[tokio::test]
async fn bad_inputs_name_every_offending_field_and_send_nothing() {
    let s = TestApp::start().await;
    // (card, inputs, options, the fields the 422 must name)
    #[rustfmt::skip]
    let cases: &[(&str, Value, Value, &[&str])] = &[
        ("lock_device", json!({}), json!({}), &["inputs.device_id"]),
        ("lock_device", json!({"device_id": 12}), json!({}), &["inputs.device_id"]),
        ("lock_device", json!({"device_id": "a", "devise_id": "b"}), json!({}), &["inputs.devise_id"]),
        ("lock_device", json!({"device_id": "../x"}), json!({}), &["inputs.device_id"]),
        ("lock_device", json!({"device_id": "a/b"}), json!({}), &["inputs.device_id"]),
        ("lock_device", json!({"device_id": "a?b=1"}), json!({}), &["inputs.device_id"]),
        ("lock_device", json!({"device_id": ".."}), json!({}), &["inputs.device_id"]),
        ("lock_device", json!({"device_id": "a%2fb"}), json!({}), &["inputs.device_id"]),
        ("lock_device", json!({"device_id": "a"}), json!({"x": 1}), &["options.x"]),
        ("erase_device", json!({"device_id": "a", "pin": "12345"}), json!({}), &["inputs.pin"]),
        ("erase_device", json!({"device_id": "a", "pin": "abcdef"}), json!({}), &["inputs.pin"]),
        // An integer PIN is taken as its digits (x-integer-as-text), which must still be six.
        ("erase_device", json!({"device_id": "a", "pin": 12345}), json!({}), &["inputs.pin"]),
        ("erase_device", json!({"device_id": "a", "pin": 1234567}), json!({}), &["inputs.pin"]),
        ("erase_device", json!({"device_id": "a", "pin": -123456}), json!({}), &["inputs.pin"]),
        ("erase_device", json!({"device_id": "a", "pin": 123456.5}), json!({}), &["inputs.pin"]),
        ("erase_device", json!({"device_id": "a", "return_to_service_profile_id": "p"}), json!({}), &["inputs.return_to_service_enabled"]),
        ("erase_device", json!({"device_id": "a", "preserve_data_plan": "yes"}), json!({}), &["inputs.preserve_data_plan"]),
        ("turn_on_lost_mode", json!({"device_id": "a", "footnote": "f"}), json!({}), &["inputs.lock_message", "inputs.phone_number"]),
        ("update_device", json!({"device_id": "a"}), json!({}), &["inputs.blueprint_id", "inputs.kandji_user_id", "inputs.asset_tag", "inputs.tags", "options.asset_tag", "options.user_id", "options.tags"]),
        ("update_device", json!({"device_id": "a"}), json!({"asset_tag": false, "tags": false}), &["inputs.blueprint_id", "inputs.kandji_user_id", "inputs.asset_tag", "inputs.tags", "options.asset_tag", "options.user_id", "options.tags"]),
        ("update_device", json!({"device_id": "a", "kandji_user_id": 1.5}), json!({}), &["inputs.kandji_user_id"]),
        ("update_device", json!({"device_id": "a", "tags": " , "}), json!({}), &["inputs.blueprint_id", "inputs.kandji_user_id", "inputs.asset_tag", "inputs.tags", "options.asset_tag", "options.user_id", "options.tags"]),
        ("update_device", json!({"device_id": "a", "tags": [""]}), json!({}), &["inputs.tags.0"]),
        ("update_device", json!({"device_id": "a", "tags": 5}), json!({}), &["inputs.tags"]),
        ("update_device", json!({"device_id": "a", "asset_tag": 1040}), json!({}), &["inputs.asset_tag"]),
        ("get_blueprint", json!({}), json!({}), &["inputs.blueprint_id", "inputs.blueprint_name"]),
        ("get_device", json!({"device_id": "a"}), json!({}), &["options.details"]),
        ("get_device", json!({"device_id": "a"}), json!({"details": "everything"}), &["options.details"]),
        ("list_devices", json!({}), json!({}), &["options.result_set"]),
        ("list_devices", json!({"serial": "x"}), json!({"result_set": "first_matching_record"}), &["inputs.serial"]),
        ("list_devices", json!({}), json!({"result_set": "first_1000"}), &["options.result_set"]),
        ("list_devices", json!({"platform": ""}), json!({"result_set": "first_matching_record"}), &["inputs.platform"]),
        ("list_devices", json!({"device_id": 42}), json!({"result_set": "first_matching_record"}), &["inputs.device_id"]),
        ("create_blueprint", json!({"name": "x"}), json!({}), &["inputs.enrollment_code_is_active"]),
        ("set_device_name", json!({"device_id": "a"}), json!({}), &["inputs.device_name"]),
        ("manage_apple_remote_desktop", json!({"device_id": "a", "manage_remote_desktop": "maybe"}), json!({}), &["inputs.manage_remote_desktop"]),
        ("custom_api_request", json!({"relative_url": "/devices"}), json!({}), &["options.request_type"]),
        ("custom_api_request", json!({"relative_url": "/devices"}), json!({"request_type": "TRACE"}), &["options.request_type"]),
        ("custom_api_request", json!({"relative_url": "/devices", "headers": {"Authorization": "Bearer x"}}), json!({"request_type": "GET"}), &["inputs.headers.Authorization"]),
        ("custom_api_request", json!({"relative_url": "/devices", "headers": {"Host": "evil.com"}}), json!({"request_type": "GET"}), &["inputs.headers.Host"]),
        ("custom_api_request", json!({"relative_url": "/devices", "headers": {"Transfer-Encoding": "chunked"}}), json!({"request_type": "GET"}), &["inputs.headers.Transfer-Encoding"]),
    ];
    for (card, inputs, options, want) in cases {
        let r = s.invoke(card, inputs.clone(), options.clone()).await;
        let mut got = r.problem(422);
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{card} {inputs} {options}: {}", r.body);
        assert!(
            r.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["msg"].as_str().is_some_and(|m| !m.is_empty()))
        );
    }
    assert_eq!(
        s.sim.request_count(),
        0,
        "a refused invocation reached Kandji: {:?}",
        s.sim.requests()
    );
}

#[tokio::test]
async fn a_pin_is_never_echoed_in_an_error() {
    let s = TestApp::start().await;
    let r = s
        .invoke(
            "erase_device",
            json!({"device_id": "a", "pin": "98765x"}),
            json!({}),
        )
        .await;
    r.problem(422);
    assert!(!r.body.to_string().contains("98765x"), "{}", r.body);
}

#[tokio::test]
async fn custom_api_action_cannot_leave_the_tenant_api() {
    let s = TestApp::start().await;
    for bad in [
        "//evil.example.com/api/v1/devices",
        "https://evil.example.com/x",
        "http://127.0.0.1:1/x",
        "devices",
        "/\\evil.example.com",
        "\\\\evil.example.com",
        "/devices/../../admin",
        "/../api/v2/x",
        "/devices/%2e%2e/%2e%2e/x",
        "/devices/%2E%2E",
        "/devices/.%2e/x",
        "/devices/%2fetc",
        "/devices\r\nHost: evil",
        "/devices\t",
        "/dev ices",
        "/devices#frag",
        "/devices/%00",
        "javascript:alert(1)",
        "",
    ] {
        let r = s
            .invoke(
                "custom_api_request",
                json!({"relative_url": bad}),
                json!({"request_type": "GET"}),
            )
            .await;
        assert_eq!(
            r.problem(422),
            ["inputs.relative_url"],
            "{bad:?}: {}",
            r.body
        );
    }
    assert_eq!(s.sim.request_count(), 0, "{:?}", s.sim.requests());
}

#[tokio::test]
async fn connections_verify_normalise_and_never_return_the_token() {
    let s = TestApp::start().await;
    let base = s.sim.base_url();
    // Normalised: trailing /api/v1/ is dropped.
    let r = s
        .post(
            "/v1/connections",
            json!({"name": "b", "api_url": format!("{base}/api/v1/"), "api_token": s.sim.token()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["api_url"], base);
    let id = r.body["id"].as_str().unwrap().to_string();
    let reqs = s.sim.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (
            reqs[0].method.as_str(),
            reqs[0].path.as_str(),
            reqs[0].query.as_deref()
        ),
        ("GET", "/api/v1/devices", Some("limit=1"))
    );

    for bad_url in [
        "http://accuhive.api.kandji.io",
        "https://user:pw@accuhive.api.kandji.io",
        "https://accuhive.api.kandji.io/?a=1",
        "https://accuhive.api.kandji.io/#x",
        "https://evil.example.com",
        "not a url",
    ] {
        let r = s
            .post(
                "/v1/connections",
                json!({"name": "x", "api_url": bad_url, "api_token": "t"}),
            )
            .await;
        assert_eq!(r.problem(422), ["api_url"], "{bad_url}");
    }
    s.sim.clear_requests();
    // A token Kandji refuses, a tenant that cannot be reached: the field, and why.
    for (api_url, api_token, field, why) in [
        (
            &*base,
            "00000000-0000-4000-8000-000000000bad",
            "api_token",
            "Device",
        ),
        ("http://127.0.0.1:1", "t", "api_url", "reached"),
    ] {
        let r = s
            .post(
                "/v1/connections",
                json!({"name": "x", "api_url": api_url, "api_token": api_token}),
            )
            .await;
        assert_eq!(r.problem(422), [field], "{why}");
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{}", r.body);
    }
    let r = s
        .post(
            "/v1/connections",
            json!({"name": "", "api_url": base, "api_token": ""}),
        )
        .await;
    let mut locs = r.problem(422);
    locs.sort();
    assert_eq!(locs, ["api_token", "name"]);

    let token = s.sim.token();
    for path in [
        "/v1/connections".to_string(),
        format!("/v1/connections/{id}"),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status, 200);
        assert!(
            !r.body.to_string().contains(&token),
            "token leaked by {path}"
        );
    }
    let r = s.get(&format!("/v1/connections/{id}")).await;
    assert_eq!(r.body["budget"]["requests_per_hour"], 10000);

    let r = s
        .patch(
            &format!("/v1/connections/{id}"),
            json!({"name": "renamed", "requests_per_hour": 3600}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "renamed");
    assert_eq!(r.body["requests_per_hour"], 3600);
    let r = s
        .patch(
            &format!("/v1/connections/{id}"),
            json!({"api_token": "00000000-0000-4000-8000-000000000bad"}),
        )
        .await;
    assert_eq!(r.problem(422), ["api_token"]);
    let r = s.delete(&format!("/v1/connections/{id}")).await;
    assert_eq!(r.status, 204);
    s.get(&format!("/v1/connections/{id}")).await.problem(404);
}
