//! Store tests against a SQLite file in a temporary directory and against a fresh PostgreSQL
//! schema (`both!` runs a test on each: `name::sqlite` and `name::needs_postgres`).

use std::sync::Arc;

use crate::harness::{TestDb, both};
use kandji_connector::store::{
    self, CipherError, Connection, ConnectionPatch, NewConnection, Store, StoreError, TokenCipher,
};
use secrecy::{ExposeSecret, SecretString};

fn new_conn(name: &str, token: &str) -> NewConnection {
    NewConnection {
        name: name.to_string(),
        api_url: format!("https://{name}.api.kandji.io"),
        api_token: SecretString::from(token.to_string()),
        requests_per_hour: Some(10_000),
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Stores a connection to tenant `name` (`new_conn`).
async fn add(store: &Arc<dyn Store>, name: &str, token: &str) -> Connection {
    store
        .create_connection(new_conn(name, token))
        .await
        .unwrap()
}

/// A fresh secret key.
fn new_key() -> TokenCipher {
    TokenCipher::generate().0
}

/// Closes the store and lets it go, as a process that stops.
async fn close(store: Arc<dyn Store>) {
    store.close().await;
}

/// Opening with `key` fails as a wrong secret key (`expect` says why it must); returns the error.
async fn assert_wrong_key(db: &TestDb, key: &TokenCipher, expect: &str) -> StoreError {
    let err = db.open(key).await.err().expect(expect);
    assert!(matches!(err, StoreError::WrongSecretKey), "{err:?}");
    err
}

async fn token_of(store: &Arc<dyn Store>, id: &str) -> String {
    store
        .connection_token(id)
        .await
        .unwrap()
        .expect("connection exists")
        .expose_secret()
        .to_string()
}

both!(create_get_list_update_delete_round_trip);
async fn create_get_list_update_delete_round_trip(db: TestDb) {
    let cipher = new_key();
    let store = db.open(&cipher).await.unwrap();
    store.ping().await.unwrap();
    assert!(store.list_connections().await.unwrap().is_empty());

    let a = add(&store, "acme", "token-a").await;
    let b = store
        .create_connection(NewConnection {
            requests_per_hour: None,
            ..new_conn("globex", "token-b")
        })
        .await
        .unwrap();
    assert!(a.id.starts_with("conn_"));
    assert_eq!(a.id.len(), "conn_".len() + 32);
    assert_ne!(a.id, b.id);
    assert_eq!(a.name, "acme");
    assert_eq!(a.api_url, "https://acme.api.kandji.io");
    assert_eq!(a.requests_per_hour, Some(10_000));
    assert_eq!(b.requests_per_hour, None);
    assert_eq!(a.created_at, a.updated_at);

    // What create returned is exactly what is read back.
    assert_eq!(store.get_connection(&a.id).await.unwrap(), Some(a.clone()));
    // Oldest first; ties (same microsecond) broken by id.
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort_by(|x, y| (x.created_at, &x.id).cmp(&(y.created_at, &y.id)));
    assert_eq!(store.list_connections().await.unwrap(), expected);
    assert_eq!(token_of(&store, &a.id).await, "token-a");
    assert_eq!(token_of(&store, &b.id).await, "token-b");

    // Empty patch: unchanged.
    let same = store
        .update_connection(&a.id, ConnectionPatch::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same, a);

    // Partial patch: only the named fields change.
    let a2 = store
        .update_connection(
            &a.id,
            ConnectionPatch {
                name: Some("acme-renamed".into()),
                api_token: Some(SecretString::from("token-a2")),
                requests_per_hour: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a2.id, a.id);
    assert_eq!(a2.name, "acme-renamed");
    assert_eq!(a2.api_url, a.api_url);
    assert_eq!(a2.requests_per_hour, None);
    assert_eq!(a2.created_at, a.created_at);
    assert!(a2.updated_at >= a.updated_at);
    assert_eq!(token_of(&store, &a.id).await, "token-a2");
    assert_eq!(store.get_connection(&a.id).await.unwrap(), Some(a2.clone()));

    let a3 = store
        .update_connection(
            &a.id,
            ConnectionPatch {
                api_url: Some("https://acme.api.eu.kandji.io".into()),
                requests_per_hour: Some(Some(500)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a3.name, "acme-renamed");
    assert_eq!(a3.api_url, "https://acme.api.eu.kandji.io");
    assert_eq!(a3.requests_per_hour, Some(500));
    assert_eq!(token_of(&store, &a.id).await, "token-a2");

    // b untouched throughout.
    assert_eq!(store.get_connection(&b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(token_of(&store, &b.id).await, "token-b");

    // Missing ids.
    assert_eq!(store.get_connection("conn_missing").await.unwrap(), None);
    assert!(
        store
            .connection_token("conn_missing")
            .await
            .unwrap()
            .is_none()
    );
    let patch = ConnectionPatch {
        name: Some("x".into()),
        ..Default::default()
    };
    assert!(
        store
            .update_connection("conn_missing", patch)
            .await
            .unwrap()
            .is_none()
    );

    // Delete.
    assert!(store.delete_connection(&a.id).await.unwrap());
    assert!(!store.delete_connection(&a.id).await.unwrap());
    assert_eq!(store.get_connection(&a.id).await.unwrap(), None);
    assert!(store.connection_token(&a.id).await.unwrap().is_none());
    assert_eq!(store.list_connections().await.unwrap(), vec![b.clone()]);

    // Everything persists across a re-open.
    close(store).await;
    let store = db.open(&cipher).await.unwrap();
    assert_eq!(store.list_connections().await.unwrap(), vec![b.clone()]);
    assert_eq!(token_of(&store, &b.id).await, "token-b");
}

#[tokio::test]
async fn token_is_not_stored_in_plaintext() {
    const TOKEN: &str = "kandji-token-PLAINTEXT-3f9a1c7e-do-not-store";
    const NAME: &str = "plaintext-probe-tenant";
    let db = TestDb::sqlite();
    let (cipher, key) = TokenCipher::generate();
    let store = db.open(&cipher).await.unwrap();
    let c = add(&store, NAME, TOKEN).await;
    let updated = ConnectionPatch {
        api_token: Some(SecretString::from(format!("{TOKEN}-2"))),
        ..Default::default()
    };
    let c2 = add(&store, "other", TOKEN).await;
    store.update_connection(&c2.id, updated).await.unwrap();

    // While open (the rows may still be only in the WAL).
    let bytes = db.sqlite_bytes();
    assert!(contains(&bytes, NAME), "the probe must see the row");
    assert!(!contains(&bytes, TOKEN));
    assert!(!contains(&bytes, &key));

    // After a checkpoint, and after close.
    let raw = db.raw_sqlite().await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    close(store).await;
    let bytes = db.sqlite_bytes();
    assert!(contains(&bytes, NAME), "the probe must see the row");
    assert!(contains(&bytes, &c.id));
    assert!(!contains(&bytes, TOKEN));
    assert!(!contains(&bytes, &key));

    // And it still decrypts.
    let store = db.open(&cipher).await.unwrap();
    assert_eq!(token_of(&store, &c.id).await, TOKEN);
    assert_eq!(token_of(&store, &c2.id).await, format!("{TOKEN}-2"));
}

both!(opening_with_a_different_key_fails);
async fn opening_with_a_different_key_fails(db: TestDb) {
    let (right, wrong) = (new_key(), new_key());

    let store = db.open(&right).await.unwrap();
    let c = add(&store, "acme", "token-a").await;

    // Even while the first store is still open.
    let err = assert_wrong_key(&db, &wrong, "wrong key must fail").await;
    assert_eq!(
        err.to_string(),
        "the secret key does not match the one the stored tokens were encrypted with"
    );

    close(store).await;
    assert_wrong_key(&db, &wrong, "wrong key must fail").await;

    // The failed opens changed nothing.
    let store = db.open(&right).await.unwrap();
    assert_eq!(token_of(&store, &c.id).await, "token-a");
}

both!(wrong_key_is_detected_on_a_fresh_database_too);
async fn wrong_key_is_detected_on_a_fresh_database_too(db: TestDb) {
    // A database with no connections still remembers its key.
    let (right, wrong) = (new_key(), new_key());
    db.open(&right).await.unwrap().close().await;
    assert_wrong_key(&db, &wrong, "wrong key must fail").await;
}

both!(wrong_key_is_detected_when_the_key_check_row_is_missing);
async fn wrong_key_is_detected_when_the_key_check_row_is_missing(db: TestDb) {
    let (right, wrong) = (new_key(), new_key());
    let store = db.open(&right).await.unwrap();
    add(&store, "acme", "token-a").await;
    close(store).await;

    db.exec("DELETE FROM meta", "DELETE FROM meta", &[]).await;

    assert_wrong_key(&db, &wrong, "wrong key must fail").await;
    // The right key restores the row.
    db.open(&right).await.unwrap().close().await;
    assert_wrong_key(&db, &wrong, "wrong key must fail").await;
}

both!(rotate_secret_key_then_reopen_with_new_key);
async fn rotate_secret_key_then_reopen_with_new_key(db: TestDb) {
    let old = new_key();
    let (new, new_b64) = TokenCipher::generate();

    let store = db.open(&old).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = add(&store, &format!("tenant{i}"), &format!("token-{i}")).await;
        ids.push(c.id);
    }
    let before = store.list_connections().await.unwrap();

    assert_eq!(store.rotate_secret_key(&new).await.unwrap(), 5);
    // The same store keeps working, now under the new key.
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(token_of(&store, id).await, format!("token-{i}"));
    }
    let c = add(&store, "after", "token-after").await;
    // Rotation does not count as an edit of the connections.
    assert_eq!(
        store.list_connections().await.unwrap()[..5],
        before[..],
        "rotation must not touch other columns"
    );
    close(store).await;

    assert_wrong_key(&db, &old, "old key must now fail").await;

    // Re-open with the new key, parsed from its base64 as a deployment would.
    let store = db
        .open(&TokenCipher::from_base64(&new_b64).unwrap())
        .await
        .unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(token_of(&store, id).await, format!("token-{i}"));
    }
    assert_eq!(token_of(&store, &c.id).await, "token-after");
}

both!(rotating_an_empty_store_counts_zero);
async fn rotating_an_empty_store_counts_zero(db: TestDb) {
    let (old, new) = (new_key(), new_key());
    let store = db.open(&old).await.unwrap();
    assert_eq!(store.rotate_secret_key(&new).await.unwrap(), 0);
    close(store).await;
    db.open(&new).await.unwrap();
}

both!(ciphertext_copied_onto_another_row_fails_to_decrypt);
async fn ciphertext_copied_onto_another_row_fails_to_decrypt(db: TestDb) {
    let (cipher, new) = (new_key(), new_key());
    let store = db.open(&cipher).await.unwrap();
    let a = add(&store, "acme", "token-a").await;
    let b = add(&store, "globex", "token-b").await;

    db.exec(
        "UPDATE connections SET token_ciphertext = \
         (SELECT token_ciphertext FROM connections WHERE id = ?) WHERE id = ?",
        "UPDATE connections SET token_ciphertext = \
         (SELECT token_ciphertext FROM connections WHERE id = $1) WHERE id = $2",
        &[&a.id, &b.id],
    )
    .await;

    let err = store.connection_token(&b.id).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Cipher(CipherError::DecryptFailed)),
        "{err:?}"
    );
    assert!(!err.to_string().contains("token-a"));
    assert_eq!(token_of(&store, &a.id).await, "token-a");

    // A rotation that meets an unreadable token changes nothing.
    assert!(matches!(
        store.rotate_secret_key(&new).await,
        Err(StoreError::Cipher(CipherError::DecryptFailed))
    ));
    assert_eq!(token_of(&store, &a.id).await, "token-a");
    close(store).await;
    assert_wrong_key(&db, &new, "rotation was rolled back").await;
    db.open(&cipher).await.unwrap();
}

#[tokio::test]
async fn debug_output_never_shows_token_or_key() {
    const TOKEN: &str = "secret-kandji-token-7d1e";
    let (cipher, key) = TokenCipher::generate();

    let new = new_conn("acme", TOKEN);
    let dbg = format!("{new:?} {new:#?}");
    assert!(!dbg.contains(TOKEN), "{dbg}");
    assert!(dbg.contains("acme"));

    let patch = ConnectionPatch {
        api_token: Some(SecretString::from(TOKEN)),
        ..Default::default()
    };
    let dbg = format!("{patch:?}");
    assert!(!dbg.contains(TOKEN), "{dbg}");

    let dbg = format!("{cipher:?} {cipher:#?}");
    assert_eq!(format!("{cipher:?}"), "TokenCipher(..)");
    assert!(!dbg.contains(&key));

    let store = store::open("sqlite::memory:", cipher.clone())
        .await
        .unwrap();
    let c = store.create_connection(new).await.unwrap();
    let dbg = format!("{c:?} {c:#?} {}", serde_json::to_string(&c).unwrap());
    assert!(!dbg.contains(TOKEN), "{dbg}");
    assert!(!dbg.contains(&key));
    let sealed = cipher.encrypt(&c.id, TOKEN);
    assert!(!sealed.contains(TOKEN));
    let token = store.connection_token(&c.id).await.unwrap().unwrap();
    assert!(!format!("{token:?}").contains(TOKEN));
    assert_eq!(token.expose_secret(), TOKEN);
}

#[test]
fn key_errors_say_what_is_wrong_without_echoing_the_key() {
    let bad = "Zm9vYmFy-not-base64-SECRETISH";
    let err = TokenCipher::from_base64(bad).unwrap_err();
    assert_eq!(err, CipherError::KeyNotBase64);
    let msg = err.to_string();
    assert!(msg.contains("base64"), "{msg}");
    assert!(!msg.contains("SECRETISH") && !msg.contains("Zm9v"), "{msg}");

    let short = "c2hvcnQta2V5LXNob3J0LWtleQ=="; // "short-key-short-key", 19 bytes
    let err = TokenCipher::from_base64(short).unwrap_err();
    assert_eq!(err, CipherError::KeyWrongLength(19));
    let msg = err.to_string();
    assert!(msg.contains("32 bytes") && msg.contains("19"), "{msg}");
    assert!(!msg.contains(short), "{msg}");
    assert!(!format!("{err:?}").contains(short));

    let (_, key) = TokenCipher::generate();
    assert_eq!(key.len(), 44);
    TokenCipher::from_base64(&key).unwrap();
}

#[tokio::test]
async fn in_memory_store_works() {
    let cipher = new_key();
    let store = store::open("sqlite::memory:", cipher).await.unwrap();
    let c = add(&store, "acme", "token-a").await;
    // Several round trips, so more than one pool checkout.
    for _ in 0..3 {
        assert_eq!(store.list_connections().await.unwrap(), vec![c.clone()]);
    }
    assert_eq!(token_of(&store, &c.id).await, "token-a");
    let new = new_key();
    assert_eq!(store.rotate_secret_key(&new).await.unwrap(), 1);
    assert_eq!(token_of(&store, &c.id).await, "token-a");
}

both!(concurrent_writes_during_rotation_stay_readable);
async fn concurrent_writes_during_rotation_stay_readable(db: TestDb) {
    let (old, new) = (new_key(), new_key());
    let store = db.open(&old).await.unwrap();

    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            add(&store, &format!("t{i}"), &format!("token-{i}")).await
        }));
    }
    let rotated = store.rotate_secret_key(&new).await.unwrap();
    assert!(rotated <= 20);
    let mut created = Vec::new();
    for t in tasks {
        created.push(t.await.unwrap());
    }
    close(store).await;

    let store = db.open(&new).await.unwrap();
    for c in &created {
        let i = c.name.trim_start_matches('t');
        assert_eq!(token_of(&store, &c.id).await, format!("token-{i}"));
    }
}

