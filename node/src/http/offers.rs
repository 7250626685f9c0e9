//! `GET /v1/offers` and `GET /v1/offers/{provider}`: the market as this node sees it.
//!
//! Every offer comes with `signed`, the provider's signed message (base64url), so an agent
//! need not trust this node: it can verify the offer itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_protocol::offer::{Capacity, Isolation, NetworkPolicy, Prices, RuntimeOffer};
use agora_protocol::offer_book::{OfferFilter, OfferSort};

use agora_protocol::{AgoraId, Offer, Signed};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use base64::Engine as _;
use serde::Serialize;

use super::ApiError;
use super::query::{self, bad};
use crate::clock;
use crate::daemon::Shared;
use crate::surface::types::OfferSortKey;

/// Most offers one query returns.
pub const MAX_LIMIT: usize = 1000;
/// Offers returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// A parsed `/v1/offers` query.
///
/// Parameters: `runtime` (`sandbox`|`docker`|`microvm`), `image`, `min_cpu` (vCPUs,
/// fractions allowed), `min_memory_mib`, `max_price` (micro-credits per second for the
/// requested vCPU and memory, or one vCPU and 1 GiB), `region`, `tier`, `label=key=value`
/// (repeatable), `sort` (`price`|`newest`|`reputation`), `limit` (1 to 1000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferQuery {
    /// The typed filter.
    pub filter: OfferFilter,
    /// The order.
    pub sort: OfferSortKey,
    /// Most results.
    pub limit: usize,
}

impl OfferQuery {
    /// Parses query pairs; unknown or malformed parameters are errors naming the parameter.
    ///
    /// # Errors
    /// [`ApiError`] 400 `bad_query`.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut q = Self {
            filter: OfferFilter::default(),
            sort: OfferSortKey::Price,
            limit: DEFAULT_LIMIT,
        };
        for (name, value) in pairs {
            let value = value.trim();
            match name.as_str() {
                "runtime" => {
                    q.filter.runtime = Some(
                        value
                            .parse::<Isolation>()
                            .map_err(|e| bad(name, e.to_string()))?,
                    );
                }
                "image" => q.filter.image = Some(bounded(name, value, 128)?),
                "min_cpu" => {
                    let cpus: f64 = value
                        .parse()
                        .map_err(|_| bad(name, format!("{value:?} is not a number of vCPUs")))?;
                    if !(cpus.is_finite() && (0.0..=4096.0).contains(&cpus)) {
                        return Err(bad(name, format!("{value} is not between 0 and 4096")));
                    }
                    q.filter.min_vcpu_milli = Some((cpus * 1000.0).round() as u32);
                }
                "min_memory_mib" => {
                    q.filter.min_memory_mib = Some(
                        value
                            .parse()
                            .map_err(|_| bad(name, format!("{value:?} is not a whole number")))?,
                    );
                }
                "max_price" => {
                    q.filter.max_price = Some(value.parse().map_err(|_| {
                        bad(name, format!("{value:?} is not micro-credits per second"))
                    })?);
                }
                "region" => q.filter.region = Some(bounded(name, value, 32)?),
                "tier" => q.filter.tier = Some(bounded(name, value, 32)?),
                "label" => {
                    let (k, v) = value
                        .split_once('=')
                        .ok_or_else(|| bad(name, format!("{value:?} is not key=value")))?;
                    if q.filter.labels.len() >= 16 {
                        return Err(bad(name, "at most 16 labels"));
                    }
                    q.filter
                        .labels
                        .insert(bounded(name, k, 64)?, bounded(name, v, 128)?);
                }
                "sort" => {
                    q.sort = match value {
                        "price" => OfferSortKey::Price,
                        "newest" => OfferSortKey::Newest,
                        "reputation" => OfferSortKey::Reputation,
                        other => {
                            return Err(bad(
                                name,
                                format!("{other:?} is not price, newest or reputation"),
                            ));
                        }
                    };
                }
                "limit" => q.limit = query::limit(name, value, MAX_LIMIT)?,
                other => {
                    return Err(bad(
                        other,
                        "unknown (runtime, image, min_cpu, min_memory_mib, max_price, region, tier, label, sort, limit)",
                    ));
                }
            }
        }
        Ok(q)
    }
}

