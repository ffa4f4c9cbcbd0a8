//! Kandji events: event cards fire for their changes in the simulated tenant, once, signed, with
//! the documented payload; filters; retries keep the webhook-id; the audit log's pages and cursor
//! are followed; replay; the cost in Kandji calls does not depend on the number of
//! subscriptions; a SIGKILLed process neither loses nor repeats events.

use std::collections::BTreeMap;
use std::time::Duration;

use kandji_connector::simulator::{Actor, AuditChange, Platform, SimHandle};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::kandji::{first_device, other_blueprint, other_user, texts, user_email};
use crate::harness::{
    API_KEY, Answer, Api, Binary, Hit, Receiver, SECRET, TestApp, TestDb, assert_signed, both,
    eventually, start_sim,
};

/// Polls every 100 ms, looks for due deliveries every 20 ms.
pub fn quick(c: &mut kandji_connector::config::Config) {
    c.events.interval = Duration::from_millis(100);
    c.events.delivery_tick = Duration::from_millis(20);
}

/// A call to the simulator's admin routes (or its API), as an admin or a script would make it.
pub async fn sim_call(sim: &SimHandle, method: Method, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth(sim.token())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(status < 300, "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Enrolls a device in the simulated tenant (`POST /_sim/devices`); returns it.
pub async fn enroll(sim: &SimHandle, device: Value) -> Value {
    sim_call(sim, Method::POST, "/_sim/devices", device).await
}

/// A change to a device of the simulated tenant: `POST /_sim/devices/{id}/{change}`.
pub async fn change_device(sim: &SimHandle, id: &str, change: &str, body: Value) -> Value {
    let path = format!("/_sim/devices/{id}/{change}");
    sim_call(sim, Method::POST, &path, body).await
}

/// Makes a record of the simulated tenant (`POST {route}`), then sends each of `then` to it
/// (`{route}/{id}`: a change, then its deletion); returns its id.
async fn made_changed_deleted(
    sim: &SimHandle,
    route: &str,
    record: Value,
    then: [(Method, Value); 2],
) -> String {
    let made = sim_call(sim, Method::POST, route, record).await;
    let id = made["id"].as_str().unwrap().to_string();
    for (method, body) in then {
        sim_call(sim, method, &format!("{route}/{id}"), body).await;
    }
    id
}

pub async fn subscribe(api: &Api, event: &str, url: &str, filters: Value) -> String {
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"connection": api.connection, "event": event, "url": url, "secret": SECRET, "filters": filters}),
        )
        .await;
    assert_eq!(r.status, 201, "{event}: {}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.headers.get("location").unwrap().to_str().unwrap(),
        format!("/v1/subscriptions/{id}")
    );
    id
}

/// The receiver's hits, by the `event` of their payload.
fn by_event(hits: &[Hit]) -> BTreeMap<String, Vec<Hit>> {
    let mut m: BTreeMap<String, Vec<Hit>> = BTreeMap::new();
    for h in hits {
        m.entry(h.body["event"].as_str().unwrap_or("?").to_string())
            .or_default()
            .push(h.clone());
    }
    m
}

fn audit_requests(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path == "/api/v1/audit/events")
        .count()
}

