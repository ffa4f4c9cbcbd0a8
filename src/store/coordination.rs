//! What several replicas sharing one store need from it: who runs a stream, who syncs an
//! inventory, and one request budget per connection.
//!
//! No method has a default. Each backend states what it does: PostgreSQL coordinates
//! replicas; SQLite serves one process and says so method by method (every lease is granted,
//! every request is within budget). A new backend that forgets one fails to compile rather
//! than quietly let replicas overrun a tenant's budget.

use std::time::Duration;

use super::StoreError;

/// The outcome of [`Coordination::budget_take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetTake {
    /// One request's worth of budget was taken.
    Granted,
    /// Nothing was taken; budget is available again after this long.
    Wait(Duration),
}

/// Coordination of the replicas sharing a store.
#[async_trait::async_trait]
pub trait Coordination: Send + Sync {
    /// Whether several replicas may share this store: then streams are leased and swept for
    /// (see [`Coordination::claim_streams`]) and the Kandji client takes each connection's
    /// request budget with [`Coordination::budget_take`].
    fn is_shared(&self) -> bool;

    /// How long a stream's lease lasts without a checkpoint renewing it. Set once at
    /// start-up, from the stream configuration.
    fn set_stream_lease(&self, lease: Duration);

    /// Takes over running streams that no live replica holds (never leased, or the lease has
    /// expired), at most `limit`, and returns their ids, oldest first; this process then holds
    /// their leases.
    async fn claim_streams(&self, limit: u32) -> Result<Vec<String>, StoreError>;

    /// Gives up this process's lease on a stream (at shutdown, after its last checkpoint) so
    /// another replica can resume it at once.
    async fn release_stream(&self, id: &str) -> Result<(), StoreError>;

    /// GCRA on the connection's shared budget row: a request is granted when the row's
    /// theoretical arrival time is at most `tolerance` ahead of now, and moves it on by
    /// `interval`. Atomic across replicas.
    async fn budget_take(
        &self,
        connection_id: &str,
        interval: Duration,
        tolerance: Duration,
    ) -> Result<BudgetTake, StoreError>;

    /// Takes or renews, for `ttl`, the right to sync this connection's inventory from Kandji;
    /// `false` while another replica holds it (that replica's syncs are then loaded from the
    /// store).
    async fn inventory_lease(&self, connection: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives the lease up (at shutdown or when the sync is turned off), if this replica holds it.
    async fn inventory_lease_release(&self, connection: &str) -> Result<(), StoreError>;

    /// Takes or renews, for `ttl`, the right to poll this connection's audit log for events;
    /// `false` while another replica holds it.
    async fn events_lease(&self, connection: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives the events lease up (at shutdown), if this replica holds it.
    async fn events_lease_release(&self, connection: &str) -> Result<(), StoreError>;
}
