//! Kandji as a shared, rate-limited resource: budget, safe retries, timeouts, idempotent invocations.

use std::time::{Duration, Instant};

use crate::harness::{API_KEY, TestApp};
use kandji_connector::simulator::Fault;
use serde_json::json;

fn a_mac(s: &TestApp) -> String {
    let t = s.sim.tenant();
    t.devices
        .iter()
        .find(|d| d.platform == kandji_connector::simulator::Platform::Mac)
        .expect("a Mac")
        .device_id
        .to_string()
}

fn count(s: &TestApp, method: &str, path_contains: &str) -> usize {
    s.sim
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.contains(path_contains))
        .count()
}

#[tokio::test]
async fn a_get_card_waits_out_a_429_with_retry_after() {
    let s = TestApp::start().await;
    let id = a_mac(&s);
    s.sim
        .push_faults(Some("/devices/"), vec![Fault::rate_limited(1)]);
    let started = Instant::now();
    let out = s.get_device_outputs(&id).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "did not honour Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["device"]["device_id"], id);
    assert_eq!(count(&s, "GET", &id), 2);
}

#[tokio::test]
async fn a_command_refused_with_429_is_sent_again_and_succeeds_once() {
    let s = TestApp::start().await;
    let id = a_mac(&s);
    s.sim.push_faults(
        Some("/action/"),
        vec![Fault::Status {
            status: 429,
            retry_after: None,
            body: None,
        }],
    );
    let out = s
        .outputs("restart_device", json!({"device_id": id}), json!({}))
        .await;
    assert_eq!(out["status_code"], 200);
    assert_eq!(
        count(&s, "POST", "/action/restart"),
        2,
        "{:?}",
        s.sim.requests()
    );
}

#[tokio::test]
async fn a_command_after_a_503_is_sent_exactly_once() {
    let s = TestApp::start().await;
    let id = a_mac(&s);
    s.sim
        .push_faults(Some("/action/"), vec![Fault::status(503)]);
    let out = s
        .outputs("shutdown_device", json!({"device_id": id}), json!({}))
        .await;
    assert_eq!(out["status_code"], 503);
    assert!(out["error"].is_string());
    assert_eq!(count(&s, "POST", "/action/shutdown"), 1);
}

#[tokio::test]
async fn a_get_after_two_503s_succeeds() {
    let s = TestApp::start().await;
    let id = a_mac(&s);
    s.sim.push_faults(
        Some("/secrets/"),
        vec![Fault::status(503), Fault::status(502)],
    );
    let r = s
        .invoke(
            "get_filevault_recovery_key",
            json!({"device_id": id}),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["outputs"]["status_code"], 200);
    assert!(r.body["outputs"]["key"].is_string());
    assert_eq!(count(&s, "GET", "/secrets/filevaultkey"), 3);
}

