//! gossipsub at one node: receiving messages and control frames, and publishing a
//! provider's offers (the heartbeat is in `heartbeat`).

use agora_protocol::gossip::{GossipError, GossipMessage};
use agora_protocol::market::Verdict;

use super::{Message, Sched, SignedKey, World};
use crate::gossip::mcache::Cached;
use crate::gossip::score::{
    GOSSIP_THRESHOLD, GRAYLIST_THRESHOLD, PUBLISH_THRESHOLD, PeerScore, offence_points,
};
use crate::gossip::{Frame, MsgIdx, TopicIdx};
use crate::net_model::NetModel;
use crate::rng;
use crate::scenario::Subscribe;
use crate::workload::timestamp;

/// Whether node `peer` subscribes to `topic` (known to everyone at once in the model).
pub(super) fn subscribes(mode: Subscribe, net: &NetModel, peer: u32, topic: TopicIdx) -> bool {
    match mode {
        Subscribe::All => true,
        Subscribe::Own => net.region_of(peer) == topic,
    }
}

/// The outcome of decoding message `msg` on its topic: computed through the real
/// `GossipMessage::decode_on_topic` (with the memoising verifier) by the first receiver,
/// then shared. Decoding is a pure function of the bytes and the topic, so every node gets
/// exactly what its own decode would give; the cost (key decompression, postcard, the
/// canonical re-encode) is paid once per distinct message instead of once per receipt, and
/// every book that keeps the offer holds a handle on this one decoded copy (a `Signed`
/// clone shares it).
pub(super) fn decoded(
    messages: &mut [Message],
    topic_names: &[String],
    verifier: &crate::verifier::MemoVerifier,
    msg: MsgIdx,
) -> Result<GossipMessage, GossipError> {
    let Some(message) = messages.get_mut(msg as usize) else {
        return Err(GossipError::UnknownKind(None));
    };
    message
        .decoded
        .get_or_insert_with(|| {
            let topic = topic_names
                .get(usize::from(message.topic))
                .map_or("", String::as_str);
            GossipMessage::decode_on_topic(&message.bytes, topic, verifier)
        })
        .clone()
}

impl World {
    /// A full message from `from`: duplicate check, validation, delivery, forwarding.
    pub(super) fn on_publish(
        &mut self,
        ctx: &mut impl Sched,
        n: u32,
        from: u32,
        msg: MsgIdx,
        hops: u16,
    ) {
        let now = ctx.now();
        let Some(Message {
            topic, provider, ..
        }) = self.messages.get(msg as usize)
        else {
            return;
        };
        let (topic, provider) = (*topic, *provider);
        let origin = self.providers.get(provider as usize).map(|p| p.node);
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        if !node.subscribes(topic) || !node.score_at_least(from, GRAYLIST_THRESHOLD, now) {
            return;
        }
        if !node.seen.insert(msg, now) {
            node.traffic.duplicates += 1;
            self.metrics.duplicate();
            return;
        }
        let decoded = decoded(&mut self.messages, &self.topic_names, &self.verifier, msg);
        let verdict = node.market.on_decoded(decoded, timestamp(now)).verdict;
        self.metrics.verdict(verdict.label());
        match verdict {
            Verdict::Accept | Verdict::Known => node.rescore(from, PeerScore::first_delivery),
            Verdict::Ignore(_, offence) => {
                if let Some(offence) = offence {
                    node.rescore(from, |s| s.penalise(offence_points(offence)));
                }
                return;
            }
            Verdict::Reject(_) => {
                node.rescore(from, PeerScore::invalid_message);
                return;
            }
        }
        node.mcache.put(Cached { topic, msg, hops });
        let mut targets = std::mem::take(&mut self.scratch);
        targets.clear();
        if let Some(mesh) = node.mesh(topic) {
            targets.extend(
                mesh.members
                    .iter()
                    .map(|(p, _)| *p)
                    .filter(|&p| p != from && Some(p) != origin),
            );
        }
        // The node acts on the message once validated: the book shows it and it is
        // forwarded then.
        let validated = now.saturating_add(self.params.validation_delay);
        if verdict == Verdict::Accept {
            self.metrics.delivered(msg, n, validated, Some(hops));
        }
        let next = hops.saturating_add(1);
        for &to in &targets {
            self.send_at(ctx, validated, n, to, Frame::Publish { msg, hops: next });
        }
        self.scratch = targets;
    }

