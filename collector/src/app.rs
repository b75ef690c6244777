//! The assembled collector: build from a [`Config`], report the bound address, serve until told
//! to stop.
//!
//! Building and serving are separate steps (as linkerd's `Config::build` → `App`) so that a
//! caller, the binary or a test, learns the bound address before the first request, and so that
//! every start-up failure (unreadable target list, unusable store, port taken) happens before
//! anything is served. Each part is made by its own module; the binary's `main` lists the steps
//! (config, store, metrics, helper trust) and [`App::bind_parts`] is the last: the port.
//!
//! Connections are the [`server`](crate::server)'s: HTTPS when the config names a certificate,
//! caps, timeouts and the client address rules. Shutdown drains: the listener stops accepting,
//! in-flight requests finish (an ingest that was answered `200` had committed before the answer),
//! then the store is closed. A drain that takes
//! longer than [`DRAIN_TIMEOUT`] (a stalled export) is cut short; the store still closes after the
//! writes in progress, so nothing acknowledged is lost.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use vantage_measurement::wire::registration::{self as key_registration, RegistrationChallenge};
use vantage_measurement::wire::target_list;

use crate::aggregation;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::fleet::Fleet;
use crate::geoip::{GeoIp, GeoIpError};
use crate::helper::{self, Helper};
use crate::ingest::BatchSlots;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::published::{ListSlot, PublishedList, PublishedListError};
use crate::registration::{self, Challenge};
use crate::server::tls::{self, LoadedCert};
use crate::server::{CertSlot, Server, TlsError};
use crate::state::AppState;
use crate::store::{self, Store, StoreError};
use crate::trust::{TrustPolicy, load_trusted_keys};
use crate::{events, export, forget, ingest, ops, published, query, status};

/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the collector could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is unusable (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The signed target list does not verify or breaks a rule (exit 64).
    #[error(transparent)]
    SignedList(#[from] PublishedListError),
    /// A GeoIP database can't be used (exit 64).
    #[error(transparent)]
    GeoIp(#[from] GeoIpError),
    /// The certificate or key can't be served (exit 64).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The publication key can't be read or made (exit 64).
    #[error("publication key: {0}")]
    PublicationKey(String),
    /// The metric registry refused a family (a bug in this crate).
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl BuildError {
    /// Is this the operator's configuration (as opposed to the environment)?
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_) | Self::SignedList(_) | Self::GeoIp(_) | Self::Tls(_) | Self::PublicationKey(_))
    }
}

/// What the operator publishes and looks up with, read from the files the config names: the
/// signed list (if any), the names that may be `target` labels (the list's `labelled`, or the
/// older `--targets` file's names), the GeoIP databases, the certificate served and the trusted
/// key ids.
#[derive(Debug, Default)]
pub struct Published {
    /// The signed list served at `GET /api/v1/targets`.
    pub list: Option<PublishedList>,
    /// The `target` label names.
    pub labels: std::collections::HashSet<String>,
    /// The GeoIP databases (none: nothing is looked up).
    pub geoip: GeoIp,
    /// The certificate and key to serve HTTPS with (none: plain HTTP).
    pub tls: Option<LoadedCert>,
    /// The key ids of `--trusted-keys` (none: every key earns trust).
    pub trusted_keys: std::collections::HashSet<String>,
}

impl Published {
    /// Read and check every file the config names; any problem is a configuration error.
    pub fn load(config: &Config) -> Result<Published, BuildError> {
        let mut labels = config.published_targets()?;
        let list = config.signed_list.as_deref().map(|path| PublishedList::load(path, chrono::Utc::now())).transpose()?;
        if let Some(list) = &list {
            labels = list.labelled.clone();
        }
        let geoip = GeoIp::open(config.geoip_country.as_deref(), config.geoip_asn.as_deref())?;
        let tls = tls::pair(config.tls_cert.as_deref(), config.tls_key.as_deref())?
            .map(|(cert, key)| tls::load_pair(cert, key))
            .transpose()?;
        let trusted_keys = config.trusted_keys.as_deref().map(load_trusted_keys).transpose()?.unwrap_or_default();
        Ok(Published { list, labels, geoip, tls, trusted_keys })
    }
}

