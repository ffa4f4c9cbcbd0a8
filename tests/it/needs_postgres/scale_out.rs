//! Several replicas on one PostgreSQL database, each a `TestApp` (or the real binary) in front
//! of one simulated tenant. Each test gets a fresh schema.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{
    API_KEY, Answer, Binary, Hit, PgSchema, Receiver, TestApp, devices, eventually, start_sim,
};
use kandji_connector::config::Config;
use kandji_connector::simulator::SimHandle;
use kandji_connector::store::TokenCipher;
use serde_json::{Value, json};

/// A replica on the test's schema in front of `sim`, with this secret key and a short stream
/// lease; no connection of its own (replicas share the one made through either).
async fn replica(
    pg: &PgSchema,
    sim: &SimHandle,
    cipher: &TokenCipher,
    tweak: impl FnOnce(&mut Config) + Send,
) -> TestApp {
    TestApp::builder()
        .shared_sim(sim)
        .database_url(pg.url())
        .cipher(cipher)
        .without_connection()
        .config(|c| {
            c.streams.lease = Duration::from_millis(1_000);
            tweak(c)
        })
        .start()
        .await
}

/// Two replicas started at the same moment on an empty schema; the connection to `sim` is made
/// through the first, and both invoke cards on it.
async fn two(
    pg: &PgSchema,
    sim: &SimHandle,
    tweak: impl Fn(&mut Config) + Copy + Send,
) -> (TestApp, TestApp) {
    let (cipher, _) = TokenCipher::generate();
    let (mut a, mut b) = tokio::join!(
        replica(pg, sim, &cipher, tweak),
        replica(pg, sim, &cipher, tweak)
    );
    let conn = a.connect(sim).await;
    a.api.connection = conn.clone();
    b.api.connection = conn;
    (a, b)
}

/// `two` replicas that sync the inventory every `interval`, the sync turned on through the first
/// with a budget of `requests_per_hour`.
async fn two_syncing(
    pg: &PgSchema,
    sim: &SimHandle,
    interval: Duration,
    requests_per_hour: u64,
) -> (TestApp, TestApp) {
    let (a, b) = two(pg, sim, move |c| c.trust.interval = interval).await;
    let r = a
        .patch(
            &format!("/v1/connections/{}", a.connection),
            json!({"inventory_sync": true, "requests_per_hour": requests_per_hour}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (a, b)
}

/// Waits until each replica holds an inventory of `devices` devices.
async fn both_hold(replicas: [&TestApp; 2], devices: usize) {
    for r in replicas {
        eventually(
            "both replicas hold the inventory",
            Duration::from_secs(20),
            async || inventory(r).await["devices"] == devices,
        )
        .await;
    }
}

#[tokio::test]
async fn replicas_start_together_and_share_connections() {
    let pg = PgSchema::new().await;
    let sim = start_sim(devices(50)).await;
    let (a, b) = two(&pg, &sim, |_| {}).await;
    for r in [&a, &b] {
        let r = r.get("/readyz").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = b.get(&format!("/v1/connections/{}", a.connection)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    b.outputs(
        "list_devices",
        json!({}),
        json!({"result_set": "first_matching_record"}),
    )
    .await;
}

#[tokio::test]
async fn one_budget_across_replicas() {
    let pg = PgSchema::new().await;
    let sim = start_sim(devices(50)).await;
    let (a, b) = two(&pg, &sim, |c| {
        c.kandji.budget_wait = Duration::from_secs(40)
    })
    .await;
    b.set_budget(&a.connection, 3600).await;
    sim.clear_requests();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            r.outputs(
                "list_devices",
                json!({}),
                json!({"result_set": "first_matching_record"}),
            )
            .await;
            started.elapsed()
        }));
    }
    let mut done: Vec<Duration> = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done.sort();
    assert_eq!(sim.request_count(), 20, "one Kandji request per invocation");
    // 3,600/h is one a second with a burst of one: 20 requests need 19 s, whichever replica
    // sends them (two independent budgets would need about 9 s).
    let span = *done.last().unwrap();
    assert!(
        span >= Duration::from_millis(18_500),
        "20 requests in {span:?}"
    );
    for w in done.windows(4) {
        assert!(
            w[3] - w[0] >= Duration::from_millis(2_500),
            "spacing: {done:?}"
        );
    }
}

