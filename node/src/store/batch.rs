//! [`WriteBatch`]: an ordered list of writes across columns, applied atomically by
//! [`Store::write`](super::Store::write).

use super::Column;

/// One write of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` in `column` to `value`.
    Put {
        /// The column written.
        column: Column,
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key` from `column`.
    Delete {
        /// The column written.
        column: Column,
        /// The key.
        key: Vec<u8>,
    },
}

/// Writes across any columns, applied in order and atomically by
/// [`Store::write`](super::Store::write). Later operations on a key win over earlier ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a write setting `key` in `column` to `value`.
    pub fn put(
        &mut self,
        column: Column,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push(BatchOp::Put {
            column,
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Adds a removal of `key` from `column`.
    pub fn delete(&mut self, column: Column, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp::Delete {
            column,
            key: key.into(),
        });
        self
    }

    /// The number of operations in the batch.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, in the order they will be applied.
    #[must_use]
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }
}

impl IntoIterator for WriteBatch {
    type Item = BatchOp;
    type IntoIter = std::vec::IntoIter<BatchOp>;

    fn into_iter(self) -> Self::IntoIter {
        self.ops.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keeps_order_and_counts() {
        let mut batch = WriteBatch::new();
        assert!(batch.is_empty());
        batch
            .put(Column::Peers, b"k", b"v")
            .delete(Column::Offers, vec![1, 2]);
        assert_eq!(batch.len(), 2);
        assert!(!batch.is_empty());
        assert_eq!(
            batch.ops(),
            [
                BatchOp::Put {
                    column: Column::Peers,
                    key: b"k".to_vec(),
                    value: b"v".to_vec()
                },
                BatchOp::Delete {
                    column: Column::Offers,
                    key: vec![1, 2]
                },
            ]
        );
    }
}
