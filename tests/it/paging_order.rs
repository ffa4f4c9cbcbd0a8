//! Offset paging in a stable order. Kandji does not keep its default device order between
//! requests (devices check in while a client pages), and offset pages of a changing order repeat
//! some devices and skip others; kandji-api.md says to page with a stable `ordering`. The
//! simulated tenant here moves devices to the front of its default order before every list
//! request without `ordering` (`SimConfig::checkins_per_request`), and a stream and an inventory
//! sync still see every device exactly once. The same stream without the ordering (the card
//! replaced by one that does not declare it) repeats and misses devices: the test that shows
//! the ordering is what makes the others pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::harness::kandji::read_sim;
use crate::harness::{Receiver, TestApp, builtin_card, eventually, operator_cards};
use kandji_connector::simulator::SimConfig;
use serde_json::{Value, json};

const DEVICES: usize = 1000;

/// A tenant whose default order changes before every list request: 7 devices check in.
fn reordering() -> SimConfig {
    SimConfig {
        devices: DEVICES,
        checkins_per_request: 7,
        ..SimConfig::default()
    }
}

/// Runs a stream of every device and returns the device ids delivered, by how often.
async fn stream_all_devices(app: &TestApp) -> BTreeMap<String, usize> {
    let receiver = Receiver::start().await;
    let id = app.stream_devices(&receiver.url()).await;
    let status = app.finished(&id, Duration::from_secs(30)).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    let mut seen = BTreeMap::new();
    for h in receiver.hits() {
        let device = h.body["record"]["device_id"].as_str().unwrap().to_string();
        *seen.entry(device).or_default() += 1;
    }
    seen
}

fn all_device_ids(app: &TestApp) -> BTreeSet<String> {
    app.sim
        .tenant()
        .devices
        .iter()
        .map(|d| d.device_id.to_string())
        .collect()
}

fn device_list_queries(app: &TestApp) -> Vec<String> {
    app.sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/devices")
        .map(|r| r.query.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn the_simulated_default_order_changes_between_requests_and_ordering_holds_it() {
    let app = TestApp::builder().sim(reordering()).start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let page = async |query: &str| -> Vec<String> {
        let (_, body) = read_sim(&http, &app.sim, &format!("/devices?{query}")).await;
        body.as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b) = (page("limit=20").await, page("limit=20").await);
    assert_eq!(a[..13], b[7..], "seven devices checked in and came first");
    assert_ne!(a[..7], b[..7]);
    let (a, b) = (
        page("ordering=device_id&limit=20").await,
        page("ordering=device_id&limit=20").await,
    );
    assert_eq!(a, b, "a stable ordering does not change");

    app.sim.set_checkins_per_request(0);
    assert_eq!(page("limit=20").await, page("limit=20").await);
}

#[tokio::test]
async fn a_stream_of_a_reordering_tenant_delivers_every_device_once() {
    let app = TestApp::builder().sim(reordering()).start().await;
    let seen = stream_all_devices(&app).await;
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "delivered twice: {repeated:?}");
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        all_device_ids(&app),
        "every device"
    );
    let queries = device_list_queries(&app);
    assert_eq!(queries.len(), 4, "{queries:?}");
    assert!(
        queries
            .iter()
            .all(|q| q.starts_with("ordering=device_id&limit=300&offset=")),
        "{queries:?}"
    );
}

#[tokio::test]
async fn without_the_ordering_a_stream_of_a_reordering_tenant_repeats_and_misses_devices() {
    // List Devices as it was before it declared its ordering.
    let mut card = builtin_card("list_devices");
    let list = card["requests"][0]["list"].as_object_mut().unwrap();
    assert_eq!(list.remove("ordering"), Some(json!("device_id")));
    let cards = operator_cards(&[&card]);
    let app = TestApp::builder()
        .sim(reordering())
        .cards_dir(cards.path())
        .start()
        .await;
    let seen = stream_all_devices(&app).await;
    let repeated = seen.values().filter(|n| **n > 1).count();
    let missed = all_device_ids(&app)
        .iter()
        .filter(|d| !seen.contains_key(*d))
        .count();
    // 7 devices move to the front before each of the 4 pages: pages 2 to 4 each start with 7
    // devices the page before already had, and the 21 devices moved from the end are never read.
    assert_eq!((repeated, missed), (21, 21), "{seen:?}");
    assert!(
        device_list_queries(&app)
            .iter()
            .all(|q| !q.contains("ordering")),
    );
}

#[tokio::test]
async fn an_inventory_sync_of_a_reordering_tenant_indexes_every_device_once() {
    let app = TestApp::builder()
        .sim(reordering())
        .config(|c| c.trust.interval = Duration::from_secs(600))
        .start()
        .await;
    let path = format!("/v1/connections/{}", app.connection);
    let r = app.patch(&path, json!({"inventory_sync": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut inventory = Value::Null;
    eventually("a full sync", Duration::from_secs(20), async || {
        inventory = app.get(&path).await.body["inventory"].clone();
        inventory["last_sync"].is_object()
    })
    .await;
    assert_eq!(inventory["last_sync"]["devices"], DEVICES, "{inventory}");
    assert_eq!(
        inventory["devices"], DEVICES,
        "every device, once: {inventory}"
    );
    let queries = device_list_queries(&app);
    assert_eq!(
        queries,
        (0..4)
            .map(|p| format!("ordering=device_id&limit=300&offset={}", p * 300))
            .collect::<Vec<_>>()
    );
    // The devices last in Kandji's default order (moved to the front mid-sync) are known.
    let last: Vec<String> = app.sim.tenant().devices[DEVICES - 30..]
        .iter()
        .map(|d| d.serial_number.to_string())
        .collect();
    app.sim.clear_requests();
    for serial in last {
        let r = app
            .get(&format!("{path}/device-trust?serial_number={serial}"))
            .await;
        assert_eq!(r.body["source"], "inventory", "{serial}: {}", r.body);
        assert_eq!(r.body["found"], true);
    }
    assert_eq!(device_list_queries(&app), Vec::<String>::new());
}
