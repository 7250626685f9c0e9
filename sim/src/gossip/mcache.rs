//! The message cache: the last `history_length` heartbeats' messages, in windows. IWANT is
//! answered from any window; IHAVE advertises the newest `history_gossip` windows.

use std::collections::VecDeque;

use super::{MsgIdx, TopicIdx};

/// One cached message: its topic, id and the hop count it arrived with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cached {
    /// The topic.
    pub topic: TopicIdx,
    /// The message.
    pub msg: MsgIdx,
    /// Relays from the origin to this node.
    pub hops: u16,
}

/// History windows, newest first.
#[derive(Debug, Clone)]
pub struct MessageCache {
    windows: VecDeque<Vec<Cached>>,
    history_length: usize,
}

impl MessageCache {
    /// An empty cache of `history_length` windows (at least one).
    pub fn new(history_length: usize) -> Self {
        let history_length = history_length.max(1);
        MessageCache {
            windows: (0..history_length).map(|_| Vec::new()).collect(),
            history_length,
        }
    }

    /// Adds a message to the newest window.
    pub fn put(&mut self, entry: Cached) {
        if let Some(newest) = self.windows.front_mut() {
            newest.push(entry);
        }
    }

    /// The cached entry for `msg`, if still in any window.
    pub fn get(&self, msg: MsgIdx) -> Option<Cached> {
        self.windows
            .iter()
            .flat_map(|w| w.iter())
            .find(|c| c.msg == msg)
            .copied()
    }

    /// Ids of `topic` in the newest `windows` windows, newest first, at most `max`.
    pub fn gossip_ids(&self, topic: TopicIdx, windows: usize, max: usize) -> Vec<MsgIdx> {
        let mut ids = Vec::new();
        self.gossip_ids_into(topic, windows, max, &mut ids);
        ids
    }

    /// [`MessageCache::gossip_ids`] into `out` (cleared first), reusing its buffer.
    pub fn gossip_ids_into(
        &self,
        topic: TopicIdx,
        windows: usize,
        max: usize,
        out: &mut Vec<MsgIdx>,
    ) {
        out.clear();
        out.extend(
            self.windows
                .iter()
                .take(windows)
                .flat_map(|w| w.iter())
                .filter(|c| c.topic == topic)
                .map(|c| c.msg)
                .take(max),
        );
    }

    /// Whether no window holds anything.
    pub fn is_empty(&self) -> bool {
        self.windows.iter().all(Vec::is_empty)
    }

    /// Starts a new window, dropping the oldest (once per heartbeat; its buffer is reused).
    pub fn shift(&mut self) {
        let mut window = if self.windows.len() >= self.history_length {
            self.windows.pop_back().unwrap_or_default()
        } else {
            Vec::new()
        };
        window.clear();
        self.windows.push_front(window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_gossiped_for_history_gossip_and_served_for_history_length() {
        let mut cache = MessageCache::new(5);
        cache.put(Cached {
            topic: 0,
            msg: 7,
            hops: 2,
        });
        cache.put(Cached {
            topic: 1,
            msg: 8,
            hops: 1,
        });
        assert_eq!(cache.gossip_ids(0, 3, 10), vec![7]);
        for _ in 0..3 {
            cache.shift();
        }
        assert!(cache.gossip_ids(0, 3, 10).is_empty());
        assert_eq!(cache.get(7).map(|c| c.hops), Some(2));
        cache.shift();
        assert!(cache.get(7).is_some());
        cache.shift();
        assert!(cache.get(7).is_none());
        assert!(cache.is_empty());
    }
}