    /// IHAVE: ask (IWANT) for the ids not yet seen nor already asked for.
    pub(super) fn on_ihave(
        &mut self,
        ctx: &mut impl Sched,
        n: u32,
        from: u32,
        topic: TopicIdx,
        ids: &[MsgIdx],
    ) {
        let now = ctx.now();
        let max = self.params.max_ihave_length;
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        if !node.subscribes(topic) || !node.score_at_least(from, GOSSIP_THRESHOLD, now) {
            return;
        }
        let wanted: Vec<MsgIdx> = ids
            .iter()
            .copied()
            .filter(|id| !node.seen.contains(*id) && node.pending_iwant.binary_search(id).is_err())
            .take(max)
            .collect();
        if wanted.is_empty() {
            return;
        }
        node.pending_iwant.extend_from_slice(&wanted);
        node.pending_iwant.sort_unstable();
        self.send(ctx, n, from, Frame::IWant { ids: wanted.into() });
    }

    /// IWANT: send the requested messages still in the message cache.
    pub(super) fn on_iwant(&mut self, ctx: &mut impl Sched, n: u32, from: u32, ids: &[MsgIdx]) {
        let now = ctx.now();
        let Some(node) = self.nodes.get(n as usize) else {
            return;
        };
        if !node.score_at_least(from, GOSSIP_THRESHOLD, now) {
            return;
        }
        let found: Vec<Cached> = ids.iter().filter_map(|id| node.mcache.get(*id)).collect();
        for cached in found {
            let hops = cached.hops.saturating_add(1);
            self.send(
                ctx,
                n,
                from,
                Frame::Publish {
                    msg: cached.msg,
                    hops,
                },
            );
        }
    }

    /// GRAFT: accept the peer into the mesh, or answer PRUNE.
    pub(super) fn on_graft(&mut self, ctx: &mut impl Sched, n: u32, from: u32, topic: TopicIdx) {
        let now = ctx.now();
        let (d_hi, backoff) = (self.params.d_hi, self.params.prune_backoff);
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        let non_negative = node.score_at_least(from, 0.0, now);
        let backing_off = node.peer(from).is_some_and(|p| p.backing_off(topic, now));
        let Some(mesh) = node.mesh_mut(topic) else {
            self.send(ctx, n, from, Frame::Prune { topic });
            return;
        };
        if mesh.members.iter().any(|(p, _)| *p == from) {
            return;
        }
        if !backing_off && non_negative && mesh.members.len() < d_hi {
            mesh.members.push((from, now));
            return;
        }
        node.back_off(from, topic, now.saturating_add(backoff));
        self.send(ctx, n, from, Frame::Prune { topic });
    }

    /// PRUNE: leave the peer's mesh and back off.
    pub(super) fn on_prune(&mut self, ctx: &mut impl Sched, n: u32, from: u32, topic: TopicIdx) {
        let now = ctx.now();
        let backoff = self.params.prune_backoff;
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        if let Some(mesh) = node.mesh_mut(topic) {
            mesh.members.retain(|(p, _)| *p != from);
        }
        node.back_off(from, topic, now.saturating_add(backoff));
    }