/// Why serving ended in error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store did not close cleanly.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A collector bound to its port, ready to serve.
#[derive(Debug)]
pub struct App {
    server: Server,
    local_addr: SocketAddr,
    store: Arc<dyn Store>,
    fleet: Arc<Fleet>,
    list: Arc<ListSlot>,
    cert: Option<Arc<CertSlot>>,
    /// `--retain-days`, and the clock retention measures from.
    retention: Option<(u32, Arc<dyn Clock>)>,
    /// The key closed days' manifests are signed with, and the clock that closes days.
    publication: (Arc<ed25519_dalek::SigningKey>, Arc<dyn Clock>),
}

impl App {
    /// Build the collector with the store `config` names (PostgreSQL with `database`, else SQLite
    /// in `data_dir`) and bind `config.listen`.
    pub async fn bind(config: Config) -> Result<App, BuildError> {
        Self::bind_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`App::bind`] with another clock: tests move a
    /// [`ManualClock`](crate::clock::ManualClock) to let keys earn trust in seconds.
    pub async fn bind_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<App, BuildError> {
        let store = store::open(&config.store_location()?).await?;
        Self::build(config, store, clock).await
    }

    /// Build the collector on a store opened by the caller (another database, a test double):
    /// the binary's start-up steps after the store.
    pub async fn bind_with_store(config: Config, store: Arc<dyn Store>) -> Result<App, BuildError> {
        Self::build(config, store, Arc::new(SystemClock)).await
    }

