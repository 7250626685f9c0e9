//! Periodic metrics samples: live nodes, mesh degrees, book completeness.

use super::{Event, Sched, WORLD, World};
use crate::metrics::Sample;
use crate::time::SimTime;
use crate::workload::timestamp;

impl World {
    pub(super) fn on_sample(&mut self, ctx: &mut impl Sched) {
        let now = ctx.now();
        let ts = timestamp(now);
        // The providers' current offers: their latest messages, if not yet expired.
        let current: Vec<(agora_protocol::AgoraId, u64, crate::gossip::TopicIdx)> = self
            .providers
            .iter()
            .filter_map(|slot| {
                let msg = self.messages.get(slot.latest? as usize)?;
                let expired = self
                    .metrics
                    .messages
                    .get(slot.latest? as usize)
                    .is_some_and(|m| {
                        m.published_at
                            .saturating_add(self.scenario.workload.offer_ttl.0)
                            <= now
                    });
                (!expired).then_some((slot.provider.id(), msg.seq, msg.topic))
            })
            .collect();
        let mut sample = Sample {
            at: now,
            ..Sample::default()
        };
        let (mut completeness, mut books) = (0.0, 0usize);
        for node in self.nodes.iter().filter(|n| n.is_up()) {
            sample.live += 1;
            for mesh in &node.meshes {
                let degree = mesh.members.len();
                if sample.mesh_degrees.len() <= degree {
                    sample.mesh_degrees.resize(degree + 1, 0);
                }
                if let Some(count) = sample.mesh_degrees.get_mut(degree) {
                    *count += 1;
                }
            }
            let book = node.market.book();
            books += book.len();
            // Offers on the topics this node follows, and how many its book holds.
            let (mut wanted, mut held) = (0usize, 0usize);
            for (id, seq, topic) in &current {
                if node.subscribes(*topic) {
                    wanted += 1;
                    held += usize::from(book.get(id, ts).is_some_and(|o| o.body().seq >= *seq));
                }
            }
            completeness += if wanted == 0 {
                1.0
            } else {
                held as f64 / wanted as f64
            };
        }
        let live = f64::from(sample.live.max(1));
        sample.completeness = completeness / live;
        sample.book_mean = books as f64 / live;
        self.metrics.sample(sample);
        self.finish();
        let end = SimTime::ZERO.saturating_add(self.scenario.duration.0);
        if now < end {
            let every = self.scenario.metrics.sample_every.0;
            let next = now
                .saturating_add(every)
                .min(end)
                .max(now.saturating_add(crate::SimDuration::from_micros(1)));
            ctx.at(next.min(end), WORLD, Event::Sample);
        }
    }
}