/// `offers` (in price order) reordered by `trust` (latest completed epoch's, then the
/// current epoch's), highest first; the sort is stable, so ties keep price order. The first
/// `limit`.
fn by_reputation(
    mut offers: Vec<Signed<Offer>>,
    trust: &BTreeMap<AgoraId, (u64, u64)>,
    limit: usize,
) -> Vec<Signed<Offer>> {
    offers.sort_by_key(|o| {
        core::cmp::Reverse(trust.get(&o.body().provider).copied().unwrap_or_default())
    });
    offers.truncate(limit);
    offers
}

fn bounded(name: &str, value: &str, max: usize) -> Result<String, ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(bad(name, format!("must be 1 to {max} bytes")));
    }
    Ok(value.to_owned())
}

/// One offer as the API shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OfferView {
    /// The provider's Agora id.
    pub provider: AgoraId,
    /// Sequence number (higher replaces lower).
    pub seq: u64,
    /// Issued (RFC 3339).
    pub issued_at: String,
    /// Expires (RFC 3339).
    pub expires_at: String,
    /// Runtimes and their images.
    pub runtimes: Vec<RuntimeOffer>,
    /// Free capacity.
    pub capacity: Capacity,
    /// Prices (micro-credits per second per unit).
    pub prices: Prices,
    /// Price per second of the queried resources (or one vCPU and 1 GiB).
    pub price_per_second: u64,
    /// Longest lease, seconds.
    pub max_lease_secs: u64,
    /// Network policy.
    pub network: NetworkPolicy,
    /// Tiers accepted (empty: any).
    pub tiers: Vec<String>,
    /// Region.
    pub region: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// QUIC tunnel endpoints.
    pub tunnel_endpoints: Vec<String>,
    /// The signed offer, base64url: verify it yourself.
    pub signed: String,
}

impl OfferView {
    /// The view of `offer`, pricing what `filter` asks for.
    pub fn new(offer: &Signed<Offer>, filter: &OfferFilter) -> Self {
        let b: &Offer = offer.body();
        Self {
            provider: b.provider,
            seq: b.seq,
            issued_at: b.issued_at.to_string(),
            expires_at: b.expires_at.to_string(),
            runtimes: b.runtimes.clone(),
            capacity: b.capacity.clone(),
            prices: b.prices,
            price_per_second: filter.price_of(b),
            max_lease_secs: b.max_lease_secs,
            network: b.network.clone(),
            tiers: b.tiers.clone(),
            region: b.region.clone(),
            labels: b.labels.clone(),
            tunnel_endpoints: b.tunnel_endpoints.clone(),
            signed: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(offer.as_bytes()),
        }
    }
}

/// `GET /v1/offers`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OfferList {
    /// How many offers follow.
    pub count: usize,
    /// The matching offers, in the order asked for.
    pub offers: Vec<OfferView>,
    /// When the book was read (RFC 3339).
    pub at: String,
}