#[tokio::test]
async fn hung_answers_end_in_a_504_within_the_timeout_and_commands_are_not_resent() {
    let s = TestApp::with_config(|c| c.kandji.total_timeout = Duration::from_millis(800)).await;
    let id = a_mac(&s);
    s.sim.push_faults(Some("/action/"), vec![Fault::Hang]);
    let started = Instant::now();
    let r = s
        .invoke("lock_device", json!({"device_id": id}), json!({}))
        .await;
    let took = started.elapsed();
    r.problem(504);
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    assert_eq!(
        count(&s, "POST", "/action/lock"),
        1,
        "a timed-out command was re-sent"
    );

    s.sim.push_faults(
        Some("/devices/"),
        vec![Fault::Hang, Fault::Hang, Fault::Hang],
    );
    let started = Instant::now();
    let r = s.get_device(&id).await;
    r.problem(504);
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried_for_a_get_but_not_for_a_command() {
    let s = TestApp::start().await;
    let id = a_mac(&s);
    s.sim.push_faults(Some("/apps"), vec![Fault::Drop]);
    let out = s
        .outputs("list_device_apps", json!({"device_id": id}), json!({}))
        .await;
    assert_eq!(out["status_code"], 200);
    assert_eq!(count(&s, "GET", "/apps"), 2);

    s.sim.push_faults(Some("/action/"), vec![Fault::Drop]);
    let r = s
        .invoke("update_inventory", json!({"device_id": id}), json!({}))
        .await;
    r.problem(502);
    assert_eq!(count(&s, "POST", "/action/updateinventory"), 1);
}

#[tokio::test]
async fn a_budget_of_3600_an_hour_spaces_invocations_a_second_apart() {
    let s = TestApp::with_config(|c| c.kandji.budget_wait = Duration::from_secs(30)).await;
    s.set_budget(&s.connection, 3600).await;
    let id = a_mac(&s);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let http = s.http.clone();
        let url = format!("{}/v1/cards/send_mdm_blank_push/invoke", s.url);
        let body = json!({"connection": s.connection, "inputs": {"device_id": id}});
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(API_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            Instant::now()
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done.sort();
    let total = done.last().unwrap().duration_since(started);
    assert!(
        total >= Duration::from_millis(8500),
        "10 requests at 1/s finished in {total:?}"
    );
    for w in done.windows(2) {
        let gap = w[1].duration_since(w[0]);
        assert!(
            gap >= Duration::from_millis(700) && gap <= Duration::from_millis(1500),
            "gap {gap:?}"
        );
    }
    assert_eq!(count(&s, "POST", "/action/blankpush"), 10);
    let r = s.get(&format!("/v1/connections/{}", s.connection)).await;
    assert_eq!(r.body["budget"]["requests_per_hour"], 3600);
    assert_eq!(r.body["budget"]["used_last_hour"], 10);
    assert_eq!(r.body["budget"]["remaining_this_hour"], 3590);
}

#[tokio::test]
async fn a_spent_budget_answers_429_with_retry_after_and_sends_nothing() {
    let s = TestApp::with_config(|c| c.kandji.budget_wait = Duration::from_millis(200)).await;
    s.patch(
        &format!("/v1/connections/{}", s.connection),
        json!({"requests_per_hour": 2}),
    )
    .await;
    let id = a_mac(&s);
    let first = s
        .invoke("send_mdm_blank_push", json!({"device_id": id}), json!({}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = s
        .invoke("send_mdm_blank_push", json!({"device_id": id}), json!({}))
        .await;
    second.problem(429);
    let retry: u64 = second.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 60, "retry-after {retry}");
    assert_eq!(count(&s, "POST", "/action/blankpush"), 1);
}

#[tokio::test]
async fn the_same_idempotency_key_sends_one_command() {
    let s = TestApp::start().await;
    let id = a_mac(&s);
    let body = json!({"connection": s.connection, "inputs": {"device_id": id}});
    let send = |key: &'static str, body: serde_json::Value| {
        s.post_keyed("/v1/cards/lock_device/invoke", body, key)
    };
    let first = send("lock-1", body.clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["cache-control"], "no-store");
    let first = first.body;
    let second = send("lock-1", body.clone()).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(second.headers["cache-control"], "no-store");
    let second = second.body;
    assert_eq!(first, second, "the replay differs from the first answer");
    assert!(
        first["outputs"]["pin"]
            .as_str()
            .is_some_and(|p| p.len() == 6)
    );
    assert_eq!(
        count(&s, "POST", "/action/lock"),
        1,
        "the command was sent twice"
    );

    let other = json!({"connection": s.connection, "inputs": {"device_id": a_mac_other(&s, &id)}});
    let third = send("lock-1", other).await;
    assert_eq!(third.status, 422);
    assert_eq!(count(&s, "POST", "/action/lock"), 1);
    // A different key is a different request.
    let fourth = send("lock-2", body).await;
    assert_eq!(fourth.status, 200);
    assert_eq!(count(&s, "POST", "/action/lock"), 2);
}

fn a_mac_other(s: &TestApp, not: &str) -> String {
    let t = s.sim.tenant();
    t.devices
        .iter()
        .find(|d| {
            d.platform == kandji_connector::simulator::Platform::Mac
                && d.device_id.to_string() != not
        })
        .expect("two Macs")
        .device_id
        .to_string()
}

// ---- A follow-up read never hides a command that went through ----
//
// The lost-mode cards send the MDM command, then read the device (`GET /devices/{id}`) for
// their outputs. When that read fails the invocation still answers 200 with the command's
// status, the device fields null and `lookup_error` saying what could not be read: failing
// it would make a workflow engine retry, and send the command twice.

fn an_iphone(s: &TestApp) -> String {
    s.sim
        .tenant()
        .first_device_of("iPhone")
        .expect("an iPhone")
        .device_id
        .to_string()
}

/// The device fields of a lost-mode card that could not read the device.
fn unread_device(id: &str, status: u16, message: serde_json::Value) -> serde_json::Value {
    json!({
        "device_id": id,
        "device_name": null,
        "serial_number": null,
        "platform": null,
        "user_email": null,
        "status_code": status,
        "message": message,
    })
}

/// The lookup error of an invocation, its other outputs left in `out`.
fn take_lookup_error(out: &mut serde_json::Value) -> String {
    out.as_object_mut()
        .unwrap()
        .remove("lookup_error")
        .and_then(|e| e.as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("a lookup_error: {out}"))
}

/// Turns on Lost Mode ("Please return") on the iPhone `id` when the read after the command
/// fails: the outputs are those of an unread device that took the command, and the lookup error,
/// returned, says the device could not be read.
async fn lost_mode_on_an_unread_device(s: &TestApp, id: &str) -> String {
    let r = s
        .invoke(
            "turn_on_lost_mode",
            json!({"device_id": id, "lock_message": "Please return"}),
            json!({}),
        )
        .await;
    let mut out = r.ok()["outputs"].clone();
    let error = take_lookup_error(&mut out);
    assert_eq!(out, unread_device(id, 200, json!("Please return")));
    assert!(error.contains("device could not be read"), "{error}");
    error
}

/// Faults for the requests to `/devices/{id}…` after the command: the command (the first such
/// request) is answered normally, the reads after it get `faults`.
fn after_the_command(faults: Vec<Fault>) -> Vec<Fault> {
    std::iter::once(Fault::Delay(Duration::ZERO))
        .chain(faults)
        .collect()
}

#[tokio::test]
async fn a_follow_up_read_that_times_out_answers_with_the_commands_status() {
    let s = TestApp::with_config(|c| c.kandji.total_timeout = Duration::from_millis(800)).await;
    let id = an_iphone(&s);
    s.sim.push_faults(
        Some(&format!("/devices/{id}")),
        after_the_command(vec![Fault::Hang; 5]),
    );
    let started = Instant::now();
    let error = lost_mode_on_an_unread_device(&s, &id).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.contains("did not answer within"), "{error}");
    assert_eq!(count(&s, "POST", "/action/enablelostmode"), 1);
    assert!(
        count(&s, "GET", &format!("/devices/{id}")) >= 1,
        "the device read was tried"
    );
    assert!(
        s.sim
            .tenant()
            .first_device_of("iPhone")
            .unwrap()
            .lost_mode
            .is_some(),
        "the command went through"
    );
}

#[tokio::test]
async fn a_follow_up_read_answered_500_answers_with_the_commands_status() {
    let s = TestApp::start().await;
    let id = an_iphone(&s);
    for (card, action) in [
        ("turn_on_lost_mode", "enablelostmode"),
        ("play_lost_mode_sound", "playlostmodesound"),
        ("update_lost_mode_location", "updatelocation"),
        ("turn_off_lost_mode", "disablelostmode"),
    ] {
        s.sim.clear_requests();
        // Kandji answers the read with 500 (not retried: only 502 to 504 are).
        s.sim.push_faults(
            Some(&format!("/devices/{id}")),
            after_the_command(vec![Fault::status(500)]),
        );
        let inputs = match card {
            "turn_on_lost_mode" => json!({"device_id": id, "phone_number": "5550100"}),
            _ => json!({"device_id": id}),
        };
        let r = s.invoke(card, inputs, json!({})).await;
        let mut out = r.ok()["outputs"].clone();
        let error = take_lookup_error(&mut out);
        assert_eq!(out, unread_device(&id, 200, json!(null)), "{card}");
        assert!(
            error.contains("device could not be read")
                && error.contains("Kandji answered 500: Internal Server Error"),
            "{card}: {error}"
        );
        assert_eq!(count(&s, "POST", &format!("/action/{action}")), 1, "{card}");
        assert_eq!(count(&s, "GET", &format!("/devices/{id}")), 1, "{card}");
    }

    // A read that works again: no lookup error, the device's fields are back.
    let out = s
        .outputs(
            "turn_on_lost_mode",
            json!({"device_id": id, "phone_number": "5550100"}),
            json!({}),
        )
        .await;
    assert_eq!(out["lookup_error"], json!(null));
    assert_eq!(out["platform"], "iPhone");
}

#[tokio::test]
async fn a_follow_up_read_refused_by_the_budget_answers_with_the_commands_status() {
    let s = TestApp::builder()
        .config(|c| c.kandji.budget_wait = Duration::from_millis(200))
        .requests_per_hour(1)
        .start()
        .await;
    let id = an_iphone(&s);
    let error = lost_mode_on_an_unread_device(&s, &id).await;
    assert!(error.contains("budget is spent"), "{error}");
    assert_eq!(count(&s, "POST", "/action/enablelostmode"), 1);
    assert_eq!(
        count(&s, "GET", &format!("/devices/{id}")),
        0,
        "the read was not sent"
    );
}
