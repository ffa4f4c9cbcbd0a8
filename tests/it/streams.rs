//! Streaming result sets end to end: the real server, the simulated tenant and a real callback
//! receiver, all on 127.0.0.1. The SIGKILL test runs the real binary.
//!
//! The delivery tests run on both stores (`both!`: `name::sqlite` and `name::needs_postgres`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::card_fixtures;
use crate::harness::kandji::{read_sim, take};
use crate::harness::{
    API_KEY, Answer, Api, Binary, Hit, Receiver, SECRET, TestApp, TestDb, assert_signed, both,
    devices, eventually, helper_flow, start_sim,
};
use kandji_connector::simulator::SimConfig;
use kandji_connector::streams::CallbackPolicy;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Starts `card` as a stream of `result_set` to the receiver's signed helper flow; returns the
/// stream's id.
async fn stream_to(
    server: &Api,
    receiver: &Receiver,
    card: &str,
    inputs: Value,
    result_set: &str,
) -> String {
    let options = json!({"result_set": result_set, "helper_flow": helper_flow(&receiver.url())});
    server.start_stream(card, inputs, options).await
}

/// Streams every device (`list_devices`, `stream_matching_records`) to the receiver's signed
/// helper flow; returns the stream's id.
async fn stream_devices_to(server: &Api, receiver: &Receiver) -> String {
    stream_to(
        server,
        receiver,
        "list_devices",
        json!({}),
        "stream_matching_records",
    )
    .await
}

/// Record ids in Kandji's order, read straight from the simulated tenant's API by following
/// its paging (offset for devices, `next` links elsewhere).
async fn kandji_ids(server: &TestApp, path: &str, id_field: &str) -> Vec<String> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut ids = Vec::new();
    // Devices in the stable order streams ask for.
    let mut query = if path == "/devices" {
        "ordering=device_id&limit=300&offset=0".to_string()
    } else {
        String::new()
    };
    loop {
        let (_, body) = read_sim(&http, &server.sim, &format!("{path}?{query}")).await;
        let records = body
            .get("results")
            .unwrap_or(&body)
            .as_array()
            .expect("records")
            .clone();
        ids.extend(
            records
                .iter()
                .map(|r| r[id_field].as_str().expect("id").to_string()),
        );
        if path == "/devices" {
            if records.len() < 300 {
                break;
            }
            query = format!("ordering=device_id&limit=300&offset={}", ids.len());
            continue;
        }
        match body.get("next").and_then(Value::as_str) {
            Some(next) => query = next.split_once('?').unwrap().1.to_string(),
            None => break,
        }
    }
    server.sim.clear_requests();
    ids
}

fn kandji_queries(server: &TestApp, path_suffix: &str) -> Vec<String> {
    server
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(path_suffix))
        .map(|r| r.query.clone().unwrap_or_default())
        .collect()
}

/// A test app on `db`'s store.
async fn start_on<'a>(
    db: &TestDb,
    sim: SimConfig,
    tweak: impl FnOnce(&mut kandji_connector::config::Config) + Send + 'a,
) -> TestApp {
    TestApp::builder()
        .sim(sim)
        .db(db)
        .config(tweak)
        .start()
        .await
}

async fn server_with(db: &TestDb, devices: usize) -> TestApp {
    TestApp::builder().devices(devices).db(db).start().await
}

// ---------------------------------------------------------------------------------------------
// Tests

