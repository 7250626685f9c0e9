//! Building what an agent signs, from what it wants: the lease request for a workload (from
//! a node's quote) and operations on its leases. Shared by the `agora agent` CLI and the
//! MCP tools of `agora mcp --key`, which sign locally with the agent's key.

use std::collections::BTreeMap;

use agora_attest::Identity;
use agora_protocol::Credential;
use agora_protocol::lease::{
    Candidate, Delegation, LeaseId, LeaseOp, LeaseRequest, MAX_CANDIDATES, NONCE_LEN, Op,
    ReceiptAck, UsageReceipt,
};
use agora_protocol::offer::Isolation;
use agora_protocol::read_proof::ReadProof;
use agora_protocol::signup::{ProofOfWork, SignupRecord};
use agora_protocol::workload::{
    ImageSource, NetworkRequest, PortSpec, Resources, Transport, WorkloadSpec,
};
use agora_protocol::{AgoraId, Digest, Signed, Timestamp};
use base64::Engine as _;
use serde_json::Value;
#[cfg(test)]
use serde_json::json;

/// Why a request could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No offer matched.
    #[error("no offer matches (runtime, image, resources, lifetime, price, region)")]
    NoOffer,
    /// The node's quote is not what the API describes.
    #[error("the node's quote is malformed: {0}")]
    BadQuote(&'static str),
    /// The node's lease view is not what the API describes, or its receipt does not verify.
    #[error("the node's lease view is malformed: {0}")]
    BadView(&'static str),
    /// The request breaks a protocol bound (a field is named).
    #[error("cannot sign: {0}")]
    Sign(#[from] agora_protocol::codec::EncodeError),
    /// An argument is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Who signs what an agent asks: the agent with its own key, or a delegate (a node's `/mcp`
/// endpoint, a helper) with its key under a delegation the agent signed, which travels with
/// every request so the provider checks the chain.
#[derive(Debug, Clone, Copy)]
pub struct Author<'a> {
    key: &'a Identity,
    delegation: Option<&'a Signed<Delegation>>,
}

impl<'a> Author<'a> {
    /// The agent itself.
    pub fn agent(key: &'a Identity) -> Self {
        Self {
            key,
            delegation: None,
        }
    }

    /// `key`, acting for the agent that signed `delegation` (whose delegate `key` must be:
    /// the provider refuses anything else).
    pub fn delegate(key: &'a Identity, delegation: &'a Signed<Delegation>) -> Self {
        Self {
            key,
            delegation: Some(delegation),
        }
    }

    /// The agent the requests are for.
    pub fn agent_id(&self) -> AgoraId {
        self.delegation
            .map_or_else(|| self.key.agora_id(), |d| d.body().agent)
    }

    /// The key that signs (the agent's own, or its delegate's).
    pub fn signer(&self) -> AgoraId {
        self.key.agora_id()
    }

    /// The delegation it signs under (`None`: the agent itself signs).
    pub fn delegation(&self) -> Option<Signed<Delegation>> {
        self.delegation.cloned()
    }

    /// The signing key.
    pub fn key(&self) -> &'a Identity {
        self.key
    }
}

impl<'a> From<&'a Identity> for Author<'a> {
    fn from(key: &'a Identity) -> Self {
        Self::agent(key)
    }
}

/// What the agent wants to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    /// Runtime.
    pub runtime: Isolation,
    /// Image name, as offers list it.
    pub image: String,
    /// vCPU, thousandths.
    pub vcpu_milli: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Writable disk, MiB.
    pub disk_mib: u64,
    /// Most processes.
    pub pids: u32,
    /// Lifetime, seconds.
    pub lifetime_secs: u64,
    /// Program and arguments (empty: the image's default).
    pub command: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// TCP ports the workload serves.
    pub ports: Vec<u16>,
    /// Outbound connections.
    pub egress: bool,
    /// Most micro-credits per second (default: the dearest offer listed).
    pub max_price_per_sec: Option<u64>,
    /// Only this region.
    pub region: Option<String>,
    /// How many offers to name, best first.
    pub candidates: usize,
}

