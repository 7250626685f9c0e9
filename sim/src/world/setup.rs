//! Time zero: nodes and topics, the initial random topology, providers and their keys,
//! and the schedules of churn, partitions and samples.

use agora_protocol::gossip::offers_topic;
use rand_core::Rng;

use super::{Event, ProviderSlot, Sched, SimNode, Status, WORLD, World};
use crate::fast_hash::FastMap;
use crate::gossip::score::Decay;
use crate::gossip::{Params, TopicIdx};
use crate::metrics::Metrics;
use crate::net_model::NetModel;
use crate::rng;
use crate::scenario::{ChurnAction, Scenario, Subscribe};
use crate::time::{SimDuration, SimTime};
use crate::verifier::MemoVerifier;
use crate::workload::Provider;

/// Most random draws spent looking for a new peer to dial before giving up.
const DIAL_ATTEMPTS: u32 = 64;

impl World {
    /// The network of `scenario`, nothing scheduled yet; `record_deliveries` keeps every
    /// delivery in the metrics (for tests and small runs).
    pub fn new(scenario: Scenario, record_deliveries: bool) -> Self {
        let params = Params::from(&scenario.gossip);
        let net = NetModel::new(&scenario);
        let topic_names: Vec<String> = scenario
            .nodes
            .regions
            .iter()
            .map(|r| offers_topic(r.name.get_ref()))
            .collect();
        let all_topics: Vec<TopicIdx> = (0..topic_names.len() as TopicIdx).collect();
        let slots = scenario.node_slots();
        let nodes = (0..slots)
            .map(|n| {
                let topics = match scenario.gossip.subscribe {
                    Subscribe::All => all_topics.clone(),
                    Subscribe::Own => vec![net.region_of(n)],
                };
                SimNode::new(&topics, params.history_length)
            })
            .collect();
        let partitions = scenario.partitions.len();
        World {
            decay: Decay::per_heartbeat(params.heartbeat),
            params,
            net,
            topic_names,
            nodes,
            providers: Vec::new(),
            messages: Vec::new(),
            signed_index: FastMap::default(),
            verifier: MemoVerifier::default(),
            severed: vec![Vec::new(); partitions],
            metrics: Metrics::new(slots as usize, record_deliveries),
            scratch: Vec::new(),
            heartbeat_scratch: super::heartbeat::Scratch::default(),
            topology_epoch: 0,
            market: None,
            market_failure: None,
            scenario,
        }
    }

    /// Builds the initial topology and schedules everything that happens on its own.
    pub fn start(&mut self, engine: &mut impl Sched) {
        let count = self.scenario.nodes.count;
        let duration = self.scenario.duration.0;
        let end = SimTime::ZERO.saturating_add(duration);
        // Every initial node is up and dials `outbound` random others.
        for n in 0..count {
            if let Some(node) = self.node_mut(n) {
                node.status = Status::Up;
            }
        }
        for n in 0..count {
            for _ in 0..self.scenario.nodes.outbound {
                if let Some(peer) = self.random_dial_target(engine.rng(), n, count) {
                    self.link(n, peer);
                }
            }
        }
        for n in 0..count {
            self.schedule_timers(engine, n, SimTime::ZERO);
        }
        // Providers: distinct random initial nodes, each with a key from the run's RNG.
        let all: Vec<u32> = (0..count).collect();
        let chosen = rng::choose(
            engine.rng(),
            &all,
            *self.scenario.workload.providers.get_ref() as usize,
        );
        let (start, period) = (
            self.scenario.workload.start.0,
            self.scenario.workload.readvertise.0,
        );
        for node in chosen {
            let mut secret = [0u8; 32];
            engine.rng().fill_bytes(&mut secret);
            let index = self.providers.len() as u32;
            self.providers.push(ProviderSlot {
                node,
                provider: Provider::from_seed(secret),
                latest: None,
            });
            if let Some(n) = self.node_mut(node) {
                n.provider = Some(index);
            }
            let offset = rng::below(engine.rng(), period.as_micros().max(1));
            let at = SimTime::ZERO
                .saturating_add(start)
                .saturating_add(SimDuration::from_micros(offset));
            engine.at(at, node, Event::Advertise { epoch: 0 });
        }
        // Random crashes, joins, scripted churn.
        for n in 0..count {
            if let Some((at, event)) = self.schedule_random_crash(engine.rng(), n, SimTime::ZERO) {
                engine.at(at, n, event);
            }
        }
        let joins = self.scenario.churn.joins;
        let [from, until] =
            self.scenario
                .churn
                .join_window
                .map_or([SimTime::ZERO, end], |[a, b]| {
                    [
                        SimTime::ZERO.saturating_add(a.0),
                        SimTime::ZERO.saturating_add(b.0),
                    ]
                });
        for j in 0..joins {
            let width = until.saturating_since(from).as_micros();
            let at = from.saturating_add(SimDuration::from_micros(rng::below(
                engine.rng(),
                width.max(1),
            )));
            engine.at(at, count + j, Event::Start);
        }
        for scripted in &self.scenario.churn.schedule {
            let at = SimTime::ZERO.saturating_add(scripted.at.0);
            let range = scripted.nodes.get_ref();
            for n in range.start..range.end {
                let event = match scripted.action {
                    ChurnAction::Crash => Event::Crash {
                        epoch: None,
                        restart: false,
                    },
                    ChurnAction::Leave => Event::Leave {
                        epoch: None,
                        restart: false,
                    },
                    ChurnAction::Restart => Event::Start,
                };
                engine.at(at, n, event);
            }
        }
        for (index, partition) in self.scenario.partitions.iter().enumerate() {
            let index = index as u16;
            let world = WORLD;
            engine.at(
                SimTime::ZERO.saturating_add(partition.at.0),
                world,
                Event::PartitionStart { index },
            );
            if let Some(heal) = partition.heal {
                engine.at(
                    SimTime::ZERO.saturating_add(heal.0),
                    world,
                    Event::PartitionHeal { index },
                );
            }
        }
        engine.at(SimTime::ZERO, WORLD, Event::Sample);
        // The market comes last, so runs without one draw exactly as before.
        let keys: Vec<(u32, ed25519_dalek::SigningKey)> = self
            .providers
            .iter()
            .map(|slot| (slot.node, slot.provider.key().clone()))
            .collect();
        match crate::market::Market::start(engine, &self.scenario, &keys) {
            Ok(market) => self.market = market.map(Box::new),
            Err(e) => {
                self.market_failure = Some(crate::market::Violation {
                    at: SimTime::ZERO,
                    what: format!("the market cannot start: {e}"),
                });
            }
        }
        self.surround_victims();
    }