#[tokio::test]
async fn unsupported_urls() {
    let cipher = new_key();
    // Nothing listens on port 1: the error must not echo the password.
    let err = store::open("postgres://u:hunter2@127.0.0.1:1/db", cipher.clone())
        .await
        .err()
        .unwrap();
    assert!(matches!(&err, StoreError::Db(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"));
    let err = store::open("mysql://u:hunter2@localhost/db", cipher)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::InvalidUrl(_)));
    assert!(!err.to_string().contains("hunter2"));
}

fn device(serial: &str, at: chrono::DateTime<chrono::Utc>) -> store::InventoryDevice {
    store::InventoryDevice {
        serial_key: serial.to_string(),
        device_id: format!("6f1c3a7e-2d4b-4c1e-9a8f-{serial:0>12}").to_lowercase(),
        platform: Some("Mac".into()),
        os_version: Some("14.5".into()),
        blueprint_name: None,
        user_email: Some("ana@example.com".into()),
        last_check_in: Some(at - chrono::Duration::minutes(3)),
        mdm_enabled: true,
        agent_installed: false,
        is_missing: false,
        is_removed: serial.ends_with('7'),
        last_seen: at,
    }
}

both!(inventory_round_trip);
async fn inventory_round_trip(db: TestDb) {
    use chrono::SubsecRound;
    let cipher = new_key();
    let store = db.open(&cipher).await.unwrap();
    let conn = add(&store, "acme", "token-a").await;
    assert!(!conn.inventory_sync, "off until turned on");
    let on = ConnectionPatch {
        inventory_sync: Some(true),
        ..Default::default()
    };
    let conn = store
        .update_connection(&conn.id, on)
        .await
        .unwrap()
        .unwrap();
    assert!(conn.inventory_sync);
    assert!(
        store
            .get_connection(&conn.id)
            .await
            .unwrap()
            .unwrap()
            .inventory_sync
    );

    // More rows than one multi-row INSERT takes, read back in key order in batches.
    let at = chrono::Utc::now().trunc_subsecs(6);
    let devices: Vec<_> = (0..1_200)
        .map(|i| device(&format!("S{i:05}"), at))
        .collect();
    store
        .inventory_apply(&conn.id, &devices, &[])
        .await
        .unwrap();
    let mut read = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .inventory_devices(&conn.id, after.as_deref(), 500)
            .await
            .unwrap();
        after = page.last().map(|d| d.serial_key.clone());
        let done = page.len() < 500;
        read.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(read, devices);

    // A change and a removal, in one call.
    let mut changed = device("S00003", at);
    changed.is_missing = true;
    changed.blueprint_name = Some("All Staff".into());
    store
        .inventory_apply(&conn.id, std::slice::from_ref(&changed), &["S00004".into()])
        .await
        .unwrap();
    let first = store.inventory_devices(&conn.id, None, 5).await.unwrap();
    let keys: Vec<&str> = first.iter().map(|d| d.serial_key.as_str()).collect();
    assert_eq!(keys, ["S00000", "S00001", "S00002", "S00003", "S00005"]);
    assert_eq!(first[3], changed);

    assert!(store.inventory_last_sync(&conn.id).await.unwrap().is_none());
    let sync = store::InventorySync {
        started_at: at,
        finished_at: at + chrono::Duration::milliseconds(4_321),
        devices: 1_199,
        kandji_calls: 5,
    };
    store.inventory_sync_done(&conn.id, &sync).await.unwrap();
    assert_eq!(
        store.inventory_last_sync(&conn.id).await.unwrap(),
        Some(sync)
    );

    store.inventory_clear(&conn.id).await.unwrap();
    assert!(
        store
            .inventory_devices(&conn.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.inventory_last_sync(&conn.id).await.unwrap().is_none());

    // Deleting the connection takes its inventory with it.
    store
        .inventory_apply(&conn.id, &devices[..3], &[])
        .await
        .unwrap();
    assert!(store.delete_connection(&conn.id).await.unwrap());
    assert!(
        store
            .inventory_devices(&conn.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

both!(inventory_sync_lease);
async fn inventory_sync_lease(db: TestDb) {
    use std::time::Duration;
    let cipher = new_key();
    let a = db.open(&cipher).await.unwrap();
    let b = db.open(&cipher).await.unwrap();
    let c = add(&a, "lease", "tok").await;
    let long = Duration::from_secs(60);
    if db.pg.is_none() {
        // One process per SQLite file: the lease is always this process's.
        assert!(a.inventory_lease(&c.id, long).await.unwrap());
        assert!(b.inventory_lease(&c.id, long).await.unwrap());
        return;
    }
    // Two replicas: one holder at a time; the holder renews; a release hands over at once.
    assert!(a.inventory_lease(&c.id, long).await.unwrap());
    assert!(!b.inventory_lease(&c.id, long).await.unwrap());
    assert!(a.inventory_lease(&c.id, long).await.unwrap());
    b.inventory_lease_release(&c.id).await.unwrap(); // not B's: changes nothing
    assert!(!b.inventory_lease(&c.id, long).await.unwrap());
    a.inventory_lease_release(&c.id).await.unwrap();
    assert!(b.inventory_lease(&c.id, long).await.unwrap());
    assert!(!a.inventory_lease(&c.id, long).await.unwrap());
    // A lease not renewed lapses, and the other replica takes it.
    b.inventory_lease_release(&c.id).await.unwrap();
    assert!(
        a.inventory_lease(&c.id, Duration::from_millis(200))
            .await
            .unwrap()
    );
    assert!(!b.inventory_lease(&c.id, long).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(b.inventory_lease(&c.id, long).await.unwrap());
}
