//! Black-box tests of the simulated Kandji tenant over real HTTP.

use std::time::Duration;

use kandji_connector::simulator::{Fault, SimHandle};

use crate::harness::start_sim;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// A simulated tenant and an HTTP client to call it with.
struct Tenant {
    sim: SimHandle,
    client: Client,
}

impl std::ops::Deref for Tenant {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.sim
    }
}

async fn sim(devices: usize) -> Tenant {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = start_sim(crate::harness::devices(devices)).await;
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Tenant { sim, client }
}

impl Tenant {
    /// Sends an authenticated request and returns status, headers and parsed JSON (Null if none).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .client
            .request(method, format!("{}/api/v1{path}", self.sim.base_url()))
            .bearer_auth(self.sim.token());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::GET, path, None).await;
        (s, v)
    }

    /// Kandji's refusal of a GET: this status and `{"detail": detail}`.
    async fn assert_refused(&self, path: &str, status: u16, detail: &str) {
        let (got, body) = self.get(path).await;
        assert_eq!(got, status, "{path}");
        assert_eq!(body, json!({ "detail": detail }), "{path}");
    }
}

fn ids(page: &Value) -> Vec<String> {
    page.as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn refuses_missing_and_wrong_tokens_and_records_them() {
    let sim = sim(10).await;
    let client = &sim.client;
    let url = format!("{}/api/v1/devices?limit=1", sim.base_url());

    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"detail": "Invalid token."})
    );

    let resp = client
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = client
        .get(&url)
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let recorded = sim.requests();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0].path, "/api/v1/devices");
    assert_eq!(
        recorded[0].query_pairs(),
        vec![("limit".into(), "1".into())]
    );
    assert_eq!(recorded[0].header("authorization"), None);
    assert_eq!(
        recorded[2].header("authorization"),
        Some(format!("Bearer {}", sim.token()).as_str())
    );

    // An unknown path is Django's HTML 404, even without a token.
    let resp = client
        .get(format!("{}/api/v1/nothing/here", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(resp.text().await.unwrap().contains("<h1>Not Found</h1>"));
}

#[tokio::test]
async fn devices_page_as_a_bare_array_with_clamped_limit() {
    let sim = sim(650).await;

    let (status, page) = sim.get("/devices").await;
    assert_eq!(status, 200);
    assert_eq!(page.as_array().unwrap().len(), 300, "default limit is 300");

    let (_, page) = sim.get("/devices?limit=1000").await;
    assert_eq!(
        page.as_array().unwrap().len(),
        300,
        "limit is clamped to 300"
    );

    let (_, page) = sim.get("/devices?limit=300&offset=600").await;
    assert_eq!(page.as_array().unwrap().len(), 50);

    let (status, page) = sim.get("/devices?limit=300&offset=650").await;
    assert_eq!(status, 200);
    assert_eq!(page, json!([]), "offset past the end is an empty array");

    // Paging with a stable ordering visits every device once, in device_id order.
    let mut seen = Vec::new();
    for offset in (0..650).step_by(300) {
        let (_, page) = sim
            .get(&format!(
                "/devices?ordering=device_id&limit=300&offset={offset}"
            ))
            .await;
        seen.extend(ids(&page));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 650);

    let (_, page) = sim.get("/devices?ordering=-device_id&limit=5").await;
    let mut expected = seen.clone();
    expected.reverse();
    assert_eq!(ids(&page), expected[..5]);
}

#[tokio::test]
async fn device_filters_match_like_kandji() {
    let sim = sim(200).await;
    let (mac_serial, mac_id, iphones) = {
        let t = sim.tenant();
        let mac = t.first_device_of("Mac").unwrap();
        (
            mac.serial_number.clone(),
            mac.device_id.to_string(),
            t.devices_of("iPhone").count(),
        )
    };

    let (_, page) = sim.get("/devices?platform=iPhone").await;
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), iphones);
    assert!(page.iter().all(|d| d["platform"] == "iPhone"));

    // serial_number is a case-insensitive "contains" match.
    let partial = mac_serial[2..9].to_lowercase();
    let (_, page) = sim.get(&format!("/devices?serial_number={partial}")).await;
    assert!(ids(&page).contains(&mac_id));

    let (mac_address, email) = {
        let t = sim.tenant();
        let mac = t.first_device_of("Mac").unwrap();
        let user = t.user(&mac.user_id.unwrap()).unwrap();
        (mac.mac_address_string().unwrap(), user.email.to_string())
    };
    let (_, page) = sim
        .get(&format!(
            "/devices?mac_address={}",
            mac_address.to_uppercase()
        ))
        .await;
    assert_eq!(ids(&page), vec![mac_id.clone()]);
    let (_, page) = sim.get(&format!("/devices?user_email_exact={email}")).await;
    assert!(ids(&page).contains(&mac_id));
    let (_, page) = sim
        .get(&format!("/devices?user_email_exact={}x", email))
        .await;
    assert_eq!(page, json!([]));

    let (status, body) = sim.get("/devices?device_id=not-a-uuid").await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"device_id": ["Enter a valid UUID."]}));
}

