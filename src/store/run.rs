//! A run of transactions held in memory between reading them and using them: the entries a
//! backup service reads off its logs before sending them, a backup applies in one durable run,
//! a rewind replays at once. Each bounds its run by a count and a weight of its own measure
//! (wire bytes, record images, an estimate of bytes), so memory stays bounded whatever the range.
//!
//! Owns: the bound and the entries. Must not touch: reading, sending or applying them.

use crate::store::log::{RecordImage, TxEntry};

/// The memory `entry` takes: itself and its record images (a block record's image carries its
/// data inline, so it is larger than its bytes on disk). A weight for runs bounded in bytes.
pub fn memory_of(entry: &TxEntry) -> usize {
    std::mem::size_of::<TxEntry>() + entry.records.len() * std::mem::size_of::<RecordImage>()
}

/// Transactions read and not yet used, at most `max_entries` of them or `max_weight` of
/// weight, whichever comes first.
#[derive(Debug)]
pub struct TxRun {
    entries: Vec<TxEntry>,
    /// The sum of the weights the entries were pushed with.
    weight: usize,
    max_entries: usize,
    max_weight: usize,
}

impl TxRun {
    /// An empty run bounded by `max_entries` (at least 1) and `max_weight`.
    pub fn new(max_entries: usize, max_weight: usize) -> TxRun {
        TxRun {
            entries: Vec::new(),
            weight: 0,
            max_entries: max_entries.max(1),
            max_weight,
        }
    }

    /// Whether the run must be used before another transaction joins it: it holds its most
    /// entries, or its weight reached the bound.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries || self.weight >= self.max_weight
    }

    /// Adds `entry`, of `weight` in the run's measure.
    pub fn push(&mut self, entry: TxEntry, weight: usize) {
        self.weight += weight;
        self.entries.push(entry);
    }

    pub fn entries(&self) -> &[TxEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The run's transactions, leaving it empty.
    pub fn take(&mut self) -> Vec<TxEntry> {
        self.weight = 0;
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::log::TxState;

    fn tx(id: u64) -> TxEntry {
        TxEntry {
            tx_id: id,
            timestamp_millis: 0,
            after: TxState::empty(),
            records: Vec::new(),
        }
    }

    /// Pushes `n` transactions of `weight` each, and says whether the run is full then.
    fn full_after(run: &mut TxRun, n: usize, weight: usize) -> bool {
        for id in 0..n {
            run.push(tx(id as u64), weight);
        }
        run.is_full()
    }

    #[test]
    fn pr_6_an_entrys_memory_counts_every_image_whole() {
        use crate::store::format::BlockRecord;
        let image = std::mem::size_of::<RecordImage>();
        assert!(
            image >= std::mem::size_of::<BlockRecord>(),
            "PR-6: an image holds a block's data"
        );
        let mut entry = tx(1);
        let alone = memory_of(&entry);
        assert!(alone >= std::mem::size_of::<TxEntry>(), "PR-6: {alone}");
        entry.records = (0..1000)
            .map(|id| RecordImage::Block(id, BlockRecord::unused()))
            .collect();
        let counted = memory_of(&entry);
        assert!(
            (alone + 1000 * image..=2 * (alone + 1000 * image)).contains(&counted),
            "PR-6: 1,000 images of {image} bytes and the entry ({alone}) weigh {counted}"
        );
    }

    #[test]
    fn pit_7_a_run_is_full_at_its_count_or_its_weight_whichever_comes_first() {
        let mut run = TxRun::new(4, 100);
        assert!(!run.is_full() && run.is_empty(), "PIT-7: an empty run");
        assert!(!full_after(&mut run, 3, 1), "PIT-7: 3 of 4 entries");
        assert!(full_after(&mut run, 1, 1), "PIT-7: 4 entries, light ones");
        assert_eq!(
            (run.take().len(), run.is_full(), run.is_empty()),
            (4, false, true),
            "PIT-7: taking empties the run and its weight"
        );
        assert!(!full_after(&mut run, 1, 99), "PIT-7: a weight of 99 of 100");
        assert!(
            full_after(&mut run, 1, 1),
            "PIT-7: a weight of 100, in 2 entries"
        );
        assert_eq!(run.entries().len(), 2, "PIT-7");
        run.take();
        assert!(
            full_after(&mut run, 1, 150),
            "PIT-7: one entry over the weight"
        );
        let mut one = TxRun::new(0, 100);
        assert!(
            !one.is_full(),
            "PIT-7: a run bounded at no entries still takes one, or a reader would read nothing"
        );
        assert!(full_after(&mut one, 1, 0), "PIT-7: and then it is full");
    }
}
