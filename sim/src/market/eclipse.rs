//! An eclipse attempt: attacker nodes surround victim nodes so that the agents living on
//! a victim see only the attackers' offers.
//!
//! At time zero each victim's connections are replaced by connections to every attacker
//! node (the lying providers' nodes and `adversary.attackers` random others), keeping at
//! most `adversary.honest_peers` of its honest ones. Attackers then withhold from a victim
//! every message of an honest provider: such publishes are not sent, IHAVEs leave those
//! ids out, and offer-sync pages leave those offers and withdrawals out. Towards every
//! other node they behave honestly. The victim's own dials are not steered afterwards (a
//! victim that restarts dials its known peers as usual).
//!
//! The measure is the share of the victims' agents' leases that the attackers' (lying)
//! providers win, beside the liars' share of every other honest agent's leases.

use std::rc::Rc;

use rand_core::Rng;

use crate::gossip::{Frame, MsgIdx, SyncPage};
use crate::rng;
use crate::scenario::Adversary;

/// Who surrounds whom.
#[derive(Debug, Clone)]
pub struct Eclipse {
    victims: Vec<u32>,
    attackers: Vec<u32>,
    honest_peers: u32,
    /// By node: whether it is a victim.
    victim: Vec<bool>,
    /// By node: whether it is an attacker.
    attacker: Vec<bool>,
    /// By provider index: whether the provider is the attackers'.
    attacker_provider: Vec<bool>,
}

impl Eclipse {
    /// Chooses the victims and the attackers among `nodes` initial nodes. `providers` are
    /// the providers' nodes, the first `liars` of them the attackers' own.
    pub fn choose(
        rng: &mut impl Rng,
        nodes: u32,
        providers: &[u32],
        liars: usize,
        adversary: &Adversary,
    ) -> Self {
        let mut victim = vec![false; nodes as usize];
        let mut attacker = vec![false; nodes as usize];
        let mut attackers: Vec<u32> = providers.iter().take(liars).copied().collect();
        for &a in &attackers {
            if let Some(slot) = attacker.get_mut(a as usize) {
                *slot = true;
            }
        }
        // Victims run no provider; extra attackers are neither providers nor victims.
        let mut free: Vec<u32> = (0..nodes).filter(|n| !providers.contains(n)).collect();
        rng::shuffle(rng, &mut free);
        let mut free = free.into_iter();
        let victims: Vec<u32> = free.by_ref().take(adversary.victims as usize).collect();
        for &v in &victims {
            if let Some(slot) = victim.get_mut(v as usize) {
                *slot = true;
            }
        }
        for a in free.take(adversary.attackers as usize) {
            if let Some(slot) = attacker.get_mut(a as usize) {
                *slot = true;
            }
            attackers.push(a);
        }
        let mut attacker_provider = vec![false; providers.len()];
        for slot in attacker_provider.iter_mut().take(liars) {
            *slot = true;
        }
        Eclipse {
            victims,
            attackers,
            honest_peers: adversary.honest_peers,
            victim,
            attacker,
            attacker_provider,
        }
    }

    /// The victim nodes.
    pub fn victims(&self) -> &[u32] {
        &self.victims
    }

    /// The attacker nodes (the lying providers' first).
    pub fn attackers(&self) -> &[u32] {
        &self.attackers
    }

    /// How many of its honest connections a victim keeps.
    pub fn honest_peers(&self) -> u32 {
        self.honest_peers
    }

    /// Whether `node` is a victim.
    pub fn is_victim(&self, node: u32) -> bool {
        self.victim.get(node as usize).copied().unwrap_or(false)
    }

    /// Whether `node` is an attacker.
    pub fn is_attacker(&self, node: u32) -> bool {
        self.attacker.get(node as usize).copied().unwrap_or(false)
    }

    /// `frame` as attacker `from` sends it to `to`: unchanged unless `to` is a victim, else
    /// without honest providers' messages (`None`: nothing left to send). `provider_of`
    /// names a message's provider.
    pub fn filter(
        &self,
        from: u32,
        to: u32,
        frame: Frame,
        provider_of: impl Fn(MsgIdx) -> Option<u32>,
    ) -> Option<Frame> {
        if !self.is_attacker(from) || !self.is_victim(to) {
            return Some(frame);
        }
        let passes = |m: &MsgIdx| {
            provider_of(*m)
                .and_then(|p| self.attacker_provider.get(p as usize).copied())
                .unwrap_or(false)
        };
        match frame {
            Frame::Publish { msg, .. } if !passes(&msg) => None,
            Frame::IHave { topic, ids } => {
                let kept: Rc<[MsgIdx]> = ids.iter().copied().filter(passes).collect();
                (!kept.is_empty()).then_some(Frame::IHave { topic, ids: kept })
            }
            Frame::SyncResponse(page) => Some(Frame::SyncResponse(Box::new(SyncPage {
                offers: page.offers.iter().copied().filter(passes).collect(),
                withdrawals: page.withdrawals.iter().copied().filter(passes).collect(),
                next: page.next,
            }))),
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn eclipse() -> Eclipse {
        let adversary = Adversary {
            victims: 2,
            attackers: 3,
            ..Adversary::default()
        };
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        // Providers on nodes 0..4, the first two lying.
        Eclipse::choose(&mut rng, 20, &[0, 1, 2, 3], 2, &adversary)
    }

    #[test]
    fn victims_run_no_provider_and_attackers_include_the_liars() {
        let e = eclipse();
        assert_eq!(e.victims().len(), 2);
        assert_eq!(e.attackers().len(), 5);
        assert_eq!(&e.attackers()[..2], &[0, 1]);
        for &v in e.victims() {
            assert!(v >= 4 && e.is_victim(v) && !e.is_attacker(v));
        }
        for &a in &e.attackers()[2..] {
            assert!(a >= 4 && !e.is_victim(a));
        }
    }

    #[test]
    fn attackers_withhold_honest_messages_from_victims_only() {
        let e = eclipse();
        let (v, a) = (e.victims()[0], e.attackers()[3]);
        let honest_node = (0..20)
            .find(|n| !e.is_victim(*n) && !e.is_attacker(*n))
            .unwrap();
        // Message m comes from provider m % 4: 0 and 1 lie.
        let provider_of = |m: MsgIdx| Some(m % 4);
        let publish = |msg| Frame::Publish { msg, hops: 1 };
        assert!(e.filter(a, v, publish(2), provider_of).is_none());
        assert!(e.filter(a, v, publish(1), provider_of).is_some());
        assert!(e.filter(a, honest_node, publish(2), provider_of).is_some());
        assert!(e.filter(honest_node, v, publish(2), provider_of).is_some());
        let ihave = Frame::IHave {
            topic: 0,
            ids: Rc::from(vec![0, 2, 3, 5]),
        };
        match e.filter(a, v, ihave, provider_of) {
            Some(Frame::IHave { ids, .. }) => assert_eq!(&*ids, &[0, 5]),
            other => panic!("{other:?}"),
        }
        let page = Frame::SyncResponse(Box::new(SyncPage {
            offers: vec![1, 2, 3, 4],
            withdrawals: vec![6],
            next: None,
        }));
        match e.filter(a, v, page, provider_of) {
            Some(Frame::SyncResponse(p)) => {
                assert_eq!(p.offers, vec![1, 4]);
                assert!(p.withdrawals.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
