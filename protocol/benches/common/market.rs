//! A market's life as evidence-log entries, shared by the ledger benchmarks
//! (`protocol/benches/ledger_ingest.rs`, `node/benches/ledger_catchup.rs`, which includes
//! this file by path).
//!
//! A generator plays a market's life into one log: 16 nodes log the facts of 512 agents
//! (70 % attested by one of two issuers, the rest unattested) leasing from 64 providers. Per
//! lease: the provider's grant (with its capability), a first receipt, a final receipt the
//! agent acknowledges, and (7 leases in 10) the agent's rating; each agent's signup record
//! when it first appears; now and then an issuer's revocation. Deterministic: every run
//! generates the same entries.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_protocol::attestation::{Attestation, Claims, Credential, Revocation};
use agora_protocol::challenge::Challenge;
use agora_protocol::lease::{Capability, LeaseGrant, UsageReceipt};
use agora_protocol::ledger::{Config, EvidenceLog, Fact, Rating, ReceiptAck, Usage};
use agora_protocol::signup::{ProofOfWork, SignupRecord};
use agora_protocol::workload::TerminationReason;
use agora_protocol::{Digest, Signed, Signer, Timestamp};
use ed25519_dalek::SigningKey;

pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

const NODES: u32 = 16;
const ISSUERS: u32 = 2;
const PROVIDERS: u32 = 64;
const AGENTS: u32 = 512;

fn key(role: u8, n: u32) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[0] = role;
    seed[1..5].copy_from_slice(&n.to_le_bytes());
    seed[31] = 0xa5;
    SigningKey::from_bytes(&seed)
}

/// A small deterministic generator (splitmix64), so every run ingests the same entries.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        u32::try_from(self.next() % u64::from(n)).unwrap_or(0)
    }
}

/// The keys of one role, by number (numbers wrap around).
struct Keys(Vec<SigningKey>);

impl Keys {
    fn new(role: u8, count: u32) -> Self {
        Self((0..count.max(1)).map(|n| key(role, n)).collect())
    }

    fn at(&self, n: u32) -> &SigningKey {
        let i = n as usize % self.0.len();
        self.0
            .get(i)
            .unwrap_or_else(|| unreachable!("{i} is below the key count"))
    }
}

struct World {
    nodes: Keys,
    issuers: Keys,
    providers: Keys,
    agents: Keys,
    attestations: BTreeMap<u32, Signed<Attestation>>,
    signed_up: BTreeMap<u32, ()>,
    start: Timestamp,
}

impl World {
    fn new() -> Self {
        Self {
            nodes: Keys::new(1, NODES),
            issuers: Keys::new(2, ISSUERS),
            providers: Keys::new(3, PROVIDERS),
            agents: Keys::new(4, AGENTS),
            attestations: BTreeMap::new(),
            signed_up: BTreeMap::new(),
            start: Timestamp::from_unix_secs(1_800_000_000),
        }
    }

    fn at(&self, secs: u64) -> Timestamp {
        self.start.saturating_add(Duration::from_secs(secs))
    }

    fn attestation(&mut self, agent: u32) -> Res<Signed<Attestation>> {
        if let Some(a) = self.attestations.get(&agent) {
            return Ok(a.clone());
        }
        let issuer = self.issuers.at(agent);
        let mut nonce = [0u8; 16];
        nonce[..4].copy_from_slice(&agent.to_le_bytes());
        let a = Signed::sign(
            Attestation {
                issuer: issuer.id(),
                subject: self.agents.at(agent).id(),
                claims: Claims {
                    organisation: Some("Acme Research".into()),
                    tier: "standard".into(),
                    spending_limit_credits: 5_000,
                    owner: None,
                    may_delegate: false,
                    model: Some("agent-model-7".into()),
                    labels: BTreeMap::new(),
                },
                issued_at: self.at(0),
                not_before: self.at(0),
                expires_at: self.at(90 * 86_400),
                nonce,
            },
            issuer,
        )?;
        self.attestations.insert(agent, a.clone());
        Ok(a)
    }

    fn signup(&mut self, agent: u32, attested: bool) -> Res<Fact> {
        let credential = if attested {
            Some(Credential::single(self.attestation(agent)?))
        } else {
            None
        };
        let key = self.agents.at(agent);
        let mut nonce = [0x5au8; 32];
        nonce[..4].copy_from_slice(&agent.to_le_bytes());
        let record = SignupRecord {
            agent: key.id(),
            challenge: Challenge {
                verifier: self.nodes.at(agent).id(),
                nonce,
                issued_at: self.at(0),
            },
            credential,
            pow: ProofOfWork::NONE,
            name: Some(format!("agent-{agent}")),
        };
        Ok(Fact::Signup(Signed::sign(record, key)?))
    }

    fn grant(&self, lease: Digest, agent: u32, provider: u32, at: u64) -> Res<Fact> {
        let p = self.providers.at(provider);
        let a = self.agents.at(agent).id();
        let token = Signed::sign(
            Capability {
                lease,
                agent: a,
                provider: p.id(),
                ports: vec![8080],
                expires_at: self.at(at + 3600),
            },
            p,
        )?;
        let grant = LeaseGrant {
            owner: None,
            lease,
            agent: a,
            provider: p.id(),
            price_per_sec: 20,
            reserved_micro: 72_000,
            starts_at: self.at(at),
            expires_at: self.at(at + 3600),
            tunnel_endpoints: vec![format!("10.0.{}.{}:7000", provider / 256, provider % 256)],
            token,
        };
        Ok(Fact::Lease(Signed::sign(grant, p)?))
    }