#[tokio::test]
async fn a_cancel_on_one_replica_stops_the_stream_on_the_other() {
    let pg = PgSchema::new().await;
    let sim = start_sim(devices(600)).await;
    let (a, b) = two(&pg, &sim, |_| {}).await;
    let receiver = Receiver::start().await;
    receiver.answer_all(Answer::Slow(Duration::from_millis(100)));
    let id = a.stream_devices(&receiver.url()).await;
    receiver
        .wait_for("deliveries", 20, Duration::from_secs(10))
        .await;
    let r = b.delete(&format!("/v1/streams/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "cancelled");
    // A notices at its next checkpoint (50 ms) and lets in-flight callbacks (100 ms) end.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let settled = receiver.hit_count();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.hit_count(), settled, "A stopped delivering");
    assert!(settled < 600);
    let status = a.get(&format!("/v1/streams/{id}")).await.body;
    assert_eq!(status["state"], "cancelled", "{status}");
}

/// A stream running on replica A (the binary) is finished by replica B (in-process) after A is
/// killed with SIGKILL: B takes it over once A's lease expires, resumes from A's last checkpoint,
/// and every record arrives, each under one webhook-id, with duplicates bounded by the records
/// in flight plus the finished ones a replica may leave unsaved (the README's bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_on_a_killed_replica_is_finished_by_the_other() {
    let pg = PgSchema::new().await;
    const DEVICES: u64 = 3_000;
    const CONCURRENCY: u64 = 8;
    const LEASE: Duration = Duration::from_millis(2_000);
    const CHECKPOINT: Duration = Duration::from_millis(100);
    const CALLBACK_DELAY: Duration = Duration::from_millis(15);
    let sim = start_sim(devices(DEVICES as usize)).await;
    let receiver = Receiver::start().await;
    receiver.answer_all(Answer::Slow(CALLBACK_DELAY));
    let (cipher, secret_key) = TokenCipher::generate();

    // A: the binary.
    let mut a = Binary::serve(&[
        ("KANDJI_CONNECTOR_API_KEYS", API_KEY.to_string()),
        ("KANDJI_CONNECTOR_DATABASE_URL", pg.url()),
        ("KANDJI_CONNECTOR_SECRET_KEY", secret_key),
        (
            "KANDJI_CONNECTOR_CALLBACK_ALLOW",
            "127.0.0.1/32".to_string(),
        ),
        (
            "KANDJI_CONNECTOR_STREAM_CONCURRENCY",
            CONCURRENCY.to_string(),
        ),
        (
            "KANDJI_CONNECTOR_STREAM_CHECKPOINT_MS",
            CHECKPOINT.as_millis().to_string(),
        ),
        (
            "KANDJI_CONNECTOR_STREAM_LEASE_MS",
            LEASE.as_millis().to_string(),
        ),
    ])
    .await;
    // B: in-process, same schema, same secret key, same stream settings.
    let b = replica(&pg, &sim, &cipher, |c| {
        c.streams.concurrency = CONCURRENCY as usize;
        c.streams.checkpoint_interval = CHECKPOINT;
        c.streams.lease = LEASE;
    })
    .await;

    a.api.connection = a.connect(&sim).await;
    let id = a.stream_devices(&receiver.url()).await;

    // SIGKILL A mid-stream.
    receiver
        .wait_for("deliveries by A", 600, Duration::from_secs(15))
        .await;
    a.kill().await;
    let killed_at = Instant::now();
    // A's last saved checkpoint, read before B can take the lease over.
    let (done_below, done_above, lease_owner): (i64, String, Option<String>) =
        sqlx::query_as("SELECT done_below, done_above, lease_owner FROM streams WHERE id = $1")
            .bind(&id)
            .fetch_one(&pg.raw().await)
            .await
            .unwrap();
    assert!(lease_owner.is_some(), "A held the lease when it died");
    let saved_done: HashSet<u64> = serde_json::from_str::<Vec<u64>>(&done_above)
        .unwrap()
        .into_iter()
        .chain(0..done_below as u64)
        .collect();
    // Requests A had written before it died are counted as A's (they arrive within moments).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let by_a = receiver.hit_count();
    assert!(
        by_a < DEVICES as usize / 2,
        "killed mid-stream ({by_a} delivered)"
    );

    // B takes the stream over once A's lease has expired, and finishes it.
    let status = b.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], DEVICES, "{status}");
    assert_eq!(status["failed_deliveries"], 0, "{status}");

    let hits = receiver.hits();
    let (before, after) = hits.split_at(by_a);
    let first_by_b = after.first().expect("B delivered").at - killed_at;
    // The lease was last renewed at A's last checkpoint (at most one interval, plus the write,
    // before the kill); B sweeps every third of the lease.
    assert!(
        first_by_b >= LEASE - CHECKPOINT - Duration::from_millis(300),
        "B resumed {first_by_b:?} after the kill, before A's lease expired"
    );
    assert!(
        first_by_b <= LEASE + LEASE / 3 + Duration::from_secs(2),
        "B resumed only {first_by_b:?} after the kill"
    );

    // No record missing, each with one webhook-id whichever replica sent it.
    let mut by_index: BTreeMap<u64, Vec<&Hit>> = Default::default();
    for h in &hits {
        by_index.entry(h.index()).or_default().push(h);
    }
    assert!(
        by_index.keys().copied().eq(0..DEVICES),
        "no record missing ({} distinct of {DEVICES})",
        by_index.len()
    );
    for (i, hs) in &by_index {
        let want = kandji_connector::streams::webhook_id(&id, *i);
        assert!(
            hs.iter().all(|h| h.id == want),
            "record {i}: one webhook-id on both replicas: {hs:?}"
        );
    }

    // Duplicates: only records A had sent but its last checkpoint did not mark done: the (at
    // most CONCURRENCY) callbacks in flight when A died, plus the finished ones A had not saved
    // yet, of which it never leaves more than KANDJI_CONNECTOR_STREAM_CHECKPOINT_RECORDS (64).
    let sent_by_a: HashSet<u64> = before.iter().map(Hit::index).collect();
    let resent: Vec<u64> = after
        .iter()
        .map(Hit::index)
        .filter(|i| sent_by_a.contains(i))
        .collect();
    let mut unique = resent.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        resent.len(),
        "B sent no record twice: {resent:?}"
    );
    assert!(
        after.iter().all(|h| !saved_done.contains(&h.index())),
        "B re-sent a record A's checkpoint had marked done"
    );
    let bound = CONCURRENCY + 64;
    eprintln!(
        "A delivered {by_a} ({} distinct) before SIGKILL; its checkpoint: done below {done_below}, \
         {} done above; B resumed {first_by_b:?} after the kill and re-sent {} (bound {bound})",
        sent_by_a.len(),
        saved_done.len() - done_below as usize,
        resent.len()
    );
    let duplicates = hits.len() as u64 - DEVICES;
    assert_eq!(
        duplicates,
        resent.len() as u64,
        "every duplicate is a re-send by B"
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than in flight plus the unsaved batch ({bound})"
    );
    drop(a);
}

