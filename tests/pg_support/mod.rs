//! A fresh PostgreSQL schema per test, when KANDJI_CONNECTOR_TEST_POSTGRES_URL is set.
//!
//! Each test gets `t_<uuid>` and a URL whose `search_path` points at it, so parallel tests
//! and parallel runs never collide; the schema is dropped when the value is dropped.
#![allow(dead_code)]

pub const ENV: &str = "KANDJI_CONNECTOR_TEST_POSTGRES_URL";

pub struct PgSchema {
    base: String,
    pub schema: String,
}

impl PgSchema {
    /// `None` (after printing why) when the variable is not set: the caller returns, passing.
    pub async fn new(test: &str) -> Option<Self> {
        let Ok(base) = std::env::var(ENV) else {
            eprintln!("{test}: skipped: {ENV} not set");
            return None;
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("{ENV} is set but PostgreSQL is unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        Some(Self { base, schema })
    }

    /// The database URL for the store: the base URL with the schema as `search_path`.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base, self.schema)
    }

    /// A plain pool on the schema, for poking at rows directly.
    pub async fn raw(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url()).await.unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base.clone();
        let schema = self.schema.clone();
        // Drop may run inside a runtime: do the async clean-up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&pool)
                    .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}
