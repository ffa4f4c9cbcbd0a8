//! Trust boundaries as a caller and an operator see them: scopes, key files, the secret key at
//! start-up and its rotation, and abuse limits that refuse clearly and keep serving others.

use crate::harness::kandji::first_device;
use crate::harness::{API_KEY, Binary, TestApp, start_sim};
use kandji_connector::api::auth::{ApiKey, Scope};
use kandji_connector::simulator::{Platform, SimConfig};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;

const CATALOG: &str = "catalog-only-key-0000000000";
const INVOKE: &str = "invoke-only-key-00000000000";
const SECRETS: &str = "invoke-and-secrets-key-0000";
const ADMIN: &str = "admin-only-key-000000000000";
const TRUST: &str = "trust-read-only-key-0000000";

async fn scoped_server() -> TestApp {
    TestApp::builder()
        .config(|c| {
            let key =
                |k: &str, s: Vec<Scope>| ApiKey::with_scopes(&SecretString::from(k.to_string()), s);
            c.api_keys.push(key(CATALOG, vec![Scope::CatalogRead]));
            c.api_keys.push(key(INVOKE, vec![Scope::CardsInvoke]));
            c.api_keys
                .push(key(SECRETS, vec![Scope::CardsInvoke, Scope::SecretsRead]));
            c.api_keys.push(key(ADMIN, vec![Scope::Admin]));
            c.api_keys.push(key(TRUST, vec![Scope::TrustRead]));
        })
        // Device-trust lookups are live (the sync is off): a budget whose live share (10 %)
        // does not space them out.
        .requests_per_hour(3_600_000)
        .start()
        .await
}

#[tokio::test]
async fn each_scope_allows_exactly_its_routes_and_cards() {
    let s = scoped_server().await;
    let (mac, serial) = {
        let t = s.sim.tenant();
        let d = t.first_device_of(Platform::Mac.as_str()).unwrap();
        (d.device_id.to_string(), d.serial_number.to_string())
    };
    let invoke = |card: &str| {
        (
            Method::POST,
            format!("/v1/cards/{card}/invoke"),
            Some(json!({"connection": s.connection, "inputs": {"device_id": mac}})),
        )
    };
    let routes = [
        ("catalog", (Method::GET, "/v1/cards".to_string(), None)),
        (
            "catalog",
            (Method::GET, "/v1/cards/lock_device".to_string(), None),
        ),
        ("invoke", invoke("send_mdm_blank_push")),
        ("secrets", invoke("get_filevault_recovery_key")),
        ("secrets", invoke("lock_device")),
        ("admin", (Method::GET, "/v1/connections".to_string(), None)),
        (
            "admin",
            (
                Method::GET,
                format!("/v1/connections/{}", s.connection),
                None,
            ),
        ),
        (
            "trust",
            (
                Method::GET,
                format!(
                    "/v1/connections/{}/device-trust?serial_number={serial}",
                    s.connection
                ),
                None,
            ),
        ),
    ];
    // (key, which route groups it may use); the device-trust lookup is also open to cards:invoke,
    // which can ask the same through the Get Device Trust card.
    let keys = [
        (CATALOG, vec!["catalog"]),
        (INVOKE, vec!["invoke", "trust"]),
        (SECRETS, vec!["invoke", "secrets", "trust"]),
        (ADMIN, vec!["admin"]),
        (TRUST, vec!["trust"]),
        (
            API_KEY,
            vec!["catalog", "invoke", "secrets", "admin", "trust"],
        ),
    ];
    for (key, allowed) in &keys {
        for (group, (method, path, body)) in &routes {
            let r = s.send(method.clone(), path, body.clone(), Some(key)).await;
            if allowed.contains(group) {
                assert_eq!(r.status, 200, "{key} {method} {path}: {}", r.body);
            } else {
                r.problem(403);
                let detail = r.body["detail"].as_str().unwrap();
                let needed = match *group {
                    "catalog" => "catalog:read",
                    "invoke" => "cards:invoke",
                    "secrets" if allowed.contains(&"invoke") => "secrets:read",
                    "secrets" => "cards:invoke",
                    "trust" => "trust:read",
                    _ => "admin",
                };
                assert!(detail.contains(needed), "{key} {path}: {detail}");
            }
        }
    }
    // A refused secret card sent nothing to Kandji: only the allowed calls reached it.
    let secret_calls = s
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("/secrets/"))
        .count();
    assert_eq!(
        secret_calls, 2,
        "API_KEY and SECRETS each read the key once"
    );
}