impl Default for RunPlan {
    fn default() -> Self {
        Self {
            runtime: Isolation::Sandbox,
            image: "busybox".into(),
            vcpu_milli: 500,
            memory_mib: 256,
            disk_mib: 64,
            pids: 128,
            lifetime_secs: 3600,
            command: Vec::new(),
            env: BTreeMap::new(),
            ports: Vec::new(),
            egress: false,
            max_price_per_sec: None,
            region: None,
            candidates: 3,
        }
    }
}

/// A fresh random nonce.
pub fn nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

impl RunPlan {
    /// The body of `POST /v1/leases/quote` for this plan.
    pub fn quote_body(&self) -> Value {
        let mut quote = serde_json::Map::new();
        quote.insert("runtime".into(), self.runtime.as_str().into());
        quote.insert("image".into(), self.image.clone().into());
        quote.insert("vcpu_milli".into(), self.vcpu_milli.into());
        quote.insert("memory_mib".into(), self.memory_mib.into());
        quote.insert("disk_mib".into(), self.disk_mib.into());
        quote.insert("lifetime_secs".into(), self.lifetime_secs.into());
        quote.insert("limit".into(), MAX_CANDIDATES.into());
        if let Some(p) = self.max_price_per_sec {
            quote.insert("max_price_per_sec".into(), p.into());
        }
        if let Some(r) = &self.region {
            quote.insert("region".into(), r.clone().into());
        }
        Value::Object(quote)
    }

    /// The candidates (the best offers pinning the same image digest as the best one), the
    /// digest, and the price cap, from a node's quote.
    ///
    /// # Errors
    /// [`PlanError::NoOffer`], [`PlanError::BadQuote`], [`PlanError::Invalid`].
    pub fn choose(&self, quote: &Value) -> Result<(Vec<Candidate>, Digest, u64), PlanError> {
        if !(1..=MAX_CANDIDATES).contains(&self.candidates) {
            return Err(PlanError::Invalid(format!(
                "candidates must be 1 to {MAX_CANDIDATES}"
            )));
        }
        let offers = quote
            .get("offers")
            .and_then(Value::as_array)
            .ok_or(PlanError::BadQuote("no `offers` list"))?;
        let first = offers.first().ok_or(PlanError::NoOffer)?;
        // One spec names one image digest: keep the offers pinning the best offer's.
        let digest_text = first
            .pointer("/image/digest")
            .and_then(Value::as_str)
            .ok_or(PlanError::BadQuote("an offer's image has no digest"))?;
        let digest: Digest = digest_text
            .parse()
            .map_err(|_| PlanError::BadQuote("an image digest is not 64 hex digits"))?;
        let chosen: Vec<&Value> = offers
            .iter()
            .filter(|o| o.pointer("/image/digest").and_then(Value::as_str) == Some(digest_text))
            .take(self.candidates)
            .collect();
        let mut candidates = Vec::with_capacity(chosen.len());
        for o in &chosen {
            candidates.push(Candidate {
                provider: o
                    .get("provider")
                    .and_then(Value::as_str)
                    .and_then(|p| p.parse().ok())
                    .ok_or(PlanError::BadQuote("a provider is not an Agora id"))?,
                offer: o
                    .get("offer")
                    .and_then(Value::as_str)
                    .and_then(|d| d.parse().ok())
                    .ok_or(PlanError::BadQuote("an offer is not a digest"))?,
            });
        }
        let max_price = self.max_price_per_sec.unwrap_or_else(|| {
            chosen
                .iter()
                .filter_map(|o| o.get("price_per_sec").and_then(Value::as_u64))
                .max()
                .unwrap_or(0)
        });
        Ok((candidates, digest, max_price))
    }