both!(every_event_card_fires_once_for_its_change_with_its_payload);
async fn every_event_card_fires_once_for_its_change_with_its_payload(db: TestDb) {
    let app = TestApp::builder().db(&db).config(quick).start().await;
    let rx = Receiver::start().await;
    let events = [
        "device_enrolled",
        "device_removed",
        "device_blueprint_changed",
        "blueprint_created",
        "blueprint_updated",
        "blueprint_deleted",
        "library_item_created",
        "library_item_updated",
        "library_item_deleted",
        "sensitive_data_accessed",
    ];
    let mut subs = BTreeMap::new();
    for e in events {
        subs.insert(e, subscribe(&app, e, &rx.url(), json!({})).await);
    }
    let raw = subscribe(
        &app,
        "audit_event",
        &rx.url(),
        json!({"target_type": "library_item", "action": ["create", "delete"]}),
    )
    .await;
    let sim = &app.sim;
    let mac = first_device(sim, "Mac");
    let other_blueprint = other_blueprint(sim, &mac);
    let old_blueprint = sim.tenant().blueprint_name(&mac.blueprint_id).to_string();

    // Enroll a Mac, move it, read its FileVault key, remove another from MDM.
    let enrolled = enroll(
        sim,
        json!({"platform": "Mac", "device_name": "New Hire MacBook"}),
    )
    .await;
    let new_id = enrolled["device_id"].as_str().unwrap().to_string();
    let mac_id = mac.device_id.to_string();
    change_device(
        sim,
        &mac_id,
        "blueprint",
        json!({"blueprint_id": other_blueprint.id}),
    )
    .await;
    change_device(
        sim,
        &mac_id,
        "read-secret",
        json!({"secret": "filevault_key"}),
    )
    .await;
    change_device(sim, &new_id, "remove-mdm", json!({})).await;
    // Blueprints through Kandji's API; Library Items through the admin routes.
    let bp_id = made_changed_deleted(
        sim,
        "/api/v1/blueprints",
        json!({"name": "Events Test", "enrollment_code": {"is_active": true}}),
        [
            (Method::PATCH, json!({"description": "updated"})),
            (Method::DELETE, json!({})),
        ],
    )
    .await;
    let li_id = made_changed_deleted(
        sim,
        "/_sim/library-items",
        json!({"name": "Zoom"}),
        [
            (Method::POST, json!({"name": "Zoom Workplace"})),
            (Method::DELETE, json!({"name": "Zoom Workplace"})),
        ],
    )
    .await;

    // 10 cards, one change each (Blueprint Changed also fires for nothing else), and the raw
    // Audit Event card for the two Library Item entries its filters let through.
    rx.wait_for("every event delivered", 12, Duration::from_secs(20))
        .await;
    // Several more polls: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let hits = rx.hits();
    let by = by_event(&hits);
    for e in events {
        assert_eq!(by.get(e).map(Vec::len), Some(1), "{e}: {:#?}", by.get(e));
    }
    assert_eq!(by["audit_event"].len(), 2, "{:#?}", by["audit_event"]);
    assert_eq!(hits.len(), 12);
    let conn = app.connection.clone();
    for h in &hits {
        assert_signed(h);
        let p = &h.body;
        let sub = if p["event"] == "audit_event" {
            raw.clone()
        } else {
            subs[p["event"].as_str().unwrap()].clone()
        };
        let event_id = p["event_id"].as_str().unwrap();
        assert!(event_id.starts_with("evt_"), "{p}");
        assert_eq!(
            h.id,
            format!(
                "msg_{}_{}",
                event_id.trim_start_matches("evt_"),
                sub.trim_start_matches("sub_")
            )
        );
        assert_eq!(p["connection"], conn.as_str());
        chrono::DateTime::parse_from_rfc3339(p["occurred_at"].as_str().unwrap()).unwrap();
        assert_eq!(p["audit_event_id"].as_str().unwrap().len(), 26, "{p}");
    }
    let one = |e: &str| by[e][0].body.clone();
    let p = one("device_enrolled");
    assert_eq!(p["device_id"], new_id.as_str());
    assert_eq!(p["device_name"], "New Hire MacBook");
    assert_eq!(p["serial_number"], enrolled["serial_number"]);
    assert_eq!(p["platform"], "Mac");
    assert_eq!(p["actor_type"], "user");
    let p = one("device_blueprint_changed");
    assert_eq!(p["device_id"], mac_id.as_str());
    assert_eq!(p["serial_number"], &*mac.serial_number);
    assert_eq!(p["blueprint_id"], other_blueprint.id.to_string());
    assert_eq!(p["blueprint_name"], other_blueprint.name.as_str());
    assert_eq!(p["previous_blueprint_id"], mac.blueprint_id.to_string());
    assert_eq!(p["previous_blueprint_name"], old_blueprint.as_str());
    let p = one("sensitive_data_accessed");
    assert_eq!(p["secret"], "filevault_key");
    assert_eq!(p["device_id"], mac_id.as_str());
    assert_eq!(p["admin_type"], "user");
    let p = one("device_removed");
    assert_eq!(p["device_id"], new_id.as_str());
    assert_eq!(p["removal"], "mdm_removed");
    let p = one("blueprint_created");
    assert_eq!(p["blueprint_id"], bp_id.as_str());
    assert_eq!(p["blueprint_name"], "Events Test");
    assert_eq!(p["actor_type"], "api_token");
    assert_eq!(one("blueprint_updated")["description"], "updated");
    assert_eq!(one("blueprint_deleted")["blueprint_id"], bp_id.as_str());
    let p = one("library_item_created");
    assert_eq!(p["library_item_id"], li_id.as_str());
    assert_eq!(p["library_item_name"], "Zoom");
    assert_eq!(
        one("library_item_updated")["library_item_name"],
        "Zoom Workplace"
    );
    assert_eq!(
        one("library_item_deleted")["library_item_id"],
        li_id.as_str()
    );
    let mut raw_actions: Vec<&str> = by["audit_event"]
        .iter()
        .map(|h| h.body["action"].as_str().unwrap())
        .collect();
    raw_actions.sort();
    assert_eq!(raw_actions, ["create", "delete"]);
    assert!(
        by["audit_event"]
            .iter()
            .all(|h| h.body["target_type"] == "library_item")
    );

    // Deliveries show each once, delivered at the first attempt.
    let d = app
        .get(&format!(
            "/v1/subscriptions/{}/deliveries",
            subs["device_enrolled"]
        ))
        .await
        .ok();
    let list = d["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{d}");
    assert_eq!(list[0]["state"], "delivered");
    assert_eq!(list[0]["attempts"], 1);
    assert_eq!(list[0]["webhook_id"], by["device_enrolled"][0].id.as_str());

    // The audit log was read as Kandji documents it: ascending, from a start date.
    let first = sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/audit/events")
        .unwrap();
    let q: BTreeMap<String, String> = first.query_pairs().into_iter().collect();
    assert_eq!(q["limit"], "500");
    assert_eq!(q["sort_by"], "occurred_at");
    chrono::DateTime::parse_from_rfc3339(&q["start_date"]).unwrap();
    assert_eq!(first.method, "GET");
}

