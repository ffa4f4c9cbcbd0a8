//! Secrets stay secret: after invoking every secret-bearing card and forcing Kandji errors, nothing
//! the process logged at debug level, and no error body, contains a token, an API key, a PIN, a
//! FileVault key or a bypass code.

use crate::harness::kandji::first_device;
use crate::harness::{Binary, start_sim};
use kandji_connector::simulator::{Fault, Platform, SimConfig};
use serde_json::{Value, json};

const API_KEY: &str = "leak-test-key-9f8e7d6c5b4a3210";

#[tokio::test]
async fn no_secret_reaches_the_logs_or_an_error_body() {
    no_secret_leaks("text").await;
}

/// The same with `KANDJI_CONNECTOR_LOG_FORMAT=json`, whose lines also carry every field of the
/// request's span.
#[tokio::test]
async fn no_secret_reaches_the_json_logs_or_an_error_body() {
    no_secret_leaks("json").await;
}

async fn no_secret_leaks(format: &str) {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_key = "q8dXzK0m3nQ1r2s3t4u5v6w7x8y9z0A1B2C3D4E5F6s="; // base64 of 32 bytes
    let mut server = Binary::serve(&[
        ("KANDJI_CONNECTOR_API_KEYS", API_KEY.to_string()),
        ("KANDJI_CONNECTOR_SECRET_KEY", secret_key.to_string()),
        (
            "KANDJI_CONNECTOR_DATABASE_URL",
            format!("sqlite://{}/t.db?mode=rwc", dir.path().display()),
        ),
        ("KANDJI_CONNECTOR_LOG", "trace".to_string()),
        ("KANDJI_CONNECTOR_LOG_FORMAT", format.to_string()),
        ("KANDJI_CONNECTOR_KANDJI_TIMEOUT_MS", "1500".to_string()),
    ])
    .await;
    let (url, http) = (server.url.clone(), server.http.clone());
    let post = |path: String, body: Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(format!("{url}{path}"))
                .bearer_auth(API_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let conn = server.connect_with_key(&sim, API_KEY).await;
    let [mac, iphone] = [Platform::Mac, Platform::IPhone]
        .map(|p| first_device(&sim, p.as_str()).device_id.to_string());

    let mut secrets: Vec<String> = vec![
        sim.token(),
        API_KEY.to_string(),
        secret_key.to_string(),
        "314159".to_string(),
    ];
    let mut bodies = Vec::new();
    let invoke = |card: &str, inputs: Value| {
        post(
            format!("/v1/cards/{card}/invoke"),
            json!({"connection": conn, "inputs": inputs}),
        )
    };
    for (card, inputs, keys) in [
        (
            "get_filevault_recovery_key",
            json!({"device_id": mac}),
            vec!["key"],
        ),
        ("get_unlock_pin", json!({"device_id": mac}), vec!["pin"]),
        (
            "get_mac_recovery_lock_password",
            json!({"device_id": mac}),
            vec!["recovery_password"],
        ),
        (
            "get_activation_lock_bypass_codes",
            json!({"device_id": mac}),
            vec![
                "user_based_activation_lock_bypass_code",
                "device_based_activation_lock_bypass_code",
            ],
        ),
        ("lock_device", json!({"device_id": mac}), vec!["pin"]),
        (
            "erase_device",
            json!({"device_id": mac, "pin": "314159"}),
            vec!["pin"],
        ),
    ] {
        let (status, body) = invoke(card, inputs).await;
        assert_eq!(status, 200, "{card}: {body}");
        let outputs = serde_json::from_str::<Value>(&body).unwrap()["outputs"].clone();
        for k in keys {
            let v = outputs[k]
                .as_str()
                .unwrap_or_else(|| panic!("{card}.{k} missing: {outputs}"));
            if v.len() >= 6 {
                secrets.push(v.to_string());
            }
        }
    }
    // Kandji errors and refusals around secret-bearing cards.
    sim.push_faults(
        Some("/secrets/"),
        vec![
            Fault::status(500),
            Fault::status(500),
            Fault::status(500),
            Fault::status(500),
            Fault::status(500),
        ],
    );
    bodies.push(
        invoke("get_filevault_recovery_key", json!({"device_id": mac}))
            .await
            .1,
    );
    bodies.push(
        invoke("get_filevault_recovery_key", json!({"device_id": iphone}))
            .await
            .1,
    );
    sim.push_faults(Some("/action/"), vec![Fault::Hang]);
    bodies.push(
        invoke("erase_device", json!({"device_id": mac, "pin": "314159"}))
            .await
            .1,
    );
    bodies.push(
        invoke("erase_device", json!({"device_id": mac, "pin": "31415x"}))
            .await
            .1,
    );
    bodies.push(post("/v1/connections".into(), json!({"name": "bad", "api_url": sim.base_url(), "api_token": "00000000-0000-4000-8000-0000deadbeef"})).await.1);
    bodies.push(
        post(
            "/v1/connections".into(),
            json!({"name": "bad", "api_url": "https://evil.example.com", "api_token": sim.token()}),
        )
        .await
        .1,
    );

    server.terminate().await;
    let logs = server.logs();
    assert!(
        logs.len() > 1000 && logs.contains("DEBUG"),
        "the server logged too little to check: {logs}"
    );
    if format == "json" {
        for line in logs.lines() {
            assert!(
                serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()),
                "not a JSON object: {line}"
            );
        }
    }
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret ({}…) is in the logs",
            &s[..3]
        );
        for b in &bodies {
            assert!(
                !b.contains(s.as_str()),
                "a secret ({}…) is in an error body: {b}",
                &s[..3]
            );
        }
    }
}
