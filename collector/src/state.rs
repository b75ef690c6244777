//! What the handlers share, and how each takes only its part.
//!
//! The router holds one [`AppState`]; a handler asks for the pieces it uses (`State<Arc<Metrics>>`,
//! `State<Arc<dyn Store>>`, …) through axum's [`FromRef`], never for the whole. So the handlers
//! depend only on the modules below them (store, metrics, fleet) and on their own types, this
//! module sits above them, and [`app`](crate::app) above it: no module imports one that imports it.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::clock::Clock;
use crate::export::http::PublicationKey;
use crate::fleet::Fleet;
use crate::forget::Honoured;
use crate::geoip::GeoIp;
use crate::helper::Helper;
use crate::ingest::BatchSlots;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::published::ListSlot;
use crate::registration::Challenge;
use crate::status::PageCache;
use crate::store::Store;
use crate::trust::TrustPolicy;

/// Every piece a handler may ask for.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) helper: Arc<Helper>,
    pub(crate) batch_slots: BatchSlots,
    pub(crate) fleet: Arc<Fleet>,
    pub(crate) status_page: Arc<PageCache>,
    pub(crate) list: Arc<ListSlot>,
    pub(crate) geoip: Arc<GeoIp>,
    pub(crate) honoured: Arc<Honoured>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) trust: Arc<TrustPolicy>,
    pub(crate) challenge: Arc<Challenge>,
    pub(crate) publication_key: Arc<PublicationKey>,
}

/// Each piece a handler can ask for, and the field it is cloned from (an `Arc` or a handle).
macro_rules! pieces {
    ($($piece:ty => $field:ident),+ $(,)?) => {$(
        impl FromRef<AppState> for $piece {
            fn from_ref(state: &AppState) -> Self {
                state.$field.clone()
            }
        }
    )+};
}

pieces! {
    Arc<dyn Store> => store,
    Arc<Metrics> => metrics,
    Arc<Helper> => helper,
    BatchSlots => batch_slots,
    Arc<Fleet> => fleet,
    Arc<PageCache> => status_page,
    Arc<ListSlot> => list,
    Arc<GeoIp> => geoip,
    Arc<Honoured> => honoured,
    Arc<Limiter> => limiter,
    Arc<dyn Clock> => clock,
    Arc<TrustPolicy> => trust,
    Arc<Challenge> => challenge,
    Arc<PublicationKey> => publication_key,
}