both!(all_four_list_cards_stream_every_record_once_signed);
/// All four list cards stream every record exactly once, in Kandji's order, signed, with the
/// helper state; the devices stream pages through Kandji with its largest page.
async fn all_four_list_cards_stream_every_record_once_signed(db: TestDb) {
    let server = server_with(&db, 1000).await;
    let receiver = Receiver::start().await;
    let ade_token = server.sim.tenant().ade_integrations[0].id.to_string();
    let cases = [
        (
            "list_devices",
            json!({}),
            "stream_matching_records",
            "/devices".to_string(),
            "device_id",
        ),
        (
            "list_blueprints",
            json!({}),
            "stream_all_records",
            "/blueprints".to_string(),
            "id",
        ),
        (
            "list_ade_integrations",
            json!({}),
            "stream_all_records",
            "/integrations/apple/ade".to_string(),
            "id",
        ),
        (
            "list_ade_devices",
            json!({"ade_token_id": ade_token}),
            "stream_all_records",
            format!("/integrations/apple/ade/{ade_token}/devices"),
            "id",
        ),
    ];
    for (card, inputs, result_set, path, id_field) in cases {
        let expected = kandji_ids(&server, &path, id_field).await;
        assert!(!expected.is_empty(), "{card}: the tenant has records");
        let before = receiver.hit_count();
        let id = stream_to(&server, &receiver, card, inputs, result_set).await;
        let status = server.finished(&id, Duration::from_secs(20)).await;
        assert_eq!(status["state"], "succeeded", "{card}: {status}");
        assert_eq!(status["record_count"], expected.len(), "{card}: {status}");
        assert_eq!(status["failed_deliveries"], 0);
        assert_eq!(status["error"], Value::Null);
        assert!(status["finished_at"].is_string() && status["started_at"].is_string());
        assert_eq!(status["card"], card);
        assert_eq!(status["callback"], format!("http://{}", receiver.addr));

        let hits: Vec<Hit> = receiver.hits().split_off(before);
        assert_eq!(
            hits.len(),
            expected.len(),
            "{card}: one callback per record"
        );
        let mut by_index = BTreeMap::new();
        for h in &hits {
            assert_eq!(h.answered, 200);
            assert_signed(h);
            assert_eq!(h.body["stream_id"], id.as_str());
            assert_eq!(h.body["state"], json!({"flow": "offboarding", "run": 7}));
            assert_eq!(
                h.id,
                format!("msg_{}_{}", id.trim_start_matches("str_"), h.index())
            );
            assert!(
                by_index
                    .insert(
                        h.index(),
                        h.body["record"][id_field].as_str().unwrap().to_string()
                    )
                    .is_none(),
                "{card}: index {} twice",
                h.index()
            );
        }
        let delivered: Vec<String> = by_index.into_values().collect();
        assert_eq!(
            delivered, expected,
            "{card}: every record, in Kandji's order"
        );
        if card == "list_devices" {
            // Kandji's largest page, and no request after the short one
            let devices = kandji_queries(&server, "/api/v1/devices");
            assert_eq!(
                devices,
                vec![
                    "ordering=device_id&limit=300&offset=0",
                    "ordering=device_id&limit=300&offset=300",
                    "ordering=device_id&limit=300&offset=600",
                    "ordering=device_id&limit=300&offset=900"
                ]
            );
            assert_eq!(status["pages_fetched"], 4);
        }
        if card == "list_ade_devices" {
            // two pages: the second found through Kandji's `next` link, which names another
            // host (the simulator's links point at accuhive.kandji.io), rebuilt on the tenant's
            let pages = kandji_queries(&server, "/devices");
            assert_eq!(pages.len(), 2, "{pages:?}");
            assert!(pages[1].contains("page=2"), "{pages:?}");
            assert_eq!(status["pages_fetched"], 2);
        }
    }
    let listed = server.get("/v1/streams").await;
    assert_eq!(
        listed.body["streams"].as_array().unwrap().len(),
        4,
        "{}",
        listed.body
    );
    assert_eq!(
        listed.body["streams"][0]["card"], "list_ade_devices",
        "newest first"
    );
}