    /// The workload spec for image `digest`.
    pub fn spec(&self, digest: Digest) -> WorkloadSpec {
        WorkloadSpec {
            image: ImageSource::Named {
                name: self.image.clone(),
                digest,
            },
            command: self.command.clone(),
            env: self.env.clone(),
            workdir: None,
            resources: Resources {
                vcpu_milli: self.vcpu_milli,
                memory_mib: self.memory_mib,
                disk_mib: self.disk_mib,
                pids: self.pids,
            },
            lifetime_secs: self.lifetime_secs,
            ports: self
                .ports
                .iter()
                .map(|&port| PortSpec {
                    port,
                    transport: Transport::Tcp,
                })
                .collect(),
            network: NetworkRequest {
                enabled: self.egress || !self.ports.is_empty(),
                egress: self.egress,
            },
        }
    }

    /// The signed lease request (the agent's, or its delegate's) from a node's quote.
    ///
    /// # Errors
    /// [`PlanError`].
    pub fn request<'a>(
        &self,
        quote: &Value,
        author: impl Into<Author<'a>>,
        signup: Signed<SignupRecord>,
        now: Timestamp,
    ) -> Result<Signed<LeaseRequest>, PlanError> {
        let author = author.into();
        let (candidates, digest, max_price) = self.choose(quote)?;
        Ok(Signed::sign(
            LeaseRequest {
                agent: author.agent_id(),
                candidates,
                isolation: self.runtime,
                spec: self.spec(digest),
                max_price_per_sec: max_price,
                nonce: nonce(),
                issued_at: now,
                signup,
                delegation: author.delegation(),
            },
            author.key,
        )?)
    }
}

/// The agent's signed signup record answering the node's `issued` challenge: with its
/// `credential` (an attested tier), or else with the proof of work the node asks for
/// (CPU-bound: seconds at most at the bits nodes ask; run it off the async threads).
///
/// # Errors
/// [`PlanError::BadQuote`] for a malformed challenge, [`PlanError::Sign`] when the record
/// breaks a protocol bound (a name too long, say).
pub fn signup_record(
    agent: &Identity,
    issued: &crate::agent::IssuedChallenge,
    credential: Option<Credential>,
    name: Option<String>,
) -> Result<Signed<SignupRecord>, PlanError> {
    let challenge = issued
        .challenge()
        .map_err(|_| PlanError::BadQuote("the signup challenge is malformed"))?;
    let pow = match (&credential, issued.pow_bits) {
        (None, bits) if bits > 0 => ProofOfWork::solve(&agent.agora_id(), &challenge, bits),
        _ => ProofOfWork::NONE,
    };
    Ok(Signed::sign(
        SignupRecord {
            agent: agent.agora_id(),
            challenge,
            credential,
            pow,
            name,
        },
        agent,
    )?)
}

/// The signed operation `op` on `lease`, held by `provider`.
///
/// # Errors
/// [`PlanError::Sign`] when the operation breaks a protocol bound (a relative path, say).
pub fn sign_op<'a>(
    author: impl Into<Author<'a>>,
    provider: AgoraId,
    lease: LeaseId,
    op: Op,
    now: Timestamp,
) -> Result<Signed<LeaseOp>, PlanError> {
    let author = author.into();
    Ok(Signed::sign(
        LeaseOp {
            agent: author.agent_id(),
            provider,
            lease,
            op,
            nonce: nonce(),
            issued_at: now,
            delegation: author.delegation(),
        },
        author.key,
    )?)
}

/// What an agent acknowledges: the final receipt of one of its ended leases, as a node's
/// lease view shows it, with the provider's signature checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalReceipt {
    /// The lease.
    pub lease: LeaseId,
    /// Its provider (the receipt's signer).
    pub provider: AgoraId,
    /// The provider's signed final receipt.
    pub receipt: Signed<UsageReceipt>,
}

