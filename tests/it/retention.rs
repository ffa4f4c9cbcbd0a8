//! Retention: finished streams (with their delivery failures) older than the retention period,
//! and idempotency keys past their 24-hour window, are deleted by the background sweeper; newer
//! ones are kept. On SQLite and on PostgreSQL.

use std::time::Duration;

use crate::harness::{Answer, Receiver, TestApp, TestDb, both, eventually, helper_flow};
use kandji_connector::retention::RetentionConfig;
use serde_json::json;

both!(finished_streams_past_the_retention_are_deleted_with_their_failures_newer_ones_kept);
async fn finished_streams_past_the_retention_are_deleted_with_their_failures_newer_ones_kept(
    db: TestDb,
) {
    let server = TestApp::builder()
        .devices(5)
        .db(&db)
        .config(|c| {
            c.retention = RetentionConfig {
                max_age: Some(Duration::from_secs(30 * 24 * 3600)),
                interval: Duration::from_millis(200),
                batch: 1,
                pause: Duration::from_millis(1),
                ..RetentionConfig::default()
            }
        })
        .start()
        .await;
    let receiver = Receiver::start().await;
    let options = json!({"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url())});
    // Two old streams (so deleting takes more than one batch of 1) and a new one, each with a
    // delivery failure.
    let mut ids = Vec::new();
    for _ in 0..3 {
        receiver.script(1, vec![Answer::Status(410, "gone")]);
        let id = server
            .start_stream("list_devices", json!({}), options.clone())
            .await;
        let status = server.finished(&id, Duration::from_secs(10)).await;
        assert_eq!(status["state"], "succeeded", "{status}");
        assert_eq!(status["failed_deliveries"], 1, "{status}");
        ids.push(id);
    }
    let failures_of = async |id: &str| {
        db.count(
            "SELECT COUNT(*) FROM stream_failures WHERE stream_id = $1",
            &[id],
        )
        .await
    };
    assert_eq!(failures_of(&ids[0]).await, 1);

    // An idempotency key, answered.
    let body = json!({"connection": server.connection, "inputs": {}, "options": {"result_set": "first_300_records"}});
    let r = server
        .post_keyed("/v1/cards/list_tags/invoke", body, "retention-test")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM idempotency_keys", &[]).await,
        1
    );

    // Age two streams past 30 days and one just inside it; age the key past its window.
    let old = "2000-01-01T00:00:00.000000Z";
    let recent = (chrono::Utc::now() - chrono::Duration::days(29))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    for (id, at) in [(&ids[0], old), (&ids[1], old), (&ids[2], recent.as_str())] {
        db.exec(
            "UPDATE streams SET finished_at = $1 WHERE id = $2",
            "UPDATE streams SET finished_at = $1::timestamptz WHERE id = $2",
            &[at, id],
        )
        .await;
    }
    db.exec(
        "UPDATE idempotency_keys SET created_at = $1",
        "UPDATE idempotency_keys SET created_at = $1::timestamptz",
        &[old],
    )
    .await;

    eventually(
        "the old streams to be deleted",
        Duration::from_secs(10),
        async || {
            server.get(&format!("/v1/streams/{}", ids[0])).await.status == 404
                && server.get(&format!("/v1/streams/{}", ids[1])).await.status == 404
        },
    )
    .await;
    assert_eq!(
        failures_of(&ids[0]).await,
        0,
        "failures go with their stream"
    );
    assert_eq!(
        failures_of(&ids[1]).await,
        0,
        "failures go with their stream"
    );
    assert_eq!(
        server
            .get(&format!("/v1/streams/{}/failures", ids[0]))
            .await
            .status,
        404
    );
    // The newer stream stays, failures and all.
    let kept = server.get(&format!("/v1/streams/{}", ids[2])).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(failures_of(&ids[2]).await, 1);
    let listed = server
        .get(&format!("/v1/streams/{}/failures", ids[2]))
        .await;
    assert_eq!(listed.body["failures"].as_array().unwrap().len(), 1);
    eventually(
        "the expired idempotency key to be deleted",
        Duration::from_secs(10),
        async || db.count("SELECT COUNT(*) FROM idempotency_keys", &[]).await == 0,
    )
    .await;
}