#[tokio::test]
async fn abuse_limits_refuse_clearly_and_keep_serving_others() {
    let s = TestApp::builder()
        .config(|c| {
            c.rate_limit_per_second = 5;
            c.rate_limit_burst = 5;
            c.api_keys.push(ApiKey::all(&SecretString::from(
                "second-key-0000000000000".to_string(),
            )));
            // A key with its own, higher limit (e.g. a device-trust product at sign-in rates).
            c.api_keys
                .push(ApiKey::parse_entry("fast-key-00000000000000 rate=1000").unwrap());
        })
        .start()
        .await;
    // Oversized body.
    let big = "x".repeat(300 * 1024);
    let r = s
        .post(
            "/v1/cards/create_note/invoke",
            json!({"connection": s.connection, "inputs": {"device_id": "a", "note": big}}),
        )
        .await;
    r.problem(413);
    // Deeply nested JSON input.
    let mut deep = json!("leaf");
    for _ in 0..60 {
        deep = json!({"a": deep});
    }
    let r = s.post("/v1/cards/custom_api_request/invoke", json!({"connection": s.connection, "inputs": {"relative_url": "/devices", "body": deep}, "options": {"request_type": "POST"}})).await;
    let locs = r.problem(422);
    assert!(locs[0].starts_with("body.inputs.body.a.a"), "{locs:?}");
    // A flood from one key: 429 with Retry-After, while another key is still served.
    let mut limited = 0;
    for _ in 0..20 {
        let r = s.get("/v1/cards").await;
        if r.status == 429 {
            limited += 1;
            assert!(r.headers.contains_key("retry-after"));
            assert_eq!(r.content_type(), "application/problem+json");
        }
    }
    assert!(limited >= 10, "only {limited} of 20 were limited");
    let other = s
        .send(
            Method::GET,
            "/v1/cards",
            None,
            Some("second-key-0000000000000"),
        )
        .await;
    assert_eq!(other.status, 200);
    for _ in 0..20 {
        let r = s
            .send(
                Method::GET,
                "/v1/cards",
                None,
                Some("fast-key-00000000000000"),
            )
            .await;
        assert_eq!(
            r.status, 200,
            "a key with rate=1000 is held to its own limit"
        );
    }
    assert_eq!(
        s.send(Method::GET, "/healthz", None, None).await.status,
        200
    );
    assert_eq!(s.sim.request_count(), 0);
}

