//! The gossipsub heartbeat at one node: score decay, mesh maintenance, IHAVE gossip and
//! the cache shifts.
//!
//! It runs at every node about once a second, so it reuses [`Scratch`] buffers rather
//! than allocating its lists anew: the draws from the RNG, and so the run, are exactly
//! those of building each list afresh.

use std::rc::Rc;

use super::gossip::subscribes;
use super::{Sched, World};
use crate::gossip::mesh::{self, Candidate, Degree, MeshChanges};
use crate::gossip::score::GOSSIP_THRESHOLD;
use crate::gossip::{Frame, MsgIdx};
use crate::rng;
use crate::time::SimDuration;

/// The heartbeat's reusable lists.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// `(peer, micros in one mesh)`, sorted by peer.
    in_mesh: Vec<(u32, u64)>,
    /// `(peer, score)`, sorted by peer.
    scores: Vec<(u32, f64)>,
    members: Vec<Candidate>,
    outside: Vec<Candidate>,
    graftable: Vec<Candidate>,
    eligible: Vec<u32>,
    targets: Vec<u32>,
    ids: Vec<MsgIdx>,
    changes: MeshChanges,
    mesh: mesh::Scratch,
    sends: Vec<(u32, Frame)>,
}

impl World {
    /// The heartbeat: score decay, mesh maintenance, IHAVE gossip, cache shifts.
    pub(super) fn heartbeat(&mut self, ctx: &mut impl Sched, n: u32) {
        let now = ctx.now();
        let p = &self.params;
        let degree = Degree {
            d: p.d,
            d_lo: p.d_lo,
            d_hi: p.d_hi,
            d_score: p.d_score,
        };
        let (d_lazy, gossip_factor, history_gossip, max_ihave) = (
            p.d_lazy,
            p.gossip_factor,
            p.history_gossip,
            p.max_ihave_length,
        );
        let (backoff, seen_ttl, heartbeat) = (p.prune_backoff, p.seen_ttl, p.heartbeat);
        let mode = self.scenario.gossip.subscribe;
        let decay = self.decay;
        let net = &self.net;
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        let s = &mut self.heartbeat_scratch;
        node.pending_iwant.clear();
        node.decay_scores(&decay, now);
        // Each peer's score once per heartbeat, with its time in mesh summed over the
        // meshes: both lists are sorted by peer, so one merge pass pairs them.
        s.in_mesh.clear();
        s.in_mesh.extend(
            node.meshes
                .iter()
                .flat_map(|m| m.members.iter())
                .map(|(p, since)| (*p, now.saturating_since(*since).as_micros())),
        );
        s.in_mesh.sort_unstable_by_key(|(p, _)| *p);
        s.scores.clear();
        let mut in_mesh = s.in_mesh.iter().peekable();
        for peer in node.peers() {
            let mut micros = 0u64;
            while let Some(&&(p, t)) = in_mesh.peek() {
                if p > peer.node {
                    break;
                }
                if p == peer.node {
                    micros += t;
                }
                in_mesh.next();
            }
            let score = peer.score.value(SimDuration::from_micros(micros));
            s.scores.push((peer.node, score));
        }
        let scores = &s.scores;
        let score = |peer: u32| {
            scores
                .binary_search_by_key(&peer, |(p, _)| *p)
                .ok()
                .and_then(|i| scores.get(i))
                .map_or(0.0, |(_, s)| *s)
        };
        s.sends.clear();
        for i in 0..node.meshes.len() {
            let Some(mesh) = node.meshes.get(i) else {
                continue;
            };
            let topic = mesh.topic;
            s.members.clear();
            s.members
                .extend(mesh.members.iter().map(|(p, _)| Candidate {
                    node: *p,
                    score: score(*p),
                }));
            s.outside.clear();
            s.graftable.clear();
            for peer in node.peers() {
                if !subscribes(mode, net, peer.node, topic)
                    || s.members.iter().any(|m| m.node == peer.node)
                {
                    continue;
                }
                let candidate = Candidate {
                    node: peer.node,
                    score: score(peer.node),
                };
                s.outside.push(candidate);
                if !peer.backing_off(topic, now) {
                    s.graftable.push(candidate);
                }
            }
            mesh::maintain_into(
                ctx.rng(),
                &s.members,
                &s.graftable,
                degree,
                &mut s.changes,
                &mut s.mesh,
            );
            let changes = &s.changes;
            if let Some(mesh) = node.mesh_mut(topic) {
                if !changes.prune.is_empty() {
                    mesh.members.retain(|(p, _)| !changes.prune.contains(p));
                }
                mesh.members.extend(changes.graft.iter().map(|&g| (g, now)));
            }
            for &pruned in &changes.prune {
                node.back_off(pruned, topic, now.saturating_add(backoff));
                s.sends.push((pruned, Frame::Prune { topic }));
            }
            s.sends
                .extend(changes.graft.iter().map(|&g| (g, Frame::Graft { topic })));
            node.mcache
                .gossip_ids_into(topic, history_gossip, max_ihave, &mut s.ids);
            if s.ids.is_empty() {
                continue;
            }
            s.eligible.clear();
            s.eligible.extend(
                s.outside
                    .iter()
                    .filter(|c| c.score >= GOSSIP_THRESHOLD && !changes.graft.contains(&c.node))
                    .map(|c| c.node),
            );
            let count = mesh::gossip_target_count(s.eligible.len(), d_lazy, gossip_factor);
            rng::choose_into(ctx.rng(), &s.eligible, count, &mut s.targets);
            if s.targets.is_empty() {
                continue;
            }
            // One copy of the ids, shared by every IHAVE of this topic.
            let ids: Rc<[MsgIdx]> = Rc::from(s.ids.as_slice());
            for &target in &s.targets {
                let ids = Rc::clone(&ids);
                s.sends.push((target, Frame::IHave { topic, ids }));
            }
        }
        node.mcache.shift();
        node.seen.expire(now, seen_ttl);
        let epoch = node.epoch;
        let mut sends = std::mem::take(&mut self.heartbeat_scratch.sends);
        for (to, frame) in sends.drain(..) {
            self.send(ctx, n, to, frame);
        }
        self.heartbeat_scratch.sends = sends;
        ctx.at(
            now.saturating_add(heartbeat),
            n,
            super::Event::Heartbeat { epoch },
        );
    }
}