both!(filters_choose_what_a_subscription_receives);
async fn filters_choose_what_a_subscription_receives(db: TestDb) {
    let app = TestApp::builder().db(&db).config(quick).start().await;
    let macs = Receiver::start().await;
    let iphones = Receiver::start().await;
    subscribe(
        &app,
        "device_enrolled",
        &macs.url(),
        json!({"platform": "Mac"}),
    )
    .await;
    subscribe(
        &app,
        "device_enrolled",
        &iphones.url(),
        json!({"platform": ["iPhone", "iPad"]}),
    )
    .await;
    for p in ["Mac", "iPhone", "Mac", "AppleTV"] {
        enroll(&app.sim, json!({"platform": p})).await;
    }
    eventually("filtered deliveries", Duration::from_secs(10), async || {
        macs.hit_count() >= 2 && iphones.hit_count() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(macs.hit_count(), 2);
    assert!(macs.hits().iter().all(|h| h.body["platform"] == "Mac"));
    assert_eq!(iphones.hit_count(), 1);
    assert_eq!(iphones.hits()[0].body["platform"], "iPhone");
}

#[tokio::test]
async fn subscriptions_are_checked_and_scoped() {
    let app = TestApp::builder()
        .key("events-key-0123456789ab events:manage")
        .key("invoke-key-0123456789ab cards:invoke catalog:read")
        .start()
        .await;
    let rx = Receiver::start().await;
    // Every offending field is named.
    let r = app
        .post(
            "/v1/subscriptions",
            json!({"connection": "conn_nope", "event": "device_enrolled", "url": "ftp://x", "secret": "nope"}),
        )
        .await;
    assert_eq!(r.problem(422), ["connection", "url", "secret"]);
    let r = app
        .post(
            "/v1/subscriptions",
            json!({"connection": app.connection, "event": "no_such_event", "url": rx.url()}),
        )
        .await;
    assert_eq!(r.problem(422), ["event"]);
    let r = app
        .post(
            "/v1/subscriptions",
            json!({"connection": app.connection, "event": "device_enrolled", "url": rx.url(), "filters": {"platform": 3, "colour": "red"}}),
        )
        .await;
    let mut locs = r.problem(422);
    locs.sort();
    assert_eq!(locs, ["filters.colour", "filters.platform"], "{}", r.body);
    let r = app
        .post(
            "/v1/subscriptions",
            json!({"connection": app.connection, "event": "device_enrolled", "url": "https://example.com/hook", "extra": 1}),
        )
        .await;
    assert_eq!(r.problem(422), ["extra"]);
    // The catalog of event cards.
    let cat = app.get("/v1/events").await.ok();
    let ids = texts(&cat["events"], "id");
    assert!(
        ids.contains(&"device_enrolled") && ids.contains(&"audit_event"),
        "{ids:?}"
    );
    let card = app.get("/v1/events/device_removed").await.ok();
    for f in [
        "event_id",
        "event",
        "occurred_at",
        "connection",
        "device_id",
        "removal",
    ] {
        assert!(
            card["output_schema"]["properties"].get(f).is_some(),
            "{f}: {card}"
        );
    }

    // events:manage subscribes and sees its own; cards:invoke may not; admin sees all.
    let events_key = "events-key-0123456789ab";
    let mine = app
        .send(
            Method::POST,
            "/v1/subscriptions",
            Some(
                json!({"connection": app.connection, "event": "device_enrolled", "url": rx.url()}),
            ),
            Some(events_key),
        )
        .await;
    assert_eq!(mine.status, 201, "{}", mine.body);
    // The URL (with its token) and the secret are never shown.
    assert_eq!(mine.body["callback"], format!("http://{}", rx.addr));
    assert!(!mine.body.to_string().contains("flow-token-123"));
    let id = mine.body["id"].as_str().unwrap();
    let theirs = subscribe(&app, "device_removed", &rx.url(), json!({})).await;
    let listed = app
        .send(Method::GET, "/v1/subscriptions", None, Some(events_key))
        .await;
    assert_eq!(listed.body["subscriptions"].as_array().unwrap().len(), 1);
    let r = app
        .send(
            Method::GET,
            &format!("/v1/subscriptions/{theirs}"),
            None,
            Some(events_key),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .send(
            Method::GET,
            "/v1/subscriptions",
            None,
            Some("invoke-key-0123456789ab"),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        app.get("/v1/subscriptions").await.ok()["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        app.get(&format!("/v1/subscriptions/{id}")).await.ok()["event"],
        "device_enrolled"
    );
    let r = app.delete(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        app.get(&format!("/v1/subscriptions/{id}")).await.status,
        404
    );
    let r = app
        .post(
            &format!("/v1/subscriptions/{theirs}/replay"),
            json!({"since": "yesterday"}),
        )
        .await;
    assert_eq!(r.problem(422), ["since"]);
}

#[tokio::test]
async fn receiver_failures_are_retried_with_the_same_webhook_id() {
    let app = TestApp::builder().config(quick).start().await;
    let rx = Receiver::start().await;
    let sub = subscribe(&app, "device_enrolled", &rx.url(), json!({})).await;
    rx.answer_all(Answer::Status(503, "down"));
    enroll(&app.sim, json!({})).await;
    rx.wait_for("three failed attempts", 3, Duration::from_secs(10))
        .await;
    let d = app
        .get(&format!("/v1/subscriptions/{sub}/deliveries"))
        .await
        .ok();
    assert_eq!(d["deliveries"][0]["state"], "pending", "{d}");
    assert_eq!(d["deliveries"][0]["last_status"], 503);
    rx.answer_all(Answer::Ok);
    eventually("delivered", Duration::from_secs(10), async || {
        rx.hits().last().is_some_and(|h| h.answered == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = rx.hits();
    assert!(hits.iter().all(|h| h.id == hits[0].id), "{hits:#?}");
    assert_eq!(hits.iter().filter(|h| h.answered == 200).count(), 1);
    assert!(hits.iter().all(|h| h.body == hits[0].body));
    let d = app
        .get(&format!("/v1/subscriptions/{sub}/deliveries"))
        .await
        .ok();
    assert_eq!(d["deliveries"][0]["state"], "delivered", "{d}");
    assert_eq!(d["deliveries"][0]["attempts"], hits.len());

    // A refusal (410) is not retried, and is listed with the answer.
    rx.answer_all(Answer::Status(410, "flow deleted"));
    enroll(&app.sim, json!({})).await;
    eventually("a refused delivery", Duration::from_secs(10), async || {
        app.get(&format!("/v1/subscriptions/{sub}/deliveries"))
            .await
            .ok()["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["state"] == "failed")
    })
    .await;
    let d = app
        .get(&format!("/v1/subscriptions/{sub}/deliveries"))
        .await
        .ok();
    let failed = d["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["state"] == "failed")
        .unwrap()
        .clone();
    assert_eq!(failed["attempts"], 1);
    assert_eq!(failed["last_status"], 410);
    assert_eq!(failed["last_body"], "flow deleted");
}

#[tokio::test]
async fn audit_pages_and_the_cursor_are_followed_without_loss() {
    let app = TestApp::builder()
        .config(|c| {
            c.events.interval = Duration::from_millis(300);
            c.events.delivery_tick = Duration::from_millis(20);
        })
        .start()
        .await;
    let rx = Receiver::start().await;
    subscribe(&app, "library_item_created", &rx.url(), json!({})).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // 1,203 entries between two polls: three pages of Kandji's 500.
    let ids: Vec<String> = {
        let mut t = app.sim.tenant_mut();
        (0..1203)
            .map(|i| {
                let id = uuid::Uuid::new_v4();
                t.record_audit(
                    Actor::Admin,
                    AuditChange {
                        action: "create",
                        target_type: "library_item",
                        target_id: id,
                        target_component: "",
                        new_state: json!({"name": format!("item {i}"), "type": "custom-app"}),
                        metadata: json!({}),
                    },
                );
                id.to_string()
            })
            .collect()
    };
    app.sim.clear_requests();
    rx.wait_for("1,203 events delivered", 1203, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let hits = rx.hits();
    assert_eq!(hits.len(), 1203);
    let mut got: Vec<String> = hits
        .iter()
        .map(|h| h.body["library_item_id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
    // The poll that found them read three pages, following Kandji's cursor.
    let reqs: Vec<_> = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/audit/events")
        .collect();
    let cursors: Vec<_> = reqs
        .iter()
        .filter(|r| r.query_pairs().iter().any(|(k, _)| k == "cursor"))
        .collect();
    assert_eq!(cursors.len(), 2, "{reqs:#?}");
    for r in cursors {
        let q: BTreeMap<String, String> = r.query_pairs().into_iter().collect();
        assert_eq!(q["limit"], "500");
        assert_eq!(q["sort_by"], "occurred_at");
    }
}

#[tokio::test]
async fn replay_redelivers_kept_events_with_their_webhook_ids() {
    let app = TestApp::builder().config(quick).start().await;
    let rx = Receiver::start().await;
    let sub = subscribe(
        &app,
        "device_enrolled",
        &rx.url(),
        json!({"platform": "Mac"}),
    )
    .await;
    let before = chrono::Utc::now();
    for p in ["Mac", "iPhone", "Mac"] {
        enroll(&app.sim, json!({"platform": p})).await;
    }
    rx.wait_for("two events", 2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first: Vec<String> = rx.hits().iter().map(|h| h.id.clone()).collect();
    assert_eq!(first.len(), 2);
    let r = app
        .post(
            &format!("/v1/subscriptions/{sub}/replay"),
            json!({"since": before.to_rfc3339()}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["requeued"], 2);
    rx.wait_for("replayed", 4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again: Vec<String> = rx.hits()[2..].iter().map(|h| h.id.clone()).collect();
    let (mut a, mut b) = (first.clone(), again);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let r = app
        .post(
            &format!("/v1/subscriptions/{sub}/replay"),
            json!({"since": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(r.body["requeued"], 0);
}

/// An app polling every `interval`, with `n` subscriptions on its connection.
async fn subscribed(n: usize, interval: Duration) -> (TestApp, Receiver) {
    // Polls this often are more than Kandji's 10,000 an hour: the budget would space them.
    let app = TestApp::builder()
        .config(move |c| c.events.interval = interval)
        .requests_per_hour(100_000)
        .start()
        .await;
    let rx = Receiver::start().await;
    for i in 0..n {
        let event = ["device_enrolled", "audit_event", "blueprint_updated"][i % 3];
        subscribe(&app, event, &rx.url(), json!({})).await;
    }
    eventually("a first poll", Duration::from_secs(5), async || {
        audit_requests(&app.sim) > 0
    })
    .await;
    (app, rx)
}

/// Kandji requests since the last `clear_requests`, asserting they all read the audit log.
fn kandji_calls(sim: &SimHandle) -> usize {
    // (The simulator also records its own admin routes, under /_sim/.)
    let reqs: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .collect();
    assert!(
        reqs.iter().all(|r| r.path == "/api/v1/audit/events"),
        "only the audit log is read: {reqs:#?}"
    );
    reqs.len()
}

#[tokio::test]
async fn kandji_calls_do_not_grow_with_subscriptions() {
    // Side by side over the same ten intervals (so a busy machine slows both alike).
    let interval = Duration::from_millis(300);
    let ((one, rx1), (fifty, rx50)) =
        tokio::join!(subscribed(1, interval), subscribed(50, interval));
    one.sim.clear_requests();
    fifty.sim.clear_requests();
    for app in [&one, &fifty] {
        enroll(&app.sim, json!({})).await;
    }
    tokio::time::sleep(interval * 10).await;
    let (a, b) = (kandji_calls(&one.sim), kandji_calls(&fifty.sim));
    assert!(
        a <= 11 && b <= 11,
        "at most one call an interval: 1: {a}, 50: {b}"
    );
    assert!(a >= 6 && b >= 6, "1: {a}, 50: {b}");
    assert!(a.abs_diff(b) <= 1, "1: {a}, 50: {b}");
    // The enrollment reached the one subscription to it, and 17 of the 50.
    eventually("deliveries", Duration::from_secs(10), async || {
        rx1.hit_count() >= 1 && rx50.hit_count() >= 17
    })
    .await;
}

/// Starts the real binary on `db`, polling every 150 ms.
async fn binary(db: &str, secret_key: &str) -> Binary {
    Binary::serve(&[
        ("KANDJI_CONNECTOR_API_KEYS", API_KEY.to_string()),
        ("KANDJI_CONNECTOR_SECRET_KEY", secret_key.to_string()),
        ("KANDJI_CONNECTOR_DATABASE_URL", db.to_string()),
        (
            "KANDJI_CONNECTOR_CALLBACK_ALLOW",
            "127.0.0.1/32".to_string(),
        ),
        ("KANDJI_CONNECTOR_EVENTS_INTERVAL_MS", "150".to_string()),
    ])
    .await
}

#[tokio::test]
async fn a_sigkilled_process_neither_loses_nor_repeats_events() {
    let sim = start_sim(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let key = "q8dXzK0m3nQ1r2s3t4u5v6w7x8y9z0A1B2C3D4E5F6s=";
    let rx = Receiver::start().await;
    let mut server = binary(&db, key).await;
    let mut api = server.api.clone();
    api.connection = api.connect(&sim).await;
    subscribe(&api, "device_enrolled", &rx.url(), json!({})).await;
    let enroll_ipads = async |n: usize| {
        for _ in 0..n {
            enroll(&sim, json!({"platform": "iPad"})).await;
        }
    };
    enroll_ipads(3).await;
    rx.wait_for("three events", 3, Duration::from_secs(10))
        .await;
    // Killed between polls, with everything delivered; changes happen while it is down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill().await;
    enroll_ipads(4).await;
    let mut server = binary(&db, key).await;
    rx.wait_for("seven events", 7, Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let hits = rx.hits();
    let mut devices: Vec<&str> = hits
        .iter()
        .map(|h| h.body["device_id"].as_str().unwrap())
        .collect();
    devices.sort();
    devices.dedup();
    assert_eq!(hits.len(), 7, "{hits:#?}");
    assert_eq!(devices.len(), 7);
    server.terminate().await;
}

both!(inventory_changes_fire_the_inventory_event_cards);
async fn inventory_changes_fire_the_inventory_event_cards(db: TestDb) {
    let app = TestApp::builder()
        .devices(20)
        .db(&db)
        .requests_per_hour(1_000_000)
        .config(|c| {
            quick(c);
            c.trust.interval = Duration::from_millis(300);
        })
        .start()
        .await;
    let rx = Receiver::start().await;
    // Inventory events need the connection's inventory sync.
    let r = app
        .post(
            "/v1/subscriptions",
            json!({"connection": app.connection, "event": "device_missing", "url": rx.url()}),
        )
        .await;
    assert_eq!(r.problem(422), ["event"]);
    let r = app
        .patch(
            &format!("/v1/connections/{}", app.connection),
            json!({"inventory_sync": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("a full sync", Duration::from_secs(10), async || {
        app.get(&format!("/v1/connections/{}", app.connection))
            .await
            .ok()["inventory"]["last_sync"]
            .is_object()
    })
    .await;
    for e in [
        "device_missing",
        "device_found_again",
        "device_os_updated",
        "device_user_changed",
    ] {
        subscribe(&app, e, &rx.url(), json!({})).await;
    }
    subscribe(
        &app,
        "device_check_in_overdue",
        &rx.url(),
        json!({"days": 30, "platform": "Mac"}),
    )
    .await;
    let (mac, iphone) = {
        let t = app.sim.tenant();
        (
            t.first_device_of("Mac").unwrap().clone(),
            t.first_device_of("iPhone").unwrap().clone(),
        )
    };
    let overdue_before = {
        let t = app.sim.tenant();
        t.devices
            .iter()
            .filter(|d| d.platform == Platform::Mac)
            .filter(|d| {
                d.last_check_in
                    .is_some_and(|c| chrono::Utc::now() - c > chrono::Duration::days(30))
            })
            .count()
    };
    let mac_id = mac.device_id.to_string();
    let iphone_id = iphone.device_id.to_string();
    let old_email = user_email(&app, &iphone).unwrap();
    let new = other_user(&app.sim, &iphone);
    let (new_user, new_email) = (new.id, new.email.to_string());
    change_device(&app.sim, &mac_id, "missing", json!({"missing": true})).await;
    change_device(
        &app.sim,
        &iphone_id,
        "check-in",
        json!({"os_version": "99.1"}),
    )
    .await;
    sim_call(
        &app.sim,
        Method::PATCH,
        &format!("/api/v1/devices/{iphone_id}"),
        json!({"user": new_user}),
    )
    .await;
    eventually(
        "missing, updated, reassigned",
        Duration::from_secs(10),
        async || {
            let by = by_event(&rx.hits());
            by.contains_key("device_missing")
                && by.contains_key("device_os_updated")
                && by.contains_key("device_user_changed")
        },
    )
    .await;
    change_device(&app.sim, &mac_id, "missing", json!({"missing": false})).await;
    eventually("found again", Duration::from_secs(10), async || {
        by_event(&rx.hits()).contains_key("device_found_again")
    })
    .await;
    // A few more syncs: nothing is emitted twice.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let by = by_event(&rx.hits());
    assert_eq!(by["device_missing"].len(), 1);
    assert_eq!(by["device_found_again"].len(), 1);
    assert_eq!(by["device_os_updated"].len(), 1);
    let p = &by["device_missing"][0].body;
    assert_eq!(p["device_id"], mac_id.as_str());
    assert_eq!(p["serial_number"], mac.serial_number.to_ascii_uppercase());
    assert_eq!(p["platform"], "Mac");
    assert_eq!(
        by["device_found_again"][0].body["device_id"],
        mac_id.as_str()
    );
    let p = &by["device_os_updated"][0].body;
    assert_eq!(p["device_id"], iphone_id.as_str());
    assert_eq!(p["os_version"], "99.1");
    assert_eq!(p["previous_os_version"], iphone.os_version);
    assert_eq!(by["device_user_changed"].len(), 1);
    let p = &by["device_user_changed"][0].body;
    assert_eq!(p["device_id"], iphone_id.as_str());
    assert_eq!(p["user_email"], new_email.as_str());
    assert_eq!(p["previous_user_email"], old_email.as_str());
    // Check-in overdue: once per overdue Mac (the simulated fleet has some).
    let overdue = by.get("device_check_in_overdue").map_or(0, Vec::len);
    assert_eq!(overdue, overdue_before);
    for h in by.get("device_check_in_overdue").into_iter().flatten() {
        assert_eq!(h.body["platform"], "Mac");
        assert!(h.body["days_since_check_in"].as_i64().unwrap() >= 30);
    }
}

both!(the_event_store_records_once_claims_once_requeues_and_expires);
async fn the_event_store_records_once_claims_once_requeues_and_expires(db: TestDb) {
    use kandji_connector::store::{
        DeliveryOutcome, NewConnection, NewEvent, NewSubscription, TokenCipher,
    };
    use secrecy::{ExposeSecret, SecretString};
    let (cipher, _) = TokenCipher::generate();
    let store = db.open(&cipher).await.unwrap();
    let conn = store
        .create_connection(NewConnection {
            name: "acme".into(),
            api_url: "https://acme.api.kandji.io".into(),
            api_token: SecretString::from("t".repeat(36)),
            requests_per_hour: None,
        })
        .await
        .unwrap()
        .id;
    let helper = r#"{"url":"https://flows.example.com/hook?token=flow-token-123"}"#;
    // A subscription of key k1 to `event` on the connection, with that helper flow.
    let subscribe_to = async |event: &str| {
        let new = NewSubscription {
            owner: "k1".into(),
            connection_id: conn.clone(),
            event: event.into(),
            filters: json!({}),
            helper: SecretString::from(helper),
            callback_origin: "https://flows.example.com".into(),
        };
        store.create_subscription(new).await.unwrap()
    };
    let sub = subscribe_to("device_enrolled").await;
    let start = store.event_position(&conn).await.unwrap().unwrap();
    assert_eq!(
        start, sub.created_at,
        "the first subscription starts the position"
    );
    // The helper is encrypted at rest.
    assert!(!db.stored_text().await.contains("flow-token-123"));

    let event = |n: u32| NewEvent {
        id: format!("evt_{n:032}"),
        event: "device_enrolled".into(),
        source_id: format!("audit-{n}"),
        occurred_at: start + chrono::Duration::seconds(i64::from(n)),
        payload: json!({"n": n}),
        subscriptions: vec![sub.id.clone()],
    };
    let later = start + chrono::Duration::seconds(2);
    assert_eq!(
        store
            .ingest_events(&conn, Some(later), &[event(1), event(2)])
            .await
            .unwrap(),
        2
    );
    // Read again (a restart re-reads the boundary): nothing new.
    assert_eq!(
        store
            .ingest_events(&conn, Some(later), &[event(2)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.event_position(&conn).await.unwrap(), Some(later));

    // Two replicas claiming at once get each delivery once.
    let until = chrono::Utc::now() + chrono::Duration::seconds(30);
    let (a, b) = tokio::join!(
        store.claim_deliveries("rep_a", until, 10),
        store.claim_deliveries("rep_b", until, 10)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 2, "each delivery claimed once");
    let all: Vec<_> = a.iter().chain(&b).collect();
    assert!(all.iter().all(|d| d.helper.expose_secret() == helper));
    assert!(all.iter().all(|d| d.attempts == 0));
    // Claimed: not claimable again while the lease lasts.
    assert!(
        store
            .claim_deliveries("rep_c", until, 10)
            .await
            .unwrap()
            .is_empty()
    );
    for (owner, list) in [("rep_a", &a), ("rep_b", &b)] {
        for d in list.iter() {
            // Another replica cannot record an outcome for it.
            store
                .finish_delivery(&d.id, "rep_c", &DeliveryOutcome::Delivered)
                .await
                .unwrap();
            store
                .finish_delivery(
                    &d.id,
                    owner,
                    &DeliveryOutcome::Retry {
                        at: chrono::Utc::now(),
                        status: Some(503),
                        error: "down".into(),
                        body: None,
                    },
                )
                .await
                .unwrap();
        }
    }
    let again = store.claim_deliveries("rep_a", until, 10).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|d| d.attempts == 1));
    for d in &again {
        store
            .finish_delivery(&d.id, "rep_a", &DeliveryOutcome::Delivered)
            .await
            .unwrap();
    }
    let list = store.subscription_deliveries(&sub.id, 10).await.unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|d| d.state == "delivered" && d.attempts == 2)
    );
    assert!(list.iter().all(|d| d.last_status.is_none()));

    // Replay: the kept events since a time, queued again under the same ids.
    let kept = store
        .events_since(
            &conn,
            "device_enrolled",
            start + chrono::Duration::seconds(2),
            10,
        )
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    let ids: Vec<String> = kept.iter().map(|e| e.id.clone()).collect();
    assert_eq!(store.requeue_deliveries(&sub.id, &ids).await.unwrap(), 1);
    let replayed = store.claim_deliveries("rep_a", until, 10).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        replayed[0].id,
        kandji_connector::store::delivery_id(&ids[0], &sub.id)
    );

    // Retention: events recorded before a time go, with their deliveries.
    let future = chrono::Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(store.delete_old_events(future, 1).await.unwrap(), 1);
    assert_eq!(store.delete_old_events(future, 10).await.unwrap(), 1);
    assert!(
        store
            .subscription_deliveries(&sub.id, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // With no subscription left, the next first subscription starts the position anew.
    assert!(store.delete_subscription(&sub.id).await.unwrap());
    assert!(store.event_connections().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let next = subscribe_to("device_removed").await;
    assert_eq!(
        store.event_position(&conn).await.unwrap(),
        Some(next.created_at)
    );
    assert_eq!(store.event_connections().await.unwrap(), vec![conn.clone()]);

    // Key rotation re-encrypts subscriptions' callbacks: they still open under the new key.
    let (new_key, _) = TokenCipher::generate();
    store.rotate_secret_key(&new_key).await.unwrap();
    store.close().await;
    drop(store);
    let store = db.open(&new_key).await.unwrap();
    let mut e = event(9);
    e.event = "device_removed".into();
    e.subscriptions = vec![next.id.clone()];
    store.ingest_events(&conn, None, &[e]).await.unwrap();
    let due = store.claim_deliveries("rep_a", until, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].helper.expose_secret(), helper);
}

#[tokio::test]
async fn a_failed_poll_loses_nothing() {
    let app = TestApp::builder().config(quick).start().await;
    let rx = Receiver::start().await;
    subscribe(&app, "device_enrolled", &rx.url(), json!({})).await;
    // Kandji fails the next polls (500 is not retried within a poll): the position stays.
    app.sim.push_faults(
        Some("/audit/events"),
        vec![
            kandji_connector::simulator::Fault::status(500),
            kandji_connector::simulator::Fault::status(500),
            kandji_connector::simulator::Fault::status(500),
        ],
    );
    enroll(&app.sim, json!({})).await;
    rx.wait_for("delivered after the failures", 1, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.hit_count(), 1);
    let failed = app
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/audit/events")
        .count();
    assert!(
        failed >= 4,
        "three failed polls, then one that found it: {failed}"
    );
}
