//! kandji-connector: hosts Okta-Workflows-style action cards for the Kandji API.
//!
//! [`build_state`] assembles the application from a [`config::Config`]; [`app`] is the router
//! that `main` and the tests share; [`serve`] runs it on an injected listener.

pub mod api;
pub mod catalog;
pub mod config;
pub mod console;
pub mod demo;
pub mod engine;
pub mod error;
pub mod events;
pub mod invocation;
pub mod kandji;
pub mod mcp;
pub mod retention;
pub mod simulator;
pub mod store;
pub mod streams;
pub mod telemetry;
pub mod trust;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use api::{App, AppState};

/// Loads the cards, opens the store (checking the secret key) and builds the Kandji client.
pub async fn build_state(config: config::Config) -> anyhow::Result<AppState> {
    // Before anything records: with metrics off no recorder is installed and recording is free.
    let metrics = config.metrics.enabled.then(telemetry::install);
    let catalog = catalog::Catalog::load(config.cards_dir.as_deref()).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("invalid card definitions:\n{}", lines.join("\n"))
    })?;
    let store = store::open(&config.database_url, config.cipher)
        .await
        .with_context(|| {
            format!(
                "cannot open the store at {}",
                config::redact_url(&config.database_url)
            )
        })?;
    let mut kandji = kandji::KandjiClient::new(config.kandji.clone())?;
    if store.is_shared() {
        kandji = kandji.with_shared_budget(store.clone());
    }
    let catalog = Arc::new(catalog);
    let tenants = kandji::TenantCache::new(store.clone());
    let streams = streams::Streams::new(
        config.streams.clone(),
        store.clone(),
        kandji.clone(),
        tenants.clone(),
        catalog.clone(),
    )?;
    let resumed = streams
        .resume_all()
        .await
        .context("cannot resume the running streams")?;
    if resumed > 0 {
        tracing::info!(streams = resumed, "resumed running streams");
    }
    let trust = trust::Trust::start(
        config.trust,
        store.clone(),
        kandji.clone(),
        tenants.clone(),
        catalog.clone(),
    )
    .await
    .context("cannot load the device inventories")?;
    let resolvers = engine::Resolvers::default().with("device_trust", trust.clone());
    streams.start_sweeper();
    let events = events::Events::start(
        config.events.clone(),
        &config.streams,
        store.clone(),
        kandji.clone(),
        tenants.clone(),
        catalog.clone(),
    )?;
    let retention = retention::Sweeper::start(store.clone(), config.retention);
    Ok(Arc::new(App {
        catalog,
        store,
        kandji,
        streams,
        trust,
        events,
        resolvers,
        inbound_limit: api::auth::InboundLimit::new(
            config.rate_limit_per_second,
            config.rate_limit_burst,
            &config.api_keys,
        ),
        api_keys: config.api_keys,
        max_concurrent_requests: config.max_concurrent_requests.max(1),
        tenants,
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.request_timeout,
        retention,
        mcp: config.mcp,
        metrics,
    }))
}

pub fn app(state: AppState) -> axum::Router {
    api::router(state)
}

/// Serves until `shutdown` resolves; then stops taking work, lets in-flight stream callbacks
/// finish and checkpoints every running stream (they resume at the next start).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let streams = state.streams.clone();
    let signal = async move {
        shutdown.await;
        streams.begin_shutdown();
    };
    let served = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(signal)
        .await;
    state.streams.shutdown().await;
    state.trust.shutdown().await;
    state.events.shutdown().await;
    served?;
    Ok(())
}

/// Serves `GET /metrics` alone, without a key, on its own listener
/// (`KANDJI_CONNECTOR_METRICS_LISTEN`), until the process ends.
pub async fn serve_metrics(state: AppState, listener: TcpListener) -> anyhow::Result<()> {
    axum::serve(listener, api::metrics_router(state)).await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