/// Kandji `/devices` list pages that started a sweep (offset 0, the sync's page size).
fn sweeps(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| {
            r.path == "/api/v1/devices"
                && r.query_pairs().contains(&("offset".into(), "0".into()))
                && r.query_pairs().contains(&("limit".into(), "300".into()))
        })
        .count()
}

async fn inventory(r: &TestApp) -> Value {
    r.get(&format!("/v1/connections/{}", r.connection))
        .await
        .ok()["inventory"]
        .clone()
}

/// One replica at a time pages through Kandji for a connection's inventory; the other loads
/// each completed sync from the store and answers device-trust lookups from it without calling
/// Kandji. Turning the sync on through one replica reaches the other; when the syncing replica
/// shuts down, the other takes over at once.
#[tokio::test]
async fn replicas_share_one_inventory_sync() {
    let pg = PgSchema::new().await;
    const DEVICES: usize = 700; // three pages
    let sim = start_sim(devices(DEVICES)).await;
    // A budget that lets a sweep take milliseconds, so sweeps are counted per interval.
    let (a, b) = two_syncing(&pg, &sim, Duration::from_millis(1_000), 3_600_000).await;
    let conn = a.connection.clone();

    // B learns of the change by itself and both hold every device.
    both_hold([&a, &b], DEVICES).await;
    // A replica that has just loaded the inventory says `following` after its first round (a
    // quarter interval): wait for it rather than catch it between the two.
    let mut states = Vec::new();
    eventually("one replica follows", Duration::from_secs(5), async || {
        states = vec![
            inventory(&a).await["state"].clone(),
            inventory(&b).await["state"].clone(),
        ];
        states.contains(&json!("following"))
    })
    .await;

    // Over several intervals, one sweep an interval between them, not one each.
    sim.clear_requests();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let n = sweeps(&sim);
    assert!(
        (2..=6).contains(&n),
        "{n} sweeps in 4.5 intervals by two replicas (one replica syncing: about 4-5; both: about 9)"
    );

    // A change in Kandji reaches both replicas' answers, with no live lookup.
    let serial = {
        let mut t = sim.tenant_mut();
        let i = (0..t.devices.len())
            .find(|&i| t.devices[i].platform == kandji_connector::simulator::Platform::Mac)
            .unwrap();
        t.devices[i].mdm_enabled = false;
        t.touch();
        t.devices[i].serial_number.to_string()
    };
    let trust_path = format!("/v1/connections/{conn}/device-trust?serial_number={serial}");
    for r in [&a, &b] {
        eventually(
            "both replicas see the change",
            Duration::from_secs(10),
            async || {
                let body = r.get(&trust_path).await.ok();
                assert_eq!(body["source"], "inventory", "{body}");
                body["managed"] == false
            },
        )
        .await;
    }
    let live = sim
        .requests()
        .iter()
        .filter(|r| r.query_pairs().iter().any(|(k, _)| k == "serial_number"))
        .count();
    assert_eq!(live, 0, "lookups were answered from the inventory");

    // The syncing replica shuts down (releasing its lease): the other takes over within about
    // a quarter interval, far sooner than the lease's expiry (interval + 60 s).
    let syncing_is_a = inventory(&a).await["state"] != "following";
    let (mut leaving, staying) = if syncing_is_a { (a, b) } else { (b, a) };
    leaving.shut_down().await;
    sim.clear_requests();
    eventually(
        "the other replica syncs",
        Duration::from_secs(10),
        async || sweeps(&sim) >= 1 && inventory(&staying).await["state"] != "following",
    )
    .await;
    drop(leaving);
}

