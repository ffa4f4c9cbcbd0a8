//! Stores for tests: a SQLite file in a temporary directory, or a fresh PostgreSQL schema.
//!
//! A test that needs PostgreSQL has `needs_postgres` in its name (scripts/test.sh skips such
//! tests, and says so, when no PostgreSQL answers). It reads KANDJI_CONNECTOR_TEST_POSTGRES_URL
//! and panics without it: it never passes without having run.
//!
//! Each PostgreSQL test gets `t_<uuid>` and a URL whose `search_path` points at it, so parallel
//! tests and parallel runs never collide; the schema is dropped when the value is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kandji_connector::store::{self, Store, StoreError, TokenCipher};

pub const POSTGRES_URL: &str = "KANDJI_CONNECTOR_TEST_POSTGRES_URL";

/// A schema of its own on the test PostgreSQL server.
pub struct PgSchema {
    base: String,
    pub schema: String,
}

impl PgSchema {
    /// Panics, saying what to do, when KANDJI_CONNECTOR_TEST_POSTGRES_URL is unset or
    /// PostgreSQL does not answer there.
    pub async fn new() -> Self {
        let base = std::env::var(POSTGRES_URL).unwrap_or_else(|_| {
            panic!(
                "this test needs PostgreSQL and {POSTGRES_URL} is not set: run scripts/test.sh \
                 (it uses a PostgreSQL answering at 127.0.0.1:5432, or reports the tests that need \
                 one as skipped), or set it, e.g. {POSTGRES_URL}=postgres://postgres@127.0.0.1:5432/test"
            )
        });
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL} is set but PostgreSQL is unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        Self { base, schema }
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

    /// Every row of every table of the schema, as text.
    pub async fn text(&self) -> String {
        let pool = self.raw().await;
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(
            tables.len() > 3,
            "the scan sees the connector's tables: {tables:?}"
        );
        let mut text = String::new();
        for (table,) in tables {
            let (rows,): (Option<String>,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT string_agg(t::text, E'\\n') FROM \"{table}\" t"
            )))
            .fetch_one(&pool)
            .await
            .unwrap();
            text.push_str(&rows.unwrap_or_default());
            text.push('\n');
        }
        pool.close().await;
        text
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
                let Ok(pool) = sqlx::PgPool::connect(&base).await else {
                    return;
                };
                // The test's own runtime is blocked in this `join`: a connection of the app under
                // test may still hold locks in the schema (a transaction of a background task
                // that will never be polled again), and DROP would wait for it forever. End those
                // sessions first, and never wait long for a lock: a schema left behind is
                // harmless, a hung test is not.
                for _ in 0..5 {
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                         JOIN pg_class c ON c.oid = l.relation \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
                    )
                    .bind(&schema)
                    .execute(&pool)
                    .await;
                    let dropped = async {
                        let mut conn = pool.acquire().await?;
                        sqlx::query("SET lock_timeout = '2s'")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .execute(&mut *conn)
                        .await
                    };
                    if dropped.await.is_ok() {
                        break;
                    }
                }
                pool.close().await;
            });
        })
        .join();
    }
}

/// A test's store: a SQLite file in a temporary directory, or a PostgreSQL schema.
pub struct TestDb {
    _dir: tempfile::TempDir,
    /// The SQLite file (unused on PostgreSQL).
    pub path: PathBuf,
    pub pg: Option<PgSchema>,
}

/// `$body` with `$raw` a plain sqlx pool on the test's database, PostgreSQL or SQLite (the
/// body is written once and compiled for each), closed afterwards; its value is the body's.
macro_rules! with_raw {
    ($db:expr, |$raw:ident| $body:block) => {
        match &$db.pg {
            Some(pg) => {
                let $raw = pg.raw().await;
                let out = $body;
                $raw.close().await;
                out
            }
            None => {
                let $raw = $db.raw_sqlite().await;
                let out = $body;
                $raw.close().await;
                out
            }
        }
    };
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connector.db");
        TestDb {
            _dir: dir,
            path,
            pg: None,
        }
    }

    /// A fresh PostgreSQL schema (panics without PostgreSQL; see the module's docs).
    pub async fn postgres() -> Self {
        TestDb {
            pg: Some(PgSchema::new().await),
            ..Self::sqlite()
        }
    }

    pub fn url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url(),
            None => format!("sqlite://{}?mode=rwc", self.path.display()),
        }
    }

    pub async fn open(&self, cipher: &TokenCipher) -> Result<Arc<dyn Store>, StoreError> {
        store::open(&self.url(), cipher.clone()).await
    }

    /// Runs one statement directly (SQLite or PostgreSQL spelling), binding `args` as text.
    pub async fn exec(&self, sqlite: &'static str, postgres: &'static str, args: &[&str]) {
        let sql = if self.pg.is_some() { postgres } else { sqlite };
        with_raw!(self, |raw| {
            let mut q = sqlx::query(sql);
            for a in args {
                q = q.bind(a.to_string());
            }
            q.execute(&raw).await.unwrap();
        })
    }

    /// A count (`SELECT COUNT(*) …`, written with `$1` placeholders, which both backends read),
    /// binding `args` as text.
    pub async fn count(&self, sql: &'static str, args: &[&str]) -> i64 {
        with_raw!(self, |raw| {
            let mut q = sqlx::query_scalar::<_, i64>(sql);
            for a in args {
                q = q.bind(a.to_string());
            }
            q.fetch_one(&raw).await.unwrap()
        })
    }

    /// A plain sqlx pool on the SQLite file, for poking at rows directly.
    pub async fn raw_sqlite(&self) -> sqlx::SqlitePool {
        assert!(self.pg.is_none(), "a SQLite store");
        sqlx::SqlitePool::connect(&self.url()).await.unwrap()
    }

    /// The bytes of the SQLite file and of its -wal / -shm / -journal files, whichever exist.
    pub fn sqlite_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            if let Ok(b) = std::fs::read(Path::new(&p)) {
                out.extend_from_slice(&b);
            }
        }
        out
    }

    /// Everything the store holds, as text: the SQLite files' bytes, or every PostgreSQL row.
    pub async fn stored_text(&self) -> String {
        match &self.pg {
            None => String::from_utf8_lossy(&self.sqlite_bytes()).into_owned(),
            Some(pg) => pg.text().await,
        }
    }
}

/// Runs `$name(db: TestDb)` on SQLite (`$name::sqlite`) and on PostgreSQL
/// (`$name::needs_postgres`).
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::harness::TestDb::sqlite()).await;
            }

            #[tokio::test]
            async fn needs_postgres() {
                super::$name($crate::harness::TestDb::postgres().await).await;
            }
        }
    };
}
pub(crate) use both;
