//! The message cache: the last `history_length` heartbeats' messages, in windows. IWANT is
//! answered from any window; IHAVE advertises the newest `history_gossip` windows.
//!
//! Every node's heartbeat reads its cache, and at 10,000 nodes the cache is rarely in the
//! CPU's caches, so it is one vector of entries tagged with their window (oldest first)
//! rather than a ring of per-window vectors: one pointer to follow instead of one per
//! window.

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

/// History windows: entries in arrival order, each tagged with the window it arrived in.
#[derive(Debug, Clone)]
pub struct MessageCache {
    /// `(window, entry)`, windows ascending (so oldest first).
    entries: Vec<(u32, Cached)>,
    /// The newest window's number (one per heartbeat: 2^32 heartbeats are 136 simulated
    /// years at the usual second, far beyond any run, and it saturates rather than wraps).
    newest: u32,
    history_length: usize,
}

impl MessageCache {
    /// An empty cache of `history_length` windows (at least one).
    pub fn new(history_length: usize) -> Self {
        MessageCache {
            entries: Vec::new(),
            newest: 0,
            history_length: history_length.max(1),
        }
    }

    /// Adds a message to the newest window.
    pub fn put(&mut self, entry: Cached) {
        self.entries.push((self.newest, entry));
    }

    /// The entries of window `newest - age`, in arrival order.
    fn window(&self, age: u32) -> &[(u32, Cached)] {
        let Some(window) = self.newest.checked_sub(age) else {
            return &[];
        };
        let start = self.entries.partition_point(|(w, _)| *w < window);
        let end = self.entries.partition_point(|(w, _)| *w <= window);
        self.entries.get(start..end).unwrap_or_default()
    }

    /// The windows newest first, each in arrival order, at most `windows` of them.
    fn newest_windows(&self, windows: usize) -> impl Iterator<Item = &Cached> {
        let windows = u32::try_from(windows.min(self.history_length)).unwrap_or(u32::MAX);
        (0..windows).flat_map(|age| self.window(age).iter().map(|(_, c)| c))
    }

    /// The cached entry for `msg`, if still in any window.
    pub fn get(&self, msg: MsgIdx) -> Option<Cached> {
        self.newest_windows(self.history_length)
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
            self.newest_windows(windows)
                .filter(|c| c.topic == topic)
                .map(|c| c.msg)
                .take(max),
        );
    }

    /// Whether no window holds anything.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Starts a new window, dropping the oldest (once per heartbeat).
    pub fn shift(&mut self) {
        self.newest = self.newest.saturating_add(1);
        // Windows older than `newest - (history_length - 1)` fall out.
        let older = u32::try_from(self.history_length - 1).unwrap_or(u32::MAX);
        let keep_from = self.newest.saturating_sub(older);
        let stale = self.entries.partition_point(|(w, _)| *w < keep_from);
        if stale > 0 {
            self.entries.drain(..stale);
        }
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

    /// The plain model: one vector per window, newest first.
    struct Windows(std::collections::VecDeque<Vec<Cached>>, usize);

    impl Windows {
        fn gossip(&self, topic: TopicIdx, windows: usize, max: usize) -> Vec<MsgIdx> {
            let all = self.0.iter().take(windows).flat_map(|w| w.iter());
            let ids = all.filter(|c| c.topic == topic).map(|c| c.msg);
            ids.take(max).collect()
        }

        fn get(&self, msg: MsgIdx) -> Option<Cached> {
            self.0
                .iter()
                .flat_map(|w| w.iter())
                .find(|c| c.msg == msg)
                .copied()
        }

        fn shift(&mut self) {
            if self.0.len() >= self.1 {
                self.0.pop_back();
            }
            self.0.push_front(Vec::new());
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_one_vector_per_window(
            history in 1usize..6,
            ops in proptest::collection::vec((0u8..4, 0u32..40, 0u16..3, 0usize..8), 0..200),
        ) {
            let mut cache = MessageCache::new(history);
            let mut model = Windows((0..history).map(|_| Vec::new()).collect(), history);
            for (op, msg, topic, n) in ops {
                match op {
                    0 => {
                        cache.shift();
                        model.shift();
                    }
                    1 => {
                        let entry = Cached { topic, msg, hops: topic };
                        cache.put(entry);
                        if let Some(newest) = model.0.front_mut() {
                            newest.push(entry);
                        }
                    }
                    2 => proptest::prop_assert_eq!(cache.get(msg), model.get(msg)),
                    _ => proptest::prop_assert_eq!(
                        cache.gossip_ids(topic, n, n + 1),
                        model.gossip(topic, n, n + 1)
                    ),
                }
                let model_empty = model.0.iter().all(Vec::is_empty);
                proptest::prop_assert_eq!(cache.is_empty(), model_empty);
            }
        }
    }
}