/// The sync turned off through the replica that follows: the syncing replica stops within its
/// reconcile period and nothing of the inventory is left in the database (no device, no sync
/// record, no lease), even though the syncing replica kept writing until it learnt of the change.
#[tokio::test]
async fn turning_the_sync_off_through_a_follower_clears_it_everywhere() {
    let pg = PgSchema::new().await;
    let sim = start_sim(devices(700)).await;
    let (a, b) = two_syncing(&pg, &sim, Duration::from_millis(300), 3_600_000).await;
    let conn = a.connection.clone();
    both_hold([&a, &b], 700).await;
    let mut follows = [false, false];
    eventually("one replica follows", Duration::from_secs(5), async || {
        follows = [
            inventory(&a).await["state"] == "following",
            inventory(&b).await["state"] == "following",
        ];
        follows.contains(&true)
    })
    .await;
    let follower = if follows[0] { &a } else { &b };
    let r = follower
        .patch(
            &format!("/v1/connections/{conn}"),
            json!({"inventory_sync": false, "requests_per_hour": 3_600_000}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for r in [&a, &b] {
        eventually(
            "both replicas drop the inventory",
            Duration::from_secs(10),
            async || inventory(r).await.is_null(),
        )
        .await;
    }
    // Give a sweep that was running its chance to write, then look at the tables.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let raw = pg.raw().await;
    for table in ["inventory_devices", "inventory_syncs", "inventory_leases"] {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE connection_id = $1"
        )))
        .bind(&conn)
        .fetch_one(&raw)
        .await
        .unwrap();
        assert_eq!(
            n, 0,
            "{table} still holds rows of a connection whose sync is off"
        );
    }
    raw.close().await;
}