both!(newer_list_cards_stream_every_record);
/// The newer list cards stream too: every record their "First 300" result set returns, in the
/// same order and normalised the same way (users across several cursor pages).
async fn newer_list_cards_stream_every_record(db: TestDb) {
    let server = start_on(
        &db,
        SimConfig {
            devices: 200,
            users_page_size: 40,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let receiver = Receiver::start().await;
    let (mac, bp, item) = {
        let t = server.sim.tenant();
        (
            t.first_device_of("Mac").unwrap().device_id.to_string(),
            t.blueprints[0].id.to_string(),
            t.library_items[0].id.to_string(),
        )
    };
    let cases = [
        (
            "list_users",
            json!({}),
            "first_300_records",
            "stream_all_matching_records",
        ),
        (
            "list_tags",
            json!({}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_custom_apps",
            json!({}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_device_activity",
            json!({"device_id": mac}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_library_items",
            json!({"blueprint_id": bp}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_library_item_activity",
            json!({"library_item_id": item}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_library_item_statuses",
            json!({"library_item_id": item}),
            "first_300_records",
            "stream_all_records",
        ),
    ];
    for (card, inputs, first, stream) in cases {
        let outputs = server
            .outputs(card, inputs.clone(), json!({"result_set": first}))
            .await;
        let lists: Vec<&Value> = outputs
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v.is_array())
            .collect();
        assert_eq!(lists.len(), 1, "{card}: {outputs}");
        let expected = lists[0].as_array().unwrap().clone();
        assert!(
            !expected.is_empty() && expected.len() < 300,
            "{card}: {} records",
            expected.len()
        );
        server.sim.clear_requests();
        let before = receiver.hit_count();
        let id = stream_to(&server, &receiver, card, inputs, stream).await;
        let status = server.finished(&id, Duration::from_secs(10)).await;
        assert_eq!(status["state"], "succeeded", "{card}: {status}");
        assert_eq!(status["record_count"], expected.len(), "{card}: {status}");
        let hits: Vec<Hit> = receiver.hits().split_off(before);
        assert_eq!(
            hits.len(),
            expected.len(),
            "{card}: one callback per record"
        );
        let mut by_index = BTreeMap::new();
        for h in &hits {
            assert_signed(h);
            assert!(
                by_index
                    .insert(h.index(), h.body["record"].clone())
                    .is_none(),
                "{card}: index {} twice",
                h.index()
            );
        }
        assert_eq!(
            by_index.into_values().collect::<Vec<_>>(),
            expected,
            "{card}: the same records in the same order"
        );
        if card == "list_users" {
            assert!(expected.len() > 40, "users span several pages");
            assert_eq!(
                status["pages_fetched"].as_u64(),
                Some(server.sim.requests().len() as u64)
            );
            assert!(server.sim.requests().len() > 1, "the cursor was followed");
        }
    }
}

both!(records_are_normalised_like_first_result_sets);
/// Records are normalised as the "First" result sets normalise them.
async fn records_are_normalised_like_first_result_sets(db: TestDb) {
    let server = server_with(&db, 20).await;
    let receiver = Receiver::start().await;
    let first = server
        .outputs(
            "list_devices",
            json!({}),
            json!({"result_set": "first_200_matching_records"}),
        )
        .await;
    let id = server.stream_devices(&receiver.url()).await;
    assert_eq!(
        server.finished(&id, Duration::from_secs(10)).await["state"],
        "succeeded"
    );
    let by_index = receiver.by_index();
    for (i, record) in first["devices"].as_array().unwrap().iter().enumerate() {
        let hit = &by_index[&(i as u64)][0];
        assert_eq!(&hit.body["record"], record, "record {i}");
        assert_eq!(hit.body["state"], Value::Null);
        assert_eq!(hit.signature, None, "no secret, no signature");
    }
}

both!(failed_attempts_are_retried_with_the_same_webhook_id);
/// 500s, 429s (with Retry-After) and timeouts are retried until delivered, with the same
/// webhook-id on every attempt.
async fn failed_attempts_are_retried_with_the_same_webhook_id(db: TestDb) {
    let server = server_with(&db, 30).await;
    let receiver = Receiver::start().await;
    receiver.script(
        3,
        vec![Answer::Status(500, "boom"), Answer::Status(503, "busy")],
    );
    receiver.script(5, vec![Answer::RetryAfter(1)]);
    receiver.script(8, vec![Answer::Slow(Duration::from_millis(2500))]); // past the 2 s callback timeout
    receiver.script(
        13,
        vec![
            Answer::Status(408, "timeout"),
            Answer::Status(502, "bad gateway"),
        ],
    );
    let id = stream_devices_to(&server, &receiver).await;
    let status = server.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], 30);
    assert_eq!(status["failed_deliveries"], 0);

    let by_index = receiver.by_index();
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..30).collect::<Vec<u64>>()
    );
    for (i, hits) in &by_index {
        let want = match i {
            3 | 13 => 3,
            5 | 8 => 2,
            _ => 1,
        };
        assert_eq!(hits.len(), want, "attempts of record {i}");
        assert_eq!(
            hits.last().unwrap().answered,
            200,
            "record {i} ends delivered"
        );
        for h in hits {
            assert_eq!(
                h.id, hits[0].id,
                "record {i}: the same webhook-id on every attempt"
            );
            assert_eq!(
                h.raw, hits[0].raw,
                "record {i}: the same body on every attempt"
            );
            assert_signed(h);
        }
    }
    assert_eq!(
        by_index[&3].iter().map(|h| h.answered).collect::<Vec<_>>(),
        vec![500, 503, 200]
    );
    let waited = by_index[&5][1].at - by_index[&5][0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    let failures = server.get(&format!("/v1/streams/{id}/failures")).await;
    assert_eq!(failures.body["failures"], json!([]));
}

both!(refused_records_are_counted_and_listed);
/// 410 and other 4xx are permanent: counted, listed with the callback's answer, not retried;
/// a redirect is a failure too and is not followed.
async fn refused_records_are_counted_and_listed(db: TestDb) {
    let server = server_with(&db, 12).await;
    let receiver = Receiver::start().await;
    receiver.script(2, vec![Answer::Status(410, "this helper flow was deleted")]);
    receiver.script(6, vec![Answer::Redirect]);
    receiver.script(9, vec![Answer::Status(400, "bad record")]);
    let id = stream_devices_to(&server, &receiver).await;
    let status = server.finished(&id, Duration::from_secs(10)).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], 9);
    assert_eq!(status["failed_deliveries"], 3);
    let by_index = receiver.by_index();
    for i in [2, 6, 9] {
        assert_eq!(by_index[&i].len(), 1, "record {i} is not retried");
    }
    assert_eq!(receiver.redirected(), 0, "redirects are not followed");

    let r = server.get(&format!("/v1/streams/{id}/failures")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let failures = r.body["failures"].as_array().unwrap();
    let summary: Vec<(u64, u64)> = failures
        .iter()
        .map(|f| (f["index"].as_u64().unwrap(), f["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(summary, vec![(2, 410), (6, 302), (9, 400)]);
    assert_eq!(failures[0]["body"], "this helper flow was deleted");
    assert_eq!(failures[0]["attempts"], 1);
    assert_eq!(failures[0]["webhook_id"], by_index[&2][0].id);
    assert!(
        failures[0]["error"].as_str().unwrap().contains("410"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1]["error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed")
    );
    // paging through the failures
    let r = server
        .get(&format!("/v1/streams/{id}/failures?limit=2"))
        .await;
    assert_eq!(r.body["failures"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["next_after"], 6);
    let r = server
        .get(&format!("/v1/streams/{id}/failures?after=6"))
        .await;
    assert_eq!(r.body["failures"][0]["index"], 9);
    assert_eq!(r.body["next_after"], Value::Null);
}

both!(record_limit_is_exact);
/// `record_limit` is exact: N records and no more are fetched and delivered; 0 streams none;
/// a negative limit is refused.
async fn record_limit_is_exact(db: TestDb) {
    let server = server_with(&db, 400).await;
    let receiver = Receiver::start().await;
    let opts = |limit: Value| json!({"result_set": "stream_matching_records", "helper_flow": {"url": receiver.url()}, "record_limit": limit});
    // A stream of that many records, to its end.
    let run = async |limit: Value| {
        let id = server
            .start_stream("list_devices", json!({}), opts(limit))
            .await;
        server.finished(&id, Duration::from_secs(10)).await
    };

    let status = run(json!(5)).await;
    assert_eq!(
        (
            status["state"].as_str(),
            status["record_count"].as_u64(),
            status["record_limit"].as_u64()
        ),
        (Some("succeeded"), Some(5), Some(5))
    );
    assert_eq!(
        receiver.by_index().keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(receiver.hit_count(), 5);
    assert_eq!(
        kandji_queries(&server, "/api/v1/devices"),
        vec!["ordering=device_id&limit=5&offset=0"]
    );
    server.sim.clear_requests();

    let before = receiver.hit_count();
    let status = run(json!(301)).await;
    assert_eq!(status["record_count"], 301);
    assert_eq!(receiver.hit_count() - before, 301);
    assert_eq!(
        kandji_queries(&server, "/api/v1/devices"),
        vec![
            "ordering=device_id&limit=300&offset=0",
            "ordering=device_id&limit=1&offset=300"
        ]
    );
    server.sim.clear_requests();

    let before = receiver.hit_count();
    let status = run(json!(0)).await;
    assert_eq!(
        (
            status["state"].as_str(),
            status["record_count"].as_u64(),
            status["pages_fetched"].as_u64()
        ),
        (Some("succeeded"), Some(0), Some(0))
    );
    assert_eq!(receiver.hit_count(), before);
    assert!(
        server.sim.requests().is_empty(),
        "0 records: Kandji is not asked"
    );

    for bad in [json!(-1), json!(2.5), json!("10")] {
        let r = server
            .invoke("list_devices", json!({}), opts(bad.clone()))
            .await;
        assert_eq!(r.problem(422), vec!["options.record_limit"], "{bad}");
    }
    // the connector's stream options belong to stream result sets only
    let r = server.invoke("list_devices", json!({}), json!({"result_set": "first_matching_record", "record_limit": 3, "helper_flow": {"url": receiver.url()}})).await;
    assert_eq!(
        r.problem(422),
        vec!["options.helper_flow", "options.record_limit"]
    );
    let r = server
        .invoke(
            "list_devices",
            json!({}),
            json!({"result_set": "stream_matching_records"}),
        )
        .await;
    assert_eq!(r.problem(422), vec!["options.helper_flow"]);
}

both!(cancel_stops_deliveries);
/// After `DELETE /v1/streams/{id}` answers, no callback starts; the stream is `cancelled` and
/// counts exactly what the receiver accepted.
async fn cancel_stops_deliveries(db: TestDb) {
    let server = server_with(&db, 600).await;
    let receiver = Receiver::start().await;
    receiver.answer_all(Answer::Slow(Duration::from_millis(100)));
    let id = stream_devices_to(&server, &receiver).await;
    receiver
        .wait_for("a few deliveries", 20, Duration::from_secs(10))
        .await;
    let r = server.delete(&format!("/v1/streams/{id}")).await;
    let acked = Instant::now();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "cancelled");
    let at_ack = receiver.hit_count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hits = receiver.hits();
    assert_eq!(
        hits.len(),
        at_ack,
        "no callback after the cancel was acknowledged"
    );
    assert!(hits.iter().all(|h| h.at <= acked));
    let status = server.get(&format!("/v1/streams/{id}")).await.body;
    assert_eq!(status["state"], "cancelled");
    assert!(status["finished_at"].is_string());
    assert_eq!(
        status["record_count"],
        hits.len(),
        "every answered callback is counted: {status}"
    );
    assert!(hits.len() < 600);

    // cancelling again is harmless; a finished stream cannot be cancelled
    let again = server.delete(&format!("/v1/streams/{id}")).await;
    assert_eq!(again.status, 200);
    receiver.answer_all(Answer::Ok);
    let done = server.start_stream("list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": {"url": receiver.url()}, "record_limit": 2})).await;
    server.finished(&done, Duration::from_secs(10)).await;
    let r = server.delete(&format!("/v1/streams/{done}")).await;
    r.problem(409);
    let r = server.delete("/v1/streams/str_nope").await;
    r.problem(404);
}

both!(running_streams_are_capped);
/// A connector runs at most `max_running` streams; more are refused with 429 until one ends.
async fn running_streams_are_capped(db: TestDb) {
    let server = start_on(
        &db,
        SimConfig {
            devices: 300,
            ..SimConfig::default()
        },
        |c| c.streams.max_running = 1,
    )
    .await;
    let receiver = Receiver::start().await;
    receiver.answer_all(Answer::Slow(Duration::from_millis(50)));
    let opts =
        json!({"result_set": "stream_matching_records", "helper_flow": {"url": receiver.url()}});
    let first = server
        .start_stream("list_devices", json!({}), opts.clone())
        .await;
    let r = server.invoke("list_devices", json!({}), opts.clone()).await;
    r.problem(429);
    assert!(r.headers.get("retry-after").is_some());
    let r = server.delete(&format!("/v1/streams/{first}")).await;
    assert_eq!(r.body["state"], "cancelled");
    server.start_stream("list_devices", json!({}), opts).await;
}

/// Every stream result set of every card in the catalog needs a helper flow: without one it
/// answers 422 naming `options.helper_flow` and sends nothing (each card with its fixture's
/// inputs, tests/fixtures/cards).
#[tokio::test]
async fn stream_result_sets_without_a_helper_flow_answer_422_and_send_nothing() {
    let s = TestApp::start().await;
    let mut streams = Vec::new();
    for card in card_fixtures::catalog(&s).await {
        let view = s.get(&format!("/v1/cards/{card}")).await.ok();
        for rs in view["result_sets"].as_array().unwrap() {
            let rs = rs["id"].as_str().unwrap();
            if !rs.starts_with("stream_") {
                continue;
            }
            let inputs = card_fixtures::fixture(&s, &card).inputs;
            let r = s.invoke(&card, inputs, json!({"result_set": rs})).await;
            assert_eq!(
                r.problem(422),
                vec!["options.helper_flow"],
                "{card}: {}",
                r.body
            );
            streams.push(format!("{card}.{rs}"));
        }
    }
    assert!(!streams.is_empty(), "the catalog has stream result sets");
    take(&s, 0);
}

/// Every forbidden callback URL gets a 422 naming options.helper_flow.url, and nothing is sent:
/// not to the target (which would answer: it listens on 127.0.0.1) and not to Kandji.
#[tokio::test]
async fn forbidden_callback_urls_are_refused_before_anything_is_sent() {
    let server = TestApp::with_config(|c| c.streams.allow = CallbackPolicy::default()).await;
    let receiver = Receiver::start().await;
    let port = receiver.addr.port();
    let urls = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("https://127.0.0.1:{port}/hook"),
        format!("https://localhost:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("https://2130706433:{port}/hook"), // decimal
        format!("https://0x7f000001:{port}/hook"), // hex
        format!("https://0177.0.0.1:{port}/hook"), // octal
        format!("https://0x7f.0.0.1:{port}/hook"), // mixed
        format!("https://127.1:{port}/hook"),      // short form
        format!("https://[::1]:{port}/hook"),
        format!("https://[::ffff:127.0.0.1]:{port}/hook"), // IPv4-mapped IPv6
        format!("https://[::ffff:7f00:1]:{port}/hook"),
        format!("https://0.0.0.0:{port}/hook"),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://2852039166/latest/meta-data".to_string(), // 169.254.169.254, decimal
        "https://10.0.0.1/hook".to_string(),
        "https://172.16.5.4/hook".to_string(),
        "https://192.168.1.1/hook".to_string(),
        "https://100.64.0.1/hook".to_string(),
        "https://192.0.2.1/hook".to_string(),
        "https://198.18.0.1/hook".to_string(),
        "https://224.0.0.1/hook".to_string(),
        "https://[fe80::1]/hook".to_string(),
        "https://[fd00::1]/hook".to_string(),
        "https://[2001:db8::1]/hook".to_string(),
        "http://8.8.8.8/hook".to_string(), // public, but not https
        "ftp://8.8.8.8/hook".to_string(),
        "https://user:pass@8.8.8.8/hook".to_string(),
        "not a url".to_string(),
    ];
    for url in &urls {
        let r = server.invoke("list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": {"url": url, "secret": SECRET}})).await;
        assert_eq!(
            r.problem(422),
            vec!["options.helper_flow.url"],
            "{url}: {}",
            r.body
        );
        assert!(!r.body.to_string().contains(SECRET));
    }
    // a listed CIDR allows exactly that address, and never the mapped IPv6 form
    let listed = TestApp::start().await;
    for url in [
        format!("http://127.0.0.2:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://localhost:{port}/hook"),
    ] {
        let r = listed
            .invoke(
                "list_devices",
                json!({}),
                json!({"result_set": "stream_matching_records", "helper_flow": {"url": url}}),
            )
            .await;
        assert_eq!(r.problem(422), vec!["options.helper_flow.url"], "{url}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        receiver.connections(),
        0,
        "no connection reached the target"
    );
    assert!(
        server.sim.requests().is_empty() && listed.sim.requests().is_empty(),
        "nothing was sent to Kandji"
    );
    assert_eq!(server.get("/v1/streams").await.body["streams"], json!([]));

    // bad secrets and extra fields are named too, and the secret is never echoed
    let r = server
        .invoke("list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": {"url": "https://8.8.8.8/", "secret": "whsec_not*base64", "extra": 1}}))
        .await;
    assert_eq!(
        r.problem(422),
        vec!["options.helper_flow.extra", "options.helper_flow.secret"]
    );
    assert!(!r.body.to_string().contains("not*base64"));
}

both!(helper_flow_stays_secret);
/// The helper flow's URL (which may carry a token) and secret are neither returned nor stored
/// in the clear; another API key cannot see the stream.
async fn helper_flow_stays_secret(db: TestDb) {
    let server = TestApp::builder()
        .devices(5)
        .db(&db)
        .key("other-key-0123456789abcdef cards:invoke")
        .start()
        .await;
    let receiver = Receiver::start().await;
    let id = stream_devices_to(&server, &receiver).await;
    let status = server.finished(&id, Duration::from_secs(10)).await;
    assert_eq!(status["state"], "succeeded");
    let everything = format!("{status}{}", server.get("/v1/streams").await.body);
    for secret in [
        SECRET,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "flow-token-123",
        "offboarding",
    ] {
        assert!(!everything.contains(secret), "{secret} returned");
    }
    const OTHER: &str = "other-key-0123456789abcdef";
    let stream = format!("/v1/streams/{id}");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        server
            .send(method, &stream, None, Some(OTHER))
            .await
            .problem(404);
    }
    let other = server
        .send(reqwest::Method::GET, "/v1/streams", None, Some(OTHER))
        .await;
    assert_eq!(other.body["streams"], json!([]));
    let anon = server
        .send(reqwest::Method::GET, "/v1/streams", None, None)
        .await;
    anon.problem(401);

    server.state.store.close().await;
    let text = db.stored_text().await;
    assert!(text.contains(&id), "the scan reads the database");
    for secret in [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "flow-token-123",
        "offboarding",
    ] {
        assert!(!text.contains(secret), "{secret} stored in the clear");
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary, killed mid-stream.

/// A connector killed with SIGKILL mid-stream and started again on the same database resumes
/// the stream from its checkpoint and finishes it: every record delivered, re-sent ones with
/// their webhook-id; SIGTERM stops it gracefully with nothing to re-send.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_stream_resumes_and_finishes() {
    const DEVICES: usize = 1500;
    let sim = start_sim(devices(DEVICES)).await;
    let receiver = Receiver::start().await;
    receiver.answer_all(Answer::Slow(Duration::from_millis(4)));
    let dir = tempfile::tempdir().unwrap();
    let (_, secret_key) = kandji_connector::store::TokenCipher::generate();
    let env = vec![
        ("KANDJI_CONNECTOR_API_KEYS", API_KEY.to_string()),
        (
            "KANDJI_CONNECTOR_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("kill.db").display()),
        ),
        ("KANDJI_CONNECTOR_SECRET_KEY", secret_key),
        (
            "KANDJI_CONNECTOR_CALLBACK_ALLOW",
            "127.0.0.1/32".to_string(),
        ),
        ("KANDJI_CONNECTOR_STREAM_CONCURRENCY", "4".to_string()),
        (
            "KANDJI_CONNECTOR_CALLBACK_RETRY_SCHEDULE_MS",
            "20,40,80".to_string(),
        ),
        ("KANDJI_CONNECTOR_STREAM_CHECKPOINT_MS", "50".to_string()),
    ];
    let mut first = Binary::serve(&env).await;
    let conn = first.connect(&sim).await;
    let invoke = json!({"connection": conn, "inputs": {}, "options": {"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url())}});
    let started = first.post("/v1/cards/list_devices/invoke", invoke).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["stream_id"].as_str().unwrap().to_string();

    // SIGKILL after a few hundred records
    receiver
        .wait_for("records before the kill", 500, Duration::from_secs(20))
        .await;
    first.kill().await;
    sim.clear_requests();
    let at_kill = receiver.by_index().len();
    assert!(at_kill < DEVICES, "killed mid-stream ({at_kill} delivered)");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hits_at_restart = receiver.hit_count();
    assert_eq!(
        hits_at_restart,
        receiver.hit_count(),
        "nothing is delivered while the connector is down"
    );

    // Started again: it resumes from the checkpoint (not from the start) ...
    let mut second = Binary::serve(&env).await;
    eventually(
        "records after the restart",
        Duration::from_secs(20),
        async || receiver.hit_count() >= hits_at_restart + 300,
    )
    .await;
    let first_query = sim
        .requests()
        .iter()
        .find(|r| r.path.ends_with("/devices"))
        .and_then(|r| r.query.clone())
        .unwrap();
    let resumed_at: usize = first_query
        .split("offset=")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        resumed_at >= 300 && resumed_at <= at_kill,
        "resumed at offset {resumed_at} (killed with {at_kill} delivered)"
    );
    let before_kill = receiver.hits()[..hits_at_restart]
        .iter()
        .map(Hit::index)
        .collect::<std::collections::HashSet<_>>();
    let resent = receiver.hits()[hits_at_restart..]
        .iter()
        .filter(|h| before_kill.contains(&h.index()))
        .count();
    eprintln!(
        "killed with {at_kill} records delivered; resumed at offset {resumed_at}; {resent} re-sent"
    );

    // ... SIGTERM stops it gracefully: in-flight callbacks finish, the checkpoint is saved ...
    let code = second.terminate().await;
    assert!(code.success(), "{code}");
    let after_term = receiver.by_index();
    let hits_at_term = receiver.hit_count();
    assert!(after_term.len() < DEVICES, "stopped mid-stream");

    // ... and a third start finishes it, re-sending nothing that was delivered before SIGTERM.
    let third = Binary::serve(&env).await;
    let status = third.finished(&id, Duration::from_secs(30)).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], DEVICES);
    assert_eq!(status["failed_deliveries"], 0);
    let by_index = receiver.by_index();
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..DEVICES as u64).collect::<Vec<_>>(),
        "no record missing"
    );
    for (i, hits) in &by_index {
        let want = format!("msg_{}_{i}", id.trim_start_matches("str_"));
        assert!(
            hits.iter().all(|h| h.id == want),
            "record {i}: one webhook-id across restarts"
        );
        assert_signed(&hits[0]);
    }
    let after_third = &receiver.hits()[hits_at_term..];
    let resent_after_term = after_third
        .iter()
        .filter(|h| after_term.contains_key(&h.index()))
        .count();
    assert_eq!(
        resent_after_term, 0,
        "a graceful stop leaves nothing to send twice"
    );
    let ids: Vec<String> = sim
        .tenant()
        .devices
        .iter()
        .map(|d| d.device_id.to_string())
        .collect();
    let delivered: std::collections::BTreeSet<String> = by_index
        .values()
        .map(|h| {
            h[0].body["record"]["device_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        delivered,
        ids.into_iter().collect(),
        "every device, once each"
    );
}

/// The crash bound at full speed (a receiver that answers at once, the default concurrency and
/// checkpoint settings): a connector killed with SIGKILL and started again re-sends at most the
/// deliveries in flight (`KANDJI_CONNECTOR_STREAM_CONCURRENCY`, 16) plus the finished ones it
/// may leave unsaved (`KANDJI_CONNECTOR_STREAM_CHECKPOINT_RECORDS`, 64), on each store.
async fn killed_at_full_speed_resends_at_most_in_flight_plus_the_unsaved_batch(db: TestDb) {
    const DEVICES: usize = 6000;
    const BOUND: usize = 16 + 64;
    let sim = start_sim(devices(DEVICES)).await;
    let receiver = Receiver::start().await;
    let (_, secret_key) = kandji_connector::store::TokenCipher::generate();
    let env = vec![
        ("KANDJI_CONNECTOR_API_KEYS", API_KEY.to_string()),
        ("KANDJI_CONNECTOR_DATABASE_URL", db.url()),
        ("KANDJI_CONNECTOR_SECRET_KEY", secret_key),
        (
            "KANDJI_CONNECTOR_CALLBACK_ALLOW",
            "127.0.0.1/32".to_string(),
        ),
        // A replica that died holds the stream's lease this long (PostgreSQL).
        ("KANDJI_CONNECTOR_STREAM_LEASE_MS", "1000".to_string()),
    ];
    let mut first = Binary::serve(&env).await;
    let conn = first.connect(&sim).await;
    // Kandji's 10,000 requests an hour would pace the stream to about 830 records a second.
    first.set_budget(&conn, 3_600_000).await;
    let invoke = json!({"connection": conn, "inputs": {}, "options": {"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url())}});
    let started = first.post("/v1/cards/list_devices/invoke", invoke).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["stream_id"].as_str().unwrap().to_string();

    let t0 = Instant::now();
    receiver
        .wait_for("records before the kill", 1500, Duration::from_secs(20))
        .await;
    let rate = receiver.hit_count() as f64 / t0.elapsed().as_secs_f64();
    first.kill().await;
    // Callbacks the process had written before it died arrive within moments.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_kill = receiver.hit_count();
    assert!(at_kill < DEVICES, "killed mid-stream ({at_kill} delivered)");

    let second = Binary::serve(&env).await;
    let status = second.finished(&id, Duration::from_secs(60)).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], DEVICES);
    let hits = receiver.hits();
    let before: std::collections::HashSet<u64> = hits[..at_kill].iter().map(Hit::index).collect();
    let resent = hits[at_kill..]
        .iter()
        .filter(|h| before.contains(&h.index()))
        .count();
    let by_index = receiver.by_index();
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..DEVICES as u64).collect::<Vec<_>>(),
        "no record missing"
    );
    eprintln!(
        "{}: killed after {at_kill} deliveries at {rate:.0} records/s; {resent} re-sent (bound {BOUND})",
        if db.pg.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    assert!(
        resent <= BOUND,
        "{resent} records re-sent after SIGKILL, more than in flight plus the unsaved batch ({BOUND})"
    );
    assert_eq!(hits.len() - DEVICES, resent, "every duplicate is a re-send");
}

mod killed_at_full_speed_resends_at_most_in_flight_plus_the_unsaved_batch {
    use crate::harness::TestDb;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        super::killed_at_full_speed_resends_at_most_in_flight_plus_the_unsaved_batch(
            TestDb::sqlite(),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn needs_postgres() {
        super::killed_at_full_speed_resends_at_most_in_flight_plus_the_unsaved_batch(
            TestDb::postgres().await,
        )
        .await;
    }
}