    async fn build(config: Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<App, BuildError> {
        let published = Published::load(&config)?;
        let metrics = Arc::new(Metrics::new(published.labels.clone(), config.max_series)?);
        let helper = Helper::new(config.helper_trust()?, config.danger_helper_allow_private);
        Self::bind_parts(config, store, metrics, helper, published, clock).await
    }

    /// The last step of start-up: seed the metrics from the store, wire the parts into the
    /// router and bind `config.listen`. `clock` is "now" for ingest, trust, the fleet and the
    /// status page (the binary's is the [`SystemClock`]).
    pub async fn bind_parts(
        config: Config,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        helper: Helper,
        published: Published,
        clock: Arc<dyn Clock>,
    ) -> Result<App, BuildError> {
        let settings = config.connection_settings()?;
        let cert = match (published.tls, config.tls_cert.clone(), config.tls_key.clone()) {
            (Some(loaded), Some(cert), Some(key)) => Some(Arc::new(CertSlot::new(cert, key, loaded, Arc::clone(&metrics)))),
            (None, None, None) => None,
            // `Published::load` reads exactly the files the config names.
            _ => return Err(TlsError::Half.into()),
        };
        let tls = cert.as_ref().map(CertSlot::server_config).transpose()?;
        metrics.set_stored(store.count().await?);
        let challenge = RegistrationChallenge {
            salt: store.registration_salt().await?,
            difficulty_bits: config.registration_difficulty_bits,
        };
        let trust = Arc::new(TrustPolicy {
            min_measurements: config.trust_min_measurements,
            min_days: config.trust_min_days,
            anchors: published.trusted_keys,
        });
        tracing::info!(
            min_measurements = trust.min_measurements,
            min_days = trust.min_days,
            anchors = trust.anchors.len(),
            difficulty_bits = challenge.difficulty_bits,
            "probe keys count once registered and trusted"
        );
        if let Some(list) = &published.list {
            tracing::info!(version = list.version, signer = %list.signer, labelled = list.labelled.len(), "serving the signed target list");
        }
        if published.geoip.is_enabled() {
            tracing::info!(geoip = ?published.geoip, "GeoIP databases loaded: batches get a collector-observed location");
        }
        let retention = config.retain_days.map(|days| (days, Arc::clone(&clock)));
        let key_path = export::key::path(config.publication_key.as_deref(), &config.data_dir);
        let publication_key =
            Arc::new(export::key::load_or_create(&key_path).map_err(|e| BuildError::PublicationKey(format!("{e:#}")))?);
        let publication = (Arc::clone(&publication_key), Arc::clone(&clock));
        let list = Arc::new(ListSlot::new(config.signed_list.clone(), published.list, Arc::clone(&metrics)));
        let fleet = Arc::new(Fleet::new(
            Arc::clone(&store),
            Arc::clone(&metrics),
            Arc::clone(&trust),
            Arc::clone(&clock),
            config.window,
            config.asn_min_probes,
            config.fleet_refresh,
        ));
        let limiter = Arc::new(Limiter::new(&config.limits, Arc::clone(&metrics)));
        let state = AppState {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            helper: Arc::new(helper),
            batch_slots: BatchSlots::default(),
            fleet: Arc::clone(&fleet),
            status_page: Arc::default(),
            list: Arc::clone(&list),
            geoip: Arc::new(published.geoip),
            honoured: Arc::default(),
            limiter,
            clock,
            trust,
            challenge: Arc::new(Challenge(challenge)),
            publication_key: Arc::new(export::http::PublicationKey(publication_key.verifying_key())),
        };
        let listener =
            TcpListener::bind(config.listen).await.map_err(|source| BuildError::Bind { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| BuildError::Bind { addr: config.listen, source })?;
        if tls.is_none() && !config.listen.ip().is_loopback() && settings.trusted_proxies.is_empty() {
            tracing::warn!(
                "serving plain HTTP on a non-loopback address: probes refuse a plaintext collector outside a lab; \
                 give --tls-cert/--tls-key, or terminate TLS in a proxy named by --trusted-proxy"
            );
        }
        let server = Server::new(listener, router(state), settings, tls, metrics);
        Ok(App { server, local_addr, store, fleet, list, cert, retention, publication })
    }

    /// `https` when serving TLS, else `http`: the scheme of the collector's URL.
    pub fn scheme(&self) -> &'static str {
        if self.cert.is_some() { "https" } else { "http" }
    }

    /// The certificate being served (with `--tls-cert`), to re-read it (as SIGHUP does).
    pub fn certificate(&self) -> Option<Arc<CertSlot>> {
        self.cert.clone()
    }

    /// The address actually bound (the port the OS picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The signed list being served, to re-read it (as SIGHUP does) or look at it.
    pub fn signed_list(&self) -> Arc<ListSlot> {
        Arc::clone(&self.list)
    }

    /// Serve until `shutdown` completes, drain in-flight requests, then close the store. The
    /// fleet gauges are refreshed in the background meanwhile (first right away).
    pub async fn serve<F>(self, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let refresher = tokio::spawn(Arc::clone(&self.fleet).run());
        let rereader = tokio::spawn(Arc::clone(&self.list).reload_on_hangup());
        let cert_rereader = self.cert.clone().map(|cert| tokio::spawn(cert.reload_on_hangup()));
        let retention = self.retention.clone().map(|(days, clock)| {
            tokio::spawn(crate::retention::run(Arc::clone(&self.store), clock, days, crate::retention::RETENTION_PERIOD))
        });
        let (key, clock) = self.publication.clone();
        let publisher = tokio::spawn(export::publish::run(Arc::clone(&self.store), key, clock, export::publish::PUBLISH_PERIOD));
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            let _ = started_tx.send(());
        };
        let server = self.server.serve(signal);
        let drain_deadline = async move {
            match started_rx.await {
                Ok(()) => tokio::time::sleep(DRAIN_TIMEOUT).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = server => {}
            () = drain_deadline => tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; closing anyway"),
        }
        refresher.abort();
        publisher.abort();
        rereader.abort();
        if let Some(task) = cert_rereader {
            task.abort();
        }
        if let Some(task) = retention {
            task.abort();
        }
        let closed = self.store.close().await;
        tracing::info!("store closed");
        closed.map_err(ServeError::from)
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (systemd, Kubernetes).
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status::get_status))
        .route("/api/v1/measurements", post(ingest::post_measurements).get(query::get_measurements))
        .route("/api/v1/events", get(events::api::get_events))
        .route("/api/v1/aggregation", get(aggregation::get_aggregation))
        .route(target_list::LIST_PATH, get(published::get_targets))
        .route(forget::FORGET_PATH, post(forget::post_forget).layer(DefaultBodyLimit::max(forget::MAX_REQUEST_BYTES)))
        .route("/api/v1/control", post(helper::post_control).layer(DefaultBodyLimit::max(helper::MAX_REQUEST_BYTES)))
        .route(key_registration::CHALLENGE_PATH, get(registration::get_challenge))
        .route(
            key_registration::REGISTER_PATH,
            post(registration::post_key).layer(DefaultBodyLimit::max(registration::MAX_REQUEST_BYTES)),
        )
        .route("/api/v1/exports", get(export::http::get_exports))
        .route("/api/v1/exports/latest", get(export::http::get_latest))
        .route("/api/v1/exports/{day}/{file}", get(export::http::get_manifest))
        .route("/api/v1/exports/{day}/{cc}/{test}/{file}", get(export::http::get_file))
        .route("/api/v1/publication-key", get(export::http::get_publication_key))
        .route("/metrics", get(ops::get_metrics))
        .route("/healthz", get(ops::healthz))
        .with_state(state)
}