/// The share of the rate kept for device-trust live lookups is one share for all replicas (a
/// row of the shared `budgets` table), not one each: two replicas flooded with serial numbers
/// Kandji does not know for about three seconds together send at most what one share allows,
/// and every answer comes within the short wait.
#[tokio::test]
async fn the_device_trust_live_share_holds_across_replicas() {
    let pg = PgSchema::new().await;
    let sim = start_sim(devices(50)).await;
    // 360,000 an hour: the live share (10 %) is 10 a second, with a burst of 10.
    let (a, b) = two_syncing(&pg, &sim, Duration::from_millis(2_000), 360_000).await;
    for r in [&a, &b] {
        eventually(
            "both replicas hold a complete inventory",
            Duration::from_secs(20),
            async || {
                let inv = inventory(r).await;
                inv["devices"] == 50 && inv["last_sync"].is_object()
            },
        )
        .await;
    }
    let live_wait = a.state.trust.config().live_wait;
    sim.clear_requests();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let started = Instant::now();
    let run_for = Duration::from_secs(3);
    let mut workers = Vec::new();
    // 16 callers on each replica, each asking as soon as it has its answer.
    for w in 0..32 {
        let r = if w % 2 == 0 { a.clone() } else { b.clone() };
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = 0;
            while started.elapsed() < run_for {
                let path = format!(
                    "/v1/connections/{}/device-trust?serial_number=NOPE{w}X{i:05}",
                    r.connection
                );
                i += 1;
                let t = Instant::now();
                let resp = r.get(&path).await;
                assert_eq!(resp.status, 200, "{}", resp.body);
                seen.push((
                    resp.body["live_check"].as_str().unwrap().to_string(),
                    t.elapsed(),
                ));
            }
            seen
        }));
    }
    let mut answers = Vec::new();
    for w in workers {
        answers.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    let live = sim
        .requests()
        .iter()
        .filter(|r| r.query_pairs().iter().any(|(k, _)| k == "serial_number"))
        .count();
    let made = answers.iter().filter(|(c, _)| c == "made").count();
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap();
    // One share: a burst of 10 and 10 a second (two shares would allow twice as many).
    let allowed = 10 + (10.0 * elapsed.as_secs_f64()).ceil() as usize + 2;
    println!(
        "{} lookups on two replicas in {elapsed:?}: {live} Kandji calls (one share allows {allowed}), slowest answer {slowest:?}",
        answers.len()
    );
    assert_eq!(live, made, "one Kandji call per live answer");
    assert!(
        answers.iter().all(|(c, _)| c == "made" || c == "skipped"),
        "{answers:?}"
    );
    // More asked than one share allows (so two shares would show).
    assert!(
        answers.len() > allowed + allowed / 2,
        "a flood: {} lookups",
        answers.len()
    );
    assert!(live <= allowed, "{live} Kandji calls in {elapsed:?}");
    assert!(live >= 10, "the share was used: {live}");
    // The allowance: HTTP, the store and scheduling on a machine shared with parallel tests.
    assert!(
        slowest < live_wait + Duration::from_millis(1_500),
        "slowest answer {slowest:?}"
    );
}