#[tokio::test]
async fn device_shapes_follow_kandji() {
    let sim = sim(20).await;
    let mac = sim.tenant().first_device_of("Mac").unwrap().device_id;

    let (status, basic) = sim.get(&format!("/devices/{mac}")).await;
    assert_eq!(status, 200);
    assert_eq!(basic["platform"], "Mac");
    assert!(
        basic["first_enrollment"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    assert!(basic["last_check_in"].as_str().unwrap().ends_with('Z'));
    assert!(basic["user"].is_object());

    let (_, details) = sim.get(&format!("/devices/{mac}/details")).await;
    assert_eq!(details["mdm"]["mdm_enabled"], "True");
    assert_eq!(details["kandji_agent"]["agent_installed"], "True");
    assert!(
        details["volumes"][0]["capacity"]
            .as_str()
            .unwrap()
            .ends_with(" GB")
    );
    assert_eq!(details["lost_mode"], json!({}));

    sim.assert_refused(
        "/devices/7d2e4d3c-0000-4000-8000-000000000000",
        404,
        "Not found.",
    )
    .await;
}

#[tokio::test]
async fn blueprint_links_point_at_the_web_app_host() {
    let sim = sim(10).await;

    let (_, first) = sim.get("/blueprints?limit=2").await;
    assert_eq!(first["count"], 5);
    assert_eq!(first["previous"], Value::Null);
    let next = first["next"].as_str().unwrap();
    assert_eq!(
        next,
        "https://accuhive.kandji.io/api/v1/blueprints?limit=2&offset=2"
    );

    // A client keeps only the query and re-applies it to its own base URL.
    let query = next.split_once('?').unwrap().1;
    let (_, second) = sim.get(&format!("/blueprints?{query}")).await;
    assert_eq!(second["results"].as_array().unwrap().len(), 2);
    assert_eq!(
        second["previous"],
        "https://accuhive.kandji.io/api/v1/blueprints?limit=2"
    );
    let (_, last) = sim.get("/blueprints?limit=2&offset=4").await;
    assert_eq!(last["results"].as_array().unwrap().len(), 1);
    assert_eq!(last["next"], Value::Null);
}

#[tokio::test]
async fn blueprint_create_takes_dotted_form_fields() {
    let sim = sim(10).await;
    let client = &sim.client;
    let url = format!("{}/api/v1/blueprints", sim.base_url());
    let form = [
        ("name", "Sales Macs"),
        ("enrollment_code.is_active", "true"),
        ("enrollment_code.code", "424242"),
        ("color", "orange-500"),
    ];
    let resp = client
        .post(&url)
        .bearer_auth(sim.token())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["name"], "Sales Macs");
    assert_eq!(
        created["enrollment_code"],
        json!({"code": "424242", "is_active": true})
    );
    assert_eq!(created["type"], "classic");

    let again = client
        .post(&url)
        .bearer_auth(sim.token())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!(["A blueprint with this name already exists."])
    );

    let (status, _, body) = sim
        .call(
            Method::POST,
            "/blueprints",
            Some(json!({"enrollment_code": {"is_active": true}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"name": ["This field is required."]}));
}

#[tokio::test]
async fn ade_devices_are_numbered_pages_of_300() {
    let sim = sim(1000).await;
    let (token, total) = {
        let t = sim.tenant();
        let a = &t.ade_integrations[0];
        (a.id, t.ade_devices_of(&a.id).len())
    };
    assert!(
        total > 300 && total <= 600,
        "fixture has two pages, got {total}"
    );

    let (_, p1) = sim
        .get(&format!("/integrations/apple/ade/{token}/devices"))
        .await;
    assert_eq!(p1["count"], total);
    assert_eq!(p1["results"].as_array().unwrap().len(), 300);
    assert_eq!(
        p1["next"],
        format!("https://accuhive.kandji.io/api/v1/integrations/apple/ade/{token}/devices/?page=2")
    );
    assert!(
        p1["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["mdm_device"].is_null())
    );

    let (_, p2) = sim
        .get(&format!("/integrations/apple/ade/{token}/devices?page=2"))
        .await;
    assert_eq!(p2["results"].as_array().unwrap().len(), total - 300);
    assert_eq!(p2["next"], Value::Null);
    assert_eq!(
        p2["previous"],
        format!("https://accuhive.kandji.io/api/v1/integrations/apple/ade/{token}/devices/")
    );

    sim.assert_refused(
        &format!("/integrations/apple/ade/{token}/devices?page=3"),
        404,
        "Invalid page.",
    )
    .await;
}

#[tokio::test]
async fn commands_check_the_platform() {
    let sim = sim(20).await;
    let (mac, iphone) = {
        let t = sim.tenant();
        (
            t.first_device_of("Mac").unwrap().device_id,
            t.first_device_of("iPhone").unwrap().device_id,
        )
    };

    let (status, _, body) = sim
        .call(
            Method::POST,
            &format!("/devices/{mac}/action/clearpasscode"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, json!("Command is not allowed for current device"));

    let (status, _, body) = sim
        .call(
            Method::POST,
            &format!("/devices/{iphone}/action/clearpasscode"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, Value::Null, "success has an empty body");

    let (status, _, body) = sim
        .call(
            Method::POST,
            &format!("/devices/{iphone}/action/reinstallagent"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, json!("Command is not allowed for current device"));
}

#[tokio::test]
async fn lock_returns_a_pin_for_a_mac_once() {
    let sim = sim(20).await;
    let (mac, iphone) = {
        let t = sim.tenant();
        (
            t.first_device_of("Mac").unwrap().device_id,
            t.first_device_of("iPhone").unwrap().device_id,
        )
    };
    let lock = |id| format!("/devices/{id}/action/lock");

    let (status, _, body) = sim
        .call(
            Method::POST,
            &lock(mac),
            Some(json!({"Message": "Call IT"})),
        )
        .await;
    assert_eq!(status, 200);
    let pin = body["PIN"].as_str().unwrap().to_string();
    assert!(pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()));

    let (_, unlock) = sim.get(&format!("/devices/{mac}/secrets/unlockpin")).await;
    assert_eq!(unlock, json!({"pin": pin}));

    let (status, _, body) = sim.call(Method::POST, &lock(mac), None).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!("This device is already locked."));

    let (status, _, body) = sim.call(Method::POST, &lock(iphone), None).await;
    assert_eq!(status, 200);
    assert_eq!(body, Value::Null);

    let (status, _, body) = sim
        .call(
            Method::POST,
            &format!("/devices/{mac}/action/erase"),
            Some(json!({"PIN": 1234})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.is_string());
}

#[tokio::test]
async fn lost_mode_round_trip() {
    let sim = sim(20).await;
    let client = &sim.client;
    let iphone = sim.tenant().first_device_of("iPhone").unwrap().device_id;
    let path = |a: &str| format!("/devices/{iphone}/action/{a}");

    let (status, body) = sim
        .get(&format!("/devices/{iphone}/details/lostmode"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, json!(["Device is not in lost mode."]));

    let (status, _, _) = sim
        .call(Method::POST, &path("enablelostmode"), Some(json!({})))
        .await;
    assert_eq!(status, 400, "Message or PhoneNumber is required");

    let (status, _, _) = sim
        .call(
            Method::POST,
            &path("enablelostmode"),
            Some(json!({"Message": "Please return"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = sim
        .get(&format!("/devices/{iphone}/details/lostmode"))
        .await;
    assert_eq!(body["lost_mode"]["lost_mode_status"], "ENABLED");
    assert_eq!(body["lost_mode"]["lock_screen_message"], "Please return");

    let (status, _, _) = sim.call(Method::POST, &path("disablelostmode"), None).await;
    assert_eq!(status, 200);
    let (status, _, body) = sim.call(Method::POST, &path("disablelostmode"), None).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!(["Device is not in lost mode."]));

    // Malformed JSON is refused in Python's words.
    let resp = client
        .post(format!("{}/api/v1{}", sim.base_url(), path("setname")))
        .bearer_auth(sim.token())
        .header("content-type", "application/json")
        .body("{\"DeviceName\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let msg: Value = resp.json().await.unwrap();
    assert!(
        msg.as_str().unwrap().starts_with("JSON parse error - "),
        "{msg}"
    );
}

#[tokio::test]
async fn notes_and_device_updates() {
    let sim = sim(20).await;
    let (mac, user_id, blueprint) = {
        let t = sim.tenant();
        (
            t.first_device_of("Mac").unwrap().device_id,
            t.users[1].id,
            t.blueprints[1].id,
        )
    };
    let notes = format!("/devices/{mac}/notes");
    let (status, _, body) = sim.call(Method::POST, &notes, Some(json!({}))).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"content": ["This field is required."]}));
    let (status, _, note) = sim
        .call(Method::POST, &notes, Some(json!({"content": "Hello"})))
        .await;
    assert_eq!(status, 201);
    let (_, all) = sim.get(&notes).await;
    assert_eq!(
        all.as_array().unwrap().last().unwrap()["note_id"],
        note["note_id"]
    );

    let (status, _, updated) = sim.call(Method::PATCH,
        &format!("/devices/{mac}"),
        Some(json!({"user": user_id, "asset_tag": null, "tags": ["a", "b"], "blueprint_id": blueprint})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["user"]["id"], user_id.to_string());
    assert_eq!(updated["asset_tag"], Value::Null);
    assert_eq!(updated["tags"], json!(["a", "b"]));
    assert_eq!(updated["blueprint_id"], blueprint.to_string());

    let (status, _, body) = sim
        .call(
            Method::PATCH,
            &format!("/devices/{mac}"),
            Some(json!({"blueprint_id": "7d2e4d3c-0000-4000-8000-000000000000"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["blueprint_id"].is_array());

    let (status, _, body) = sim
        .call(
            Method::PATCH,
            &format!("/devices/{mac}"),
            Some(json!({"user": null})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["user"], "");
}

#[tokio::test]
async fn faults_rate_limit_then_recover() {
    let sim = sim(10).await;
    sim.push_faults(Some("/devices"), vec![Fault::rate_limited(2)]);

    let (status, headers, body) = sim.call(Method::GET, "/devices?limit=1", None).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(body, json!({"message": "API rate limit exceeded"}));

    let (status, _, _) = sim.call(Method::GET, "/devices?limit=1", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        sim.request_count(),
        2,
        "the faulted request is recorded too"
    );
}

#[tokio::test]
async fn faults_only_hit_matching_paths_in_order() {
    let sim = sim(10).await;
    sim.push_faults(
        Some("/blueprints"),
        vec![Fault::status(503), Fault::Delay(Duration::from_millis(50))],
    );

    let (status, _) = sim.get("/devices?limit=1").await;
    assert_eq!(status, 200, "other paths are untouched");
    sim.assert_refused("/blueprints", 503, "Service Unavailable")
        .await;
    let started = std::time::Instant::now();
    let (status, _) = sim.get("/blueprints").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn dropped_and_hanging_requests_fail_on_the_client() {
    let sim = sim(10).await;
    let client = &sim.client;
    let url = format!("{}/api/v1/devices?limit=1", sim.base_url());

    sim.push_faults(None, vec![Fault::Drop]);
    let err = client
        .get(&url)
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    let ok = client
        .get(&url)
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the next request is served normally");

    sim.push_faults(None, vec![Fault::Hang]);
    let err = client
        .get(&url)
        .bearer_auth(sim.token())
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(sim.request_count(), 3);
}

/// Figures for 100,000 devices; run with
/// `cargo test --release --test simulator -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test; run in release"]
async fn serves_100k_devices() {
    let started = std::time::Instant::now();
    let sim = sim(100_000).await;
    let client = &sim.client;
    println!("generated 100,000 devices in {:?}", started.elapsed());
    sim.set_recording(false);
    for query in [
        "limit=300&offset=0",
        "limit=300&offset=99000",
        "ordering=device_id&limit=300&offset=50000",
        "platform=iPad&limit=300&offset=3000",
        "user_email=kim&limit=300&offset=600",
    ] {
        let url = format!("{}/api/v1/devices?{query}", sim.base_url());
        let mut times = Vec::new();
        for _ in 0..21 {
            let t0 = std::time::Instant::now();
            let body = client
                .get(&url)
                .bearer_auth(sim.token())
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            times.push(t0.elapsed());
            let page: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(page.as_array().unwrap().len(), 300);
        }
        let first = times[0];
        times.sort();
        println!(
            "{query}: first {first:?}, median {:?} (request, 300 devices, parse)",
            times[10]
        );
    }
}