    /// A provider signs a fresh offer and publishes it on its region's topic.
    pub(super) fn advertise(&mut self, ctx: &mut impl Sched, n: u32) {
        let now = ctx.now();
        let topic = self.net.region_of(n);
        let Some(node) = self.nodes.get(n as usize) else {
            return;
        };
        let (Some(index), epoch) = (node.provider, node.epoch) else {
            return;
        };
        if node.leaving {
            return;
        }
        let region = self
            .scenario
            .nodes
            .regions
            .get(usize::from(topic))
            .map(|r| r.name.get_ref().clone())
            .unwrap_or_default();
        let ttl = core::time::Duration::from_micros(self.scenario.workload.offer_ttl.as_micros());
        let memory_mib = 1024 * (1 + rng::below(ctx.rng(), 64));
        if self.providers.get(index as usize).is_none() {
            return;
        }
        let next = now.saturating_add(self.scenario.workload.readvertise.0);
        ctx.at(next, n, super::Event::Advertise { epoch });
        let terms = self.market.as_deref_mut().and_then(|m| {
            let env = crate::market::Env {
                net: &mut self.net,
                nodes: &self.nodes,
                verifier: &self.verifier,
            };
            m.offer_terms(index, &env, timestamp(now))
        });
        let Some(slot) = self.providers.get_mut(index as usize) else {
            return;
        };
        let Ok(signed) =
            slot.provider
                .sign_offer_with(timestamp(now), ttl, &region, memory_mib, terms.as_ref())
        else {
            return;
        };
        slot.latest = Some(self.messages.len() as MsgIdx);
        if let Some(market) = self.market.as_deref_mut() {
            market.offer_published(index, &signed);
        }
        self.publish(ctx, n, index, GossipMessage::Offer(signed));
    }

    /// A leaving provider withdraws everything it offered, on its region's topic.
    pub(super) fn withdraw(&mut self, ctx: &mut impl Sched, n: u32) {
        let now = ctx.now();
        let Some(index) = self.node(n).and_then(|node| node.provider) else {
            return;
        };
        let Some(slot) = self.providers.get_mut(index as usize) else {
            return;
        };
        let Some(Ok(signed)) = slot.provider.sign_withdrawal(timestamp(now)) else {
            return;
        };
        slot.latest = None;
        self.publish(ctx, n, index, GossipMessage::Withdrawal(signed));
    }

    /// Publishes provider `index`'s own message from its node `n`: recorded once for the
    /// run, applied to its own book, cached, and sent to every subscribed peer (flood
    /// publishing) or the mesh.
    fn publish(&mut self, ctx: &mut impl Sched, n: u32, index: u32, gossip: GossipMessage) {
        let now = ctx.now();
        let topic = self.net.region_of(n);
        let msg = self.messages.len() as MsgIdx;
        let (seq, withdrawal) = match &gossip {
            GossipMessage::Offer(o) => (o.body().seq, false),
            GossipMessage::Withdrawal(w) => (w.body().seq, true),
        };
        self.messages.push(Message {
            topic,
            bytes: gossip.encode(),
            provider: index,
            seq,
            withdrawal,
            decoded: None,
        });
        self.signed_index.insert(SignedKey::of(&gossip), msg);
        let eligible = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.is_up() && node.subscribes(topic))
            .map(|(i, _)| i as u32);
        self.metrics
            .published(msg, now, topic, n, withdrawal, eligible);
        let flood = self.params.flood_publish;
        let mode = self.scenario.gossip.subscribe;
        let net = &self.net;
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        let _ = node.market.apply_own(gossip, timestamp(now));
        node.seen.insert(msg, now);
        node.mcache.put(Cached {
            topic,
            msg,
            hops: 0,
        });
        let targets: Vec<u32> = if flood {
            node.peer_ids()
                .iter()
                .copied()
                .filter(|&p| subscribes(mode, net, p, topic))
                .filter(|&p| node.score_at_least(p, PUBLISH_THRESHOLD, now))
                .collect()
        } else {
            node.mesh(topic)
                .map(|m| m.members.iter().map(|(p, _)| *p).collect())
                .unwrap_or_default()
        };
        for to in targets {
            self.send(ctx, n, to, Frame::Publish { msg, hops: 1 });
        }
    }
}