impl FinalReceipt {
    /// The final receipt of the lease `view` shows (`GET /v1/leases/{id}`, or the `lease` of
    /// a stop's answer) for `agent` to acknowledge: `None` while the lease runs, when the
    /// provider has not signed a final receipt, or when it already holds an acknowledgement.
    ///
    /// # Errors
    /// [`PlanError::BadView`] when the view's receipt does not decode, is not signed by
    /// the lease's provider, or is another lease's or agent's.
    pub fn of_view(view: &Value, agent: AgoraId) -> Result<Option<Self>, PlanError> {
        if view.get("state").and_then(Value::as_str) != Some("ended")
            || view.get("acknowledgement").is_some_and(|a| !a.is_null())
        {
            return Ok(None);
        }
        let Some(text) = view.pointer("/receipt/signed").and_then(Value::as_str) else {
            return Ok(None);
        };
        let bad = PlanError::BadView;
        let lease: LeaseId = view
            .get("lease")
            .and_then(Value::as_str)
            .and_then(|l| l.parse().ok())
            .ok_or(bad("the lease view has no lease id"))?;
        let provider: AgoraId = view
            .get("provider")
            .and_then(Value::as_str)
            .and_then(|p| p.parse().ok())
            .ok_or(bad("the lease view names no provider"))?;
        let receipt: Signed<UsageReceipt> = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()
            .and_then(|b| Signed::decode(&b, &agora_protocol::Ed25519).ok())
            .ok_or(bad("the lease's receipt does not verify"))?;
        let r = receipt.body();
        if r.lease != lease || r.agent != agent || r.provider != provider {
            return Err(bad("the receipt is another lease's, agent's or provider's"));
        }
        if r.ended.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            lease,
            provider,
            receipt,
        }))
    }

    /// The signed `Acknowledge` operation countersigning this receipt (the agent's, or its
    /// delegate's under a delegation allowing `stop`).
    ///
    /// # Errors
    /// [`PlanError::Sign`] when a bound is broken (a delegation that does not allow `stop`).
    pub fn acknowledge<'a>(
        &self,
        author: impl Into<Author<'a>>,
        now: Timestamp,
    ) -> Result<Signed<LeaseOp>, PlanError> {
        let author = author.into();
        let ack = Signed::sign(
            ReceiptAck {
                agent: author.agent_id(),
                receipt: self.receipt.digest(),
                acked_at: now,
                delegation: author.delegation(),
            },
            author.key,
        )?;
        sign_op(
            author,
            self.provider,
            self.lease,
            Op::Acknowledge { ack },
            now,
        )
    }
}

