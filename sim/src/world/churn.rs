//! Nodes coming and going, and the network splitting and healing.
//!
//! - A graceful leave first has a provider gossip a signed withdrawal of its offer (if
//!   `workload.withdraw_on_leave`), then after `churn.leave_grace` the node goes down as
//!   in a crash; meanwhile it still relays but no longer advertises.
//! - A crash resets the node's connections at once (peers see the connection close) and
//!   loses everything in memory: book, meshes, caches, scores. Known peers and the
//!   provider key survive (the node persists them). The node's offer store is not
//!   modelled, so a restarted node starts with an empty book and re-syncs.
//! - A (re)started node dials up to `outbound` of its known peers that are up, then random
//!   nodes to make up the number, and syncs with each new connection (both sides sync when
//!   a connection opens, as the node does). A provider advertises at once.
//! - A partition blocks frames between its sides at once; connections across it close
//!   after `link_timeout` (the node's ping timeout), and are redialled within
//!   `reconnect_delay` after the heal, which triggers sync on both sides.

use super::{Event, Sched, Status, World};
use crate::rng;
use crate::time::SimDuration;

impl World {
    pub(super) fn on_crash(
        &mut self,
        ctx: &mut impl Sched,
        n: u32,
        epoch: Option<u32>,
        restart: bool,
    ) {
        let history = self.params.history_length;
        let Some(node) = self.nodes.get(n as usize) else {
            return;
        };
        if !node.is_up() || epoch.is_some_and(|e| e != node.epoch) {
            return;
        }
        // A leaving node going down completes its leave (counted when it began).
        let leaving = node.leaving;
        let peers: Vec<u32> = node.peer_ids().to_vec();
        for peer in peers {
            self.unlink(n, peer);
        }
        if let Some(node) = self.nodes.get_mut(n as usize) {
            node.crash(history);
        }
        self.topology_epoch = self.topology_epoch.wrapping_add(1);
        if !leaving {
            self.metrics.churned("crash");
        }
        if restart {
            let mean = self.scenario.churn.mean_downtime.as_micros() as f64;
            let downtime = rng::exponential(ctx.rng(), mean).min(1e15) as u64;
            ctx.at(
                ctx.now().saturating_add(SimDuration::from_micros(downtime)),
                n,
                Event::Start,
            );
        }
    }

    /// A graceful stop: a provider withdraws its offer (when the scenario says so), and
    /// the node goes down after `churn.leave_grace`, time to flush its gossip.
    pub(super) fn on_leave(
        &mut self,
        ctx: &mut impl Sched,
        n: u32,
        epoch: Option<u32>,
        restart: bool,
    ) {
        let grace = self.scenario.churn.leave_grace.0;
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        if !node.is_up() || node.leaving || epoch.is_some_and(|e| e != node.epoch) {
            return;
        }
        node.leaving = true;
        let epoch = node.epoch;
        self.metrics.churned("leave");
        if self.scenario.workload.withdraw_on_leave {
            self.withdraw(ctx, n);
        }
        let down = ctx.now().saturating_add(grace);
        let event = Event::Crash {
            epoch: Some(epoch),
            restart,
        };
        ctx.at(down, n, event);
    }

    pub(super) fn on_start(&mut self, ctx: &mut impl Sched, n: u32) {
        let now = ctx.now();
        let outbound = self.scenario.nodes.outbound as usize;
        let slots = self.nodes.len() as u32;
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        let what = match node.status {
            Status::Up => return,
            Status::Pending => "join",
            Status::Down => "restart",
        };
        node.status = Status::Up;
        let known = node.known_peers.clone();
        let (epoch, provider) = (node.epoch, node.provider);
        self.metrics.churned(what);
        let mut dialed = 0;
        for peer in known {
            if dialed >= outbound {
                break;
            }
            if self.try_connect(ctx, n, peer) {
                dialed += 1;
            }
        }
        while dialed < outbound {
            let Some(peer) = self.random_dial_target(ctx.rng(), n, slots) else {
                break;
            };
            if self.try_connect(ctx, n, peer) {
                dialed += 1;
            }
        }
        self.schedule_timers(ctx, n, now);
        if provider.is_some() {
            ctx.at(now, n, Event::Advertise { epoch });
        }
        if let Some((at, event)) = self.schedule_random_crash(ctx.rng(), n, now) {
            ctx.at(at, n, event);
        }
    }

    /// A scheduled redial of `peer` by `n`.
    pub(super) fn dial(&mut self, ctx: &mut impl Sched, n: u32, peer: u32) {
        self.try_connect(ctx, n, peer);
    }

    /// Connects `a` to `b` if both are up, not yet connected and not partitioned, and has
    /// both sides sync; returns whether a connection opened.
    fn try_connect(&mut self, ctx: &mut impl Sched, a: u32, b: u32) -> bool {
        if a == b || !self.is_up(a) || !self.is_up(b) || self.net.blocked(a, b) {
            return false;
        }
        if !self.link(a, b) {
            return false;
        }
        self.request_sync(ctx, a, b, None);
        self.request_sync(ctx, b, a, None);
        true
    }

    pub(super) fn on_partition_start(&mut self, ctx: &mut impl Sched, index: u16) {
        let Some(partition) = self.scenario.partitions.get(usize::from(index)) else {
            return;
        };
        let sides: Vec<u8> = (0..self.nodes.len() as u32)
            .map(|n| {
                let region = usize::from(self.net.region_of(n));
                partition
                    .sides
                    .iter()
                    .position(|side| {
                        side.nodes.iter().any(|r| r.get_ref().contains(n))
                            || side.regions.iter().any(|name| {
                                self.scenario.region_index(name.get_ref()) == Some(region)
                            })
                    })
                    .map_or(0, |i| u8::try_from(i + 1).unwrap_or(u8::MAX))
            })
            .collect();
        self.net.start_partition(usize::from(index), sides);
        self.metrics.churned("partition");
        let timeout = ctx
            .now()
            .saturating_add(self.scenario.network.link_timeout.0);
        ctx.at(timeout, super::WORLD, Event::PartitionTimeout { index });
    }

    pub(super) fn on_partition_timeout(&mut self, index: u16) {
        if !self.net.partition_active(usize::from(index)) {
            return;
        }
        let mut cut = Vec::new();
        for (a, node) in self.nodes.iter().enumerate() {
            let a = a as u32;
            for &peer in node.peer_ids().iter().filter(|&&p| p > a) {
                if self.net.blocked(a, peer) {
                    cut.push((a, peer));
                }
            }
        }
        for &(a, b) in &cut {
            self.unlink(a, b);
        }
        if let Some(severed) = self.severed.get_mut(usize::from(index)) {
            severed.extend(cut);
        }
    }

    pub(super) fn on_partition_heal(&mut self, ctx: &mut impl Sched, index: u16) {
        if !self.net.heal_partition(usize::from(index)) {
            return;
        }
        self.metrics.churned("heal");
        let severed = self
            .severed
            .get_mut(usize::from(index))
            .map(std::mem::take)
            .unwrap_or_default();
        let window = self.scenario.network.reconnect_delay.as_micros().max(1);
        let now = ctx.now();
        for (a, b) in severed {
            let delay = rng::below(ctx.rng(), window);
            ctx.at(
                now.saturating_add(SimDuration::from_micros(delay)),
                a,
                Event::Connect { peer: b },
            );
        }
    }
}
