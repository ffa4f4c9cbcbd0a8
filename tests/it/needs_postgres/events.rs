//! Events with two replicas on one PostgreSQL database: one polls each connection's audit log
//! per interval (not one each), and every event is delivered once, by either.

use std::collections::HashSet;
use std::time::Duration;

use kandji_connector::simulator::SimConfig;
use kandji_connector::store::TokenCipher;
use serde_json::json;

use crate::events::{enroll, subscribe};
use crate::harness::{PgSchema, Receiver, TestApp, eventually, start_sim};

#[tokio::test]
async fn two_replicas_poll_once_per_interval_and_deliver_each_event_once() {
    let pg = PgSchema::new().await;
    let sim = start_sim(SimConfig::default()).await;
    let (cipher, _) = TokenCipher::generate();
    let interval = Duration::from_millis(200);
    let replica = || {
        TestApp::builder()
            .shared_sim(&sim)
            .database_url(pg.url())
            .cipher(&cipher)
            .without_connection()
            .config(move |c| {
                c.events.interval = interval;
                c.events.delivery_tick = Duration::from_millis(20);
            })
            .start()
    };
    let (mut a, mut b) = tokio::join!(replica(), replica());
    let conn = a.connect(&sim).await;
    a.api.connection = conn.clone();
    b.api.connection = conn.clone();
    // Five polls a second are more than Kandji's 10,000 an hour: the budget would space them.
    a.set_budget(&conn, 100_000).await;
    let rx = Receiver::start().await;
    // One subscription made through each replica.
    subscribe(&a, "device_enrolled", &rx.url(), json!({})).await;
    subscribe(&b, "device_enrolled", &rx.url(), json!({})).await;
    eventually("a first poll", Duration::from_secs(5), async || {
        sim.requests()
            .iter()
            .any(|r| r.path == "/api/v1/audit/events")
    })
    .await;
    sim.clear_requests();
    for _ in 0..3 {
        for _ in 0..10 {
            enroll(&sim, json!({})).await;
        }
        tokio::time::sleep(interval).await;
    }
    rx.wait_for("60 deliveries", 60, Duration::from_secs(20))
        .await;
    tokio::time::sleep(interval * 4).await;
    let hits = rx.hits();
    let ids: HashSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(hits.len(), 60, "each event once per subscription");
    assert_eq!(ids.len(), 60);
    let devices: HashSet<&str> = hits
        .iter()
        .map(|h| h.body["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(devices.len(), 30);

    // Polls over ten intervals: about ten, not twenty.
    sim.clear_requests();
    tokio::time::sleep(interval * 10).await;
    let polls = sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/audit/events")
        .count();
    assert!((8..=12).contains(&polls), "{polls} polls in ten intervals");
}
