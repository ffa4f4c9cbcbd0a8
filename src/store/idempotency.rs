//! Idempotency keys of card invocations: the first answer, encrypted, replayed to a repeat.

use chrono::{DateTime, Utc};

use super::StoreError;

/// The outcome of [`IdempotencyStore::idempotency_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key was free and is now held by this request.
    Claimed,
    /// The same request was answered before: replay this.
    Done { status: u16, response: String },
    /// The same request is still in flight.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
}

/// Idempotency keys, scoped by caller; answers are encrypted (they may carry a PIN).
#[async_trait::async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims an idempotency key for a request. Returns what is already there, if anything
    /// (records older than `not_before` are deleted first and do not count).
    async fn idempotency_claim(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        not_before: DateTime<Utc>,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Stores the answer of a claimed key (encrypted).
    async fn idempotency_complete(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        response: &str,
    ) -> Result<(), StoreError>;

    /// Releases a claim whose request never reached Kandji, so it can be tried again.
    async fn idempotency_release(&self, scope: &str, key: &str) -> Result<(), StoreError>;
}

/// The associated data an answer is sealed with.
pub(super) fn aad(scope: &str, key: &str) -> String {
    format!("idem:{scope}:{key}")
}

/// `impl IdempotencyStore` for `SqlStore<$db>` (see `sql.rs` for why a macro).
macro_rules! idempotency_store {
    ($db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use secrecy::ExposeSecret;

            use $crate::store::idempotency::{IdempotencyClaim, IdempotencyStore, aad};
            use $crate::store::sql::{SqlStore, Ts};
            use $crate::store::{StoreError, now};

            #[async_trait::async_trait]
            impl IdempotencyStore for SqlStore<$db> {
                async fn idempotency_claim(
                    &self,
                    scope: &str,
                    key: &str,
                    request_hash: &str,
                    not_before: DateTime<Utc>,
                ) -> Result<IdempotencyClaim, StoreError> {
                    let cipher = self.cipher.read().await;
                    let mut tx = self.begin_write().await?;
                    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                        .bind(Ts(not_before))
                        .execute(&mut *tx)
                        .await?;
                    // Insert first: of two replicas claiming the same key at once, exactly one
                    // inserts.
                    let inserted = sqlx::query(
                        "INSERT INTO idempotency_keys (scope, key, request_hash, \
                         created_at) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (scope, key) DO NOTHING",
                    )
                    .bind(scope)
                    .bind(key)
                    .bind(request_hash)
                    .bind(Ts(now()))
                    .execute(&mut *tx)
                    .await?;
                    let claim = if inserted.rows_affected() == 1 {
                        IdempotencyClaim::Claimed
                    } else {
                        let row: Option<(String, Option<i32>, Option<String>)> = sqlx::query_as(
                            "SELECT request_hash, status, response \
                             FROM idempotency_keys \
                             WHERE scope = $1 AND key = $2",
                        )
                        .bind(scope)
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                        match row {
                            Some((hash, _, _)) if hash != request_hash => {
                                IdempotencyClaim::Mismatch
                            }
                            Some((_, Some(status), Some(response))) => {
                                let plain = cipher.decrypt(&aad(scope, key), &response)?;
                                IdempotencyClaim::Done {
                                    status: status as u16,
                                    response: plain.expose_secret().to_string(),
                                }
                            }
                            // In flight, or released between our insert and select: try again
                            // later.
                            _ => IdempotencyClaim::InFlight,
                        }
                    };
                    tx.commit().await?;
                    Ok(claim)
                }

                async fn idempotency_complete(
                    &self,
                    scope: &str,
                    key: &str,
                    status: u16,
                    response: &str,
                ) -> Result<(), StoreError> {
                    let cipher = self.cipher.read().await;
                    let sealed = cipher.encrypt(&aad(scope, key), response);
                    sqlx::query(
                        "UPDATE idempotency_keys \
                         SET status = $1, response = $2 \
                         WHERE scope = $3 AND key = $4",
                    )
                    .bind(i32::from(status))
                    .bind(sealed)
                    .bind(scope)
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn idempotency_release(
                    &self,
                    scope: &str,
                    key: &str,
                ) -> Result<(), StoreError> {
                    sqlx::query(
                        "DELETE \
                         FROM idempotency_keys \
                         WHERE scope = $1 AND key = $2 AND status IS NULL",
                    )
                    .bind(scope)
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }
            }
        };
    };
}
pub(super) use idempotency_store;