/// A proof, for the node `node`, that `author` is the agent (or acts for it): what listing
/// the agent's leases there needs.
///
/// # Errors
/// [`PlanError::Sign`] when it breaks a protocol bound (a delegation for another agent).
pub fn sign_read_proof<'a>(
    author: impl Into<Author<'a>>,
    node: AgoraId,
    now: Timestamp,
) -> Result<Signed<ReadProof>, PlanError> {
    let author = author.into();
    Ok(Signed::sign(
        ReadProof::new(author.agent_id(), node, now, author.delegation()),
        author.key,
    )?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn quote(digests: &[(&str, u64)]) -> Value {
        let offers: Vec<Value> = digests
            .iter()
            .enumerate()
            .map(|(i, (d, price))| {
                json!({
                    "provider": Identity::generate(&mut rand::rng()).agora_id().to_string(),
                    "offer": Digest::of(&[i as u8]).to_string(),
                    "image": { "name": "busybox", "digest": d },
                    "price_per_sec": price,
                })
            })
            .collect();
        json!({ "offers": offers })
    }

    #[test]
    fn candidates_pin_the_best_offers_image_and_cap_the_price() {
        let a = Digest::of(b"a").to_string();
        let b = Digest::of(b"b").to_string();
        let plan = RunPlan {
            candidates: 2,
            ..RunPlan::default()
        };
        let (c, d, price) = plan
            .choose(&quote(&[(&a, 10), (&b, 11), (&a, 30), (&a, 40)]))
            .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(d.to_string(), a);
        assert_eq!(price, 30);
        assert!(matches!(plan.choose(&quote(&[])), Err(PlanError::NoOffer)));
        assert!(matches!(
            plan.choose(&json!({})),
            Err(PlanError::BadQuote(_))
        ));
        let none = RunPlan {
            candidates: 0,
            ..RunPlan::default()
        };
        assert!(matches!(
            none.choose(&quote(&[(&a, 1)])),
            Err(PlanError::Invalid(_))
        ));
    }

    fn final_view(agent: &Identity, provider: &Identity, ended: bool) -> (Value, Digest) {
        let lease = Digest::of(b"lease");
        let receipt = Signed::sign(
            UsageReceipt {
                lease,
                agent: agent.agora_id(),
                provider: provider.agora_id(),
                seq: 1,
                from: Timestamp::from_unix_secs(1_800_000_000),
                to: Timestamp::from_unix_secs(1_800_000_060),
                cpu_ms: 5,
                memory_mib_secs: 5,
                egress_bytes: 0,
                tunnel_in_bytes: 0,
                tunnel_out_bytes: 0,
                price_per_sec: 1,
                total_micro: 60,
                ended: ended.then_some(agora_protocol::workload::TerminationReason::StoppedByAgent),
            },
            provider,
        )
        .unwrap();
        let signed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(receipt.as_bytes());
        let view = json!({
            "lease": lease.to_string(),
            "provider": provider.agora_id().to_string(),
            "state": if ended { "ended" } else { "running" },
            "receipt": { "signed": signed },
            "acknowledgement": null,
        });
        (view, receipt.digest())
    }

    #[test]
    fn the_final_receipt_of_an_ended_lease_is_acknowledged_once() {
        let agent = Identity::generate(&mut rand::rng());
        let provider = Identity::generate(&mut rand::rng());
        let node = Identity::generate(&mut rand::rng());
        let now = Timestamp::from_unix_secs(1_800_000_100);
        let (view, digest) = final_view(&agent, &provider, true);
        let receipt = FinalReceipt::of_view(&view, agent.agora_id())
            .unwrap()
            .unwrap();
        // The agent's own acknowledgement, inside its operation for the provider.
        let op = receipt.acknowledge(&agent, now).unwrap();
        let back = Signed::<LeaseOp>::decode(op.as_bytes(), &agora_protocol::Ed25519).unwrap();
        assert_eq!(back.body().provider, provider.agora_id());
        let Op::Acknowledge { ack } = &back.body().op else {
            panic!("not an acknowledgement: {:?}", back.body().op);
        };
        assert_eq!(
            (ack.body().receipt, ack.signer()),
            (digest, agent.agora_id())
        );
        // A delegate allowed to stop signs it under the agent's delegation.
        let delegation = Signed::sign(
            Delegation {
                agent: agent.agora_id(),
                delegate: node.agora_id(),
                ops: vec![agora_protocol::lease::OpKind::Stop],
                spend_cap_credits: 1,
                issued_at: Timestamp::from_unix_secs(1_800_000_000),
                expires_at: Timestamp::from_unix_secs(1_800_003_600),
            },
            &agent,
        )
        .unwrap();
        let op = receipt
            .acknowledge(Author::delegate(&node, &delegation), now)
            .unwrap();
        let Op::Acknowledge { ack } = &op.body().op else {
            panic!("not an acknowledgement");
        };
        assert_eq!(
            (ack.body().agent, ack.signer()),
            (agent.agora_id(), node.agora_id())
        );
        // Nothing to acknowledge: running, already acknowledged, or not a final receipt.
        let (running, _) = final_view(&agent, &provider, false);
        assert!(
            FinalReceipt::of_view(&running, agent.agora_id())
                .unwrap()
                .is_none()
        );
        let mut done = view.clone();
        done["acknowledgement"] = json!("AAAA");
        assert!(
            FinalReceipt::of_view(&done, agent.agora_id())
                .unwrap()
                .is_none()
        );
        // Another agent's receipt, or a forged one: refused.
        assert!(FinalReceipt::of_view(&view, node.agora_id()).is_err());
        let mut forged = view.clone();
        forged["receipt"]["signed"] = json!("AAAA");
        assert!(FinalReceipt::of_view(&forged, agent.agora_id()).is_err());
    }
}
