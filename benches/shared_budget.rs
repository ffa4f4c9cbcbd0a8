//! Shared-budget benchmark (not part of the test suite): what the PostgreSQL budget row costs
//! each Kandji call (one atomic statement, one round trip), against the floor of any round trip
//! to the same server (`SELECT 1` on the same kind of pool), measured in the same run.
//!
//!     cargo bench --bench shared_budget            # 500 calls each
//!     cargo bench --bench shared_budget -- 2000    # another count
//!
//! PostgreSQL at KANDJI_CONNECTOR_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test);
//! the benchmark works in a schema of its own and drops it.

use std::time::{Duration, Instant};

use kandji_connector::store::{self, TokenCipher};

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let base = std::env::var("KANDJI_CONNECTOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(&base, n));
}

async fn run(base: &str, n: u32) {
    let admin = sqlx::PgPool::connect(base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base}: {e}"));
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");

    let (cipher, _) = TokenCipher::generate();
    let store = store::open(&url, cipher).await.unwrap();
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    // Warm both pools' connections first.
    for _ in 0..20 {
        take(&*store).await;
        sqlx::query("SELECT 1").execute(&raw).await.unwrap();
    }

    let started = Instant::now();
    for _ in 0..n {
        sqlx::query("SELECT 1").execute(&raw).await.unwrap();
    }
    let floor = started.elapsed() / n;
    let started = Instant::now();
    for _ in 0..n {
        take(&*store).await;
    }
    let per_call = started.elapsed() / n;

    println!("round trip (SELECT 1)           : {floor:>10.3?} per call (mean of {n})");
    println!("shared budget take (budget row) : {per_call:>10.3?} per call (mean of {n})");
    println!(
        "ratio                           : {:>10.2}x the bare round trip",
        per_call.as_secs_f64() / floor.as_secs_f64()
    );

    raw.close().await;
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
}

async fn take(store: &dyn store::Store) {
    store
        .budget_take(
            "conn_bench",
            Duration::from_micros(1),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
}