/// Keys from a file work; a wrong secret key stops start-up with a clear message; rotation keeps
/// every connection working.
#[tokio::test]
async fn key_files_wrong_secret_key_and_rotation() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/k.db?mode=rwc", dir.path().display());
    let keys_file = dir.path().join("keys");
    std::fs::write(
        &keys_file,
        "# operators\nfile-key-admin-00000000000\nfile-key-catalog-000000000 catalog:read\n\n# the device-trust product\nfile-key-trust-0000000000 trust:read  # sign-in checks only\n",
    )
    .unwrap();
    let old_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes
    let new_key = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
    let key_file = dir.path().join("secret");
    std::fs::write(&key_file, format!("{old_key}\n")).unwrap();

    let keys = (
        "KANDJI_CONNECTOR_API_KEYS_FILE",
        keys_file.display().to_string(),
    );
    let mut server = Binary::serve(&[
        keys.clone(),
        (
            "KANDJI_CONNECTOR_SECRET_KEY_FILE",
            key_file.display().to_string(),
        ),
        ("KANDJI_CONNECTOR_DATABASE_URL", db.clone()),
    ])
    .await;
    let (admin, catalog, trust) = (
        "file-key-admin-00000000000",
        "file-key-catalog-000000000",
        "file-key-trust-0000000000",
    );
    let conn = server.connect_with_key(&sim, admin).await;
    let get = async |path: &str, key| server.send(Method::GET, path, None, Some(key)).await;
    assert_eq!(get("/v1/connections", catalog).await.status, 403);
    let serial = first_device(&sim, Platform::Mac.as_str())
        .serial_number
        .to_string();
    let device_trust = format!("/v1/connections/{conn}/device-trust?serial_number={serial}");
    let r = get(&device_trust, trust).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["managed"], true);
    assert_eq!(get(&device_trust, catalog).await.status, 403);
    assert_eq!(get("/v1/cards", trust).await.status, 403);
    server.kill().await;

    // The stored token is not readable in the database file.
    let bytes = std::fs::read(dir.path().join("k.db")).unwrap();
    assert!(
        !bytes
            .windows(sim.token().len())
            .any(|w| w == sim.token().as_bytes())
    );

    // A wrong secret key stops start-up, saying so.
    let out = Binary::command(&["serve"])
        .env("KANDJI_CONNECTOR_LISTEN", "127.0.0.1:0")
        .env("KANDJI_CONNECTOR_API_KEYS_FILE", &keys_file)
        .env("KANDJI_CONNECTOR_SECRET_KEY", new_key)
        .env("KANDJI_CONNECTOR_DATABASE_URL", &db)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("secret key does not match"), "{stderr}");
    assert!(!stderr.contains(new_key) && !stderr.contains(old_key));

    // Rotate, then start with the new key: the connection still works.
    let out = Binary::command(&["rotate-secret-key"])
        .env("KANDJI_CONNECTOR_DATABASE_URL", &db)
        .env("KANDJI_CONNECTOR_SECRET_KEY", old_key)
        .env("KANDJI_CONNECTOR_NEW_SECRET_KEY", new_key)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Binary::serve(&[
        keys,
        ("KANDJI_CONNECTOR_SECRET_KEY", new_key.to_string()),
        ("KANDJI_CONNECTOR_DATABASE_URL", db),
    ])
    .await;
    let mac = first_device(&sim, Platform::Mac.as_str())
        .device_id
        .to_string();
    let r = server
        .send(
            Method::POST,
            "/v1/cards/get_device/invoke",
            Some(json!({"connection": conn, "inputs": {"device_id": mac}, "options": {"details": "basic"}})),
            Some(admin),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["outputs"]["status_code"], 200);
}

/// `serve` with these settings: it stops with exit code 2; returns what it wrote to stderr.
async fn serve_refused(env: &[(&str, &str)]) -> String {
    let out = Binary::command(&["serve"])
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn serve_refuses_to_start_without_its_settings() {
    let stderr = serve_refused(&[("KANDJI_CONNECTOR_LISTEN", "127.0.0.1:0")]).await;
    assert!(
        stderr.contains("KANDJI_CONNECTOR_API_KEYS")
            && stderr.contains("KANDJI_CONNECTOR_SECRET_KEY"),
        "{stderr}"
    );
    assert!(
        stderr.contains("openssl rand"),
        "says how to fix it: {stderr}"
    );
    let stderr = serve_refused(&[
        ("KANDJI_CONNECTOR_API_KEYS", "short"),
        ("KANDJI_CONNECTOR_SECRET_KEY", "not-base64!"),
    ])
    .await;
    assert!(
        stderr.contains("16 characters") && stderr.contains("base64"),
        "{stderr}"
    );
}