    fn usage(&self, lease: Digest, agent: u32, provider: u32, at: u64, last: bool) -> Res<Fact> {
        let p = self.providers.at(provider);
        let a = self.agents.at(agent);
        let seconds = if last { 600 } else { 60 };
        let receipt = Signed::sign(
            UsageReceipt {
                lease,
                agent: a.id(),
                provider: p.id(),
                seq: u32::from(last),
                from: self.at(at),
                to: self.at(at + seconds),
                cpu_ms: seconds * 700,
                memory_mib_secs: seconds * 256,
                egress_bytes: seconds * 10_000,
                tunnel_in_bytes: 4096,
                tunnel_out_bytes: 65_536,
                price_per_sec: 20,
                total_micro: seconds * 20,
                ended: last.then_some(TerminationReason::Exited { code: 0 }),
            },
            p,
        )?;
        let ack = if last {
            Some(Signed::sign(
                ReceiptAck {
                    agent: a.id(),
                    receipt: receipt.digest(),
                    acked_at: self.at(at + seconds + 1),
                    delegation: None,
                },
                a,
            )?)
        } else {
            None
        };
        Ok(Fact::Usage(Usage { receipt, ack }))
    }

    fn rating(&self, lease: Digest, agent: u32, provider: u32, at: u64, score: u8) -> Res<Fact> {
        let a = self.agents.at(agent);
        let rating = Rating {
            rater: a.id(),
            provider: self.providers.at(provider).id(),
            lease,
            score,
            rated_at: self.at(at),
        };
        Ok(Fact::Rating(Signed::sign(rating, a)?))
    }

    fn revocation(&self, agent: u32, at: u64) -> Res<Option<Fact>> {
        let Some(attestation) = self.attestations.get(&agent) else {
            return Ok(None);
        };
        let issuer = self.issuers.at(agent);
        let revocation = Revocation {
            issuer: issuer.id(),
            subject: self.agents.at(agent).id(),
            attestation: attestation.digest(),
            revoked_at: self.at(at),
            reason: "key reported lost".into(),
        };
        Ok(Some(Fact::Revocation(Signed::sign(revocation, issuer)?)))
    }
}

/// Facts of a market's life, in the order nodes log them, and how many signatures each
/// carries (the entry's included).
fn facts(count: usize) -> Res<Vec<(u32, Fact)>> {
    let mut world = World::new();
    let mut mix = Mix(7);
    let mut out = Vec::with_capacity(count + 8);
    let mut lease_no = 0u64;
    while out.len() < count {
        lease_no += 1;
        let at = lease_no * 5;
        let agent = mix.below(AGENTS);
        let provider = mix.below(PROVIDERS);
        let node = mix.below(NODES);
        if world.signed_up.insert(agent, ()).is_none() {
            let attested = mix.below(10) < 7;
            out.push((agent % NODES, world.signup(agent, attested)?));
        }
        let lease = Digest::of(&lease_no.to_le_bytes());
        out.push((node, world.grant(lease, agent, provider, at)?));
        out.push((node, world.usage(lease, agent, provider, at, false)?));
        out.push((node, world.usage(lease, agent, provider, at, true)?));
        if mix.below(10) < 7 {
            let score = u8::try_from(50 + mix.below(51)).unwrap_or(100);
            out.push((
                agent % NODES,
                world.rating(lease, agent, provider, at + 700, score)?,
            ));
        }
        if lease_no.is_multiple_of(200)
            && let Some(fact) = world.revocation(agent, at)?
        {
            out.push((agent % NODES, fact));
        }
    }
    out.truncate(count);
    Ok(out)
}

fn signatures(fact: &Fact) -> usize {
    1 + match fact {
        Fact::Signup(s) => 1 + s.body().credential.as_ref().map_or(0, Credential::len),
        Fact::Lease(_) => 2,
        Fact::Usage(u) => 1 + usize::from(u.ack.is_some()),
        Fact::Rating(_) | Fact::Revocation(_) => 1,
        Fact::Equivocation(_) => 2,
    }
}

/// Generated entries: wire bytes in canonical order, signatures in all, facts by kind.
pub struct Generated {
    /// Wire bytes in canonical order.
    pub wires: Vec<Vec<u8>>,
    /// Signatures in all (nested ones included).
    pub signatures: usize,
    /// Facts by kind.
    pub kinds: BTreeMap<&'static str, usize>,
    /// The log they were appended to (the source replica of a sync).
    pub log: EvidenceLog,
}

/// `count` entries of a market's life, appended by the 16 nodes at 4 entries per second
/// from 1,800,000,000 s (Unix).
///
/// # Errors
/// When signing or appending fails (a bug in the generator).
pub fn entries(count: usize) -> Res<Generated> {
    let nodes = Keys::new(1, NODES);
    let mut log = EvidenceLog::new(Config::default())?;
    let start = Timestamp::from_unix_secs(1_800_000_000);
    let mut sigs = 0;
    let mut kinds = BTreeMap::new();
    for (i, (node, fact)) in facts(count)?.into_iter().enumerate() {
        sigs += signatures(&fact);
        *kinds.entry(fact.kind()).or_insert(0) += 1;
        let now = start.saturating_add(Duration::from_millis(i as u64 * 250));
        log.append(now, nodes.at(node), fact)?;
    }
    let wires = log.iter().map(|e| e.as_bytes().to_vec()).collect();
    Ok(Generated {
        wires,
        signatures: sigs,
        kinds,
        log,
    })
}