/// `GET /v1/offers`.
pub async fn list(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<OfferList>, ApiError> {
    let q = OfferQuery::parse(&query::pairs(raw)?)?;
    let now = clock::now();
    let hits = match q.sort {
        OfferSortKey::Price => shared
            .market()
            .query(&q.filter, OfferSort::Price, q.limit, now),
        OfferSortKey::Newest => shared
            .market()
            .query(&q.filter, OfferSort::Newest, q.limit, now),
        OfferSortKey::Reputation => {
            // Every match by price, then reordered (stably) by trust: highest first, ties
            // and unscored providers by price.
            let all = shared
                .market()
                .query(&q.filter, OfferSort::Price, usize::MAX, now);
            let trust = shared.reputation().map(|r| r.trust()).unwrap_or_default();
            by_reputation(all, &trust, q.limit)
        }
    };
    let views: Vec<OfferView> = hits.iter().map(|o| OfferView::new(o, &q.filter)).collect();
    Ok(Json(OfferList {
        count: views.len(),
        offers: views,
        at: now.to_string(),
    }))
}

/// `GET /v1/offers/{provider}`.
pub async fn one(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
) -> Result<Json<OfferView>, ApiError> {
    let id = ApiError::path_id("bad_provider", &provider)?;
    let offer = shared
        .market()
        .get(&id, clock::now())
        .ok_or_else(|| ApiError::not_found("no_offer", format!("no current offer from {id}")))?;
    Ok(Json(OfferView::new(&offer, &OfferFilter::default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<OfferQuery, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
        OfferQuery::parse(&pairs).map_err(|e| e.message)
    }

    #[test]
    fn typed_filters_parse() {
        let q = parse("runtime=docker&min_cpu=1.5&min_memory_mib=512&max_price=300&region=eu&label=arch%3Dx86_64&label=gpu%3Dno&sort=newest&limit=5").unwrap();
        assert_eq!(q.filter.runtime, Some(Isolation::Docker));
        assert_eq!(q.filter.min_vcpu_milli, Some(1500));
        assert_eq!(q.filter.min_memory_mib, Some(512));
        assert_eq!(q.filter.max_price, Some(300));
        assert_eq!(q.filter.region.as_deref(), Some("eu"));
        assert_eq!(q.filter.labels.len(), 2);
        assert_eq!(q.sort, OfferSortKey::Newest);
        assert_eq!(
            parse("sort=reputation").unwrap().sort,
            OfferSortKey::Reputation
        );
        assert_eq!(q.limit, 5);
        assert_eq!(parse("").unwrap().limit, DEFAULT_LIMIT);
    }

    /// A signed offer by key `n` at `vcpu` micro-credits per vCPU-second.
    fn offer(n: u8, vcpu: u64) -> Signed<Offer> {
        use crate::config::{NodeConfig, PriceConfig, ProviderConfig};
        let provider = ProviderConfig::new(
            2.0,
            2048,
            1024,
            PriceConfig {
                vcpu,
                memory_gib: 10,
                disk_gib: 1,
                gpu: 0,
            },
        );
        let identity = agora_attest::Identity::from_secret_bytes(&[n; 32]);
        provider
            .offer(
                &identity,
                1,
                agora_protocol::Timestamp::from_unix_secs(1_000),
                &NodeConfig::default(),
                &Default::default(),
                Vec::new(),
            )
            .unwrap()
    }

    #[test]
    fn reputation_orders_by_trust_then_keeps_price_order() {
        // In price order, as the book answers: 1 cheapest.
        let offers = vec![offer(1, 10), offer(2, 20), offer(3, 30), offer(4, 40)];
        let id = |o: &Signed<Offer>| o.body().provider;
        let trust = BTreeMap::from([
            (id(&offers[2]), (500, 0)),
            (id(&offers[3]), (500, 9)),
            (id(&offers[1]), (0, 7)),
        ]);
        let sorted: Vec<AgoraId> = by_reputation(offers.clone(), &trust, 10)
            .iter()
            .map(id)
            .collect();
        assert_eq!(
            sorted,
            [
                id(&offers[3]),
                id(&offers[2]),
                id(&offers[1]),
                id(&offers[0])
            ],
            "completed epoch's trust, then the current one's, then price"
        );
        // Nothing scored: price order stays; the limit applies after ordering.
        let plain: Vec<AgoraId> = by_reputation(offers.clone(), &BTreeMap::new(), 2)
            .iter()
            .map(id)
            .collect();
        assert_eq!(plain, [id(&offers[0]), id(&offers[1])]);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (q, name) in [
            ("runtime=vm", "runtime"),
            ("min_cpu=lots", "min_cpu"),
            ("min_cpu=-1", "min_cpu"),
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("label=novalue", "label"),
            ("sort=random", "sort"),
            ("colour=blue", "colour"),
            ("region=", "region"),
        ] {
            let err = parse(q).unwrap_err();
            assert!(err.contains(&format!("`{name}`")), "{q}: {err}");
        }
    }
}