    /// An eclipse: each victim's connections go to every attacker instead, but for at most
    /// `honest_peers` of its honest ones (no draws: the first in id order are kept).
    fn surround_victims(&mut self) {
        let Some(eclipse) = self
            .market
            .as_deref()
            .and_then(crate::market::Market::eclipse)
            .cloned()
        else {
            return;
        };
        for &victim in eclipse.victims() {
            let peers = self
                .node(victim)
                .map(|n| n.peer_ids().to_vec())
                .unwrap_or_default();
            let mut kept = 0;
            for peer in peers {
                let honest = !eclipse.is_attacker(peer) && !eclipse.is_victim(peer);
                if honest && kept < eclipse.honest_peers() {
                    kept += 1;
                } else {
                    self.unlink(victim, peer);
                }
            }
            for &attacker in eclipse.attackers() {
                self.link(victim, attacker);
            }
        }
    }

    /// Schedules a started node's heartbeat and sync timers at random phases after `now`.
    pub(super) fn schedule_timers(&mut self, engine: &mut impl Sched, n: u32, now: SimTime) {
        let Some(epoch) = self.node(n).map(|node| node.epoch) else {
            return;
        };
        let hb = rng::below(engine.rng(), self.params.heartbeat.as_micros().max(1));
        let sync = rng::below(engine.rng(), self.params.sync_interval.as_micros().max(1));
        engine.at(
            now.saturating_add(SimDuration::from_micros(hb)),
            n,
            Event::Heartbeat { epoch },
        );
        engine.at(
            now.saturating_add(SimDuration::from_micros(sync)),
            n,
            Event::SyncTick { epoch },
        );
    }

    /// The next random departure of node `n` after `now` (a crash, or with probability
    /// `churn.leave_share` a graceful leave), if churn has a crash rate and it falls
    /// within the run.
    pub(super) fn schedule_random_crash(
        &self,
        rng: &mut impl Rng,
        n: u32,
        now: SimTime,
    ) -> Option<(SimTime, Event)> {
        let rate = self.scenario.churn.crash_per_node_hour.0;
        if rate <= 0.0 {
            return None;
        }
        let epoch = self.node(n)?.epoch;
        let mean_micros = 3.6e9 / rate;
        let delay = rng::exponential(rng, mean_micros).min(1e15) as u64;
        let at = now.saturating_add(SimDuration::from_micros(delay));
        let (epoch, restart) = (Some(epoch), self.scenario.churn.restart);
        // No draw at all when no leaves are asked for.
        let event = if rng::chance(rng, self.scenario.churn.leave_share.0) {
            Event::Leave { epoch, restart }
        } else {
            Event::Crash { epoch, restart }
        };
        (at.as_micros() < self.scenario.duration.as_micros()).then_some((at, event))
    }

    /// A random node in `0..limit` that `n` may dial: up, not itself, not yet connected,
    /// not across an active partition; from `n`'s own region with probability
    /// `nodes.region_affinity`.
    pub(super) fn random_dial_target(&self, rng: &mut impl Rng, n: u32, limit: u32) -> Option<u32> {
        let node = self.node(n)?;
        let affinity = self.scenario.nodes.region_affinity;
        let local = self.net.nodes_in(self.net.region_of(n));
        for _ in 0..DIAL_ATTEMPTS {
            let peer = if rng::chance(rng, affinity) {
                let Some(&peer) = local.get(rng::index(rng, local.len())) else {
                    continue;
                };
                if peer >= limit {
                    continue;
                }
                peer
            } else {
                rng::below(rng, u64::from(limit)) as u32
            };
            if peer != n
                && self.is_up(peer)
                && !node.is_connected(peer)
                && !self.net.blocked(n, peer)
            {
                return Some(peer);
            }
        }
        None
    }

    /// Connects `a` and `b` both ways; returns whether the connection is new.
    pub(super) fn link(&mut self, a: u32, b: u32) -> bool {
        let new = self.node_mut(a).is_some_and(|node| node.connect(b));
        if let Some(node) = self.node_mut(b) {
            node.connect(a);
        }
        new
    }

    /// Closes the connection between `a` and `b` on both sides.
    pub(super) fn unlink(&mut self, a: u32, b: u32) {
        // Wrapping after 2^32 closed connections is far beyond any run (a frame would
        // have to stay in flight over all of them to be let through wrongly).
        self.topology_epoch = self.topology_epoch.wrapping_add(1);
        if let Some(node) = self.node_mut(a) {
            node.disconnect(b);
        }
        if let Some(node) = self.node_mut(b) {
            node.disconnect(a);
        }
    }
}
