//! What a flush did with each intent.

/// What became of one intent at flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fate {
    /// Handed to the executor, which accepted it.
    Dispatched,
    /// Dropped at flush by the named policy.
    Dropped {
        /// The policy's [`name`](crate::Policy::name).
        policy: &'static str,
    },
    /// Allowed, and handed to the scope kind's deferred dispatch
    /// ([`ScopeKind::schedule`](crate::ScopeKind::schedule)).
    Deferred,
}

/// One line of a [`FlushReport`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportEntry {
    /// The task's stable name.
    pub task: &'static str,
    /// What happened to it.
    pub fate: Fate,
}

/// What a flush did, intent by intent, in enqueue order (rule 6).
///
/// Intents handed to an enclosing scope (captured) are not listed: they are
/// that scope's to report.
///
/// [`ActiveScope::flush`](crate::ActiveScope::flush) and
/// [`Batch::dispatch`](crate::Batch::dispatch) list every intent. The closure
/// and future forms ([`Scope::run`](crate::Scope::run) and friends) return no
/// report, so they record only what is exceptional: the report inside their
/// [`DispatchError`](crate::DispatchError) lists the dropped intents and
/// counts, without naming, the dispatched ones.
///
/// Consecutive intents of one task with one fate are kept as one run, so a
/// flush that drops a hundred thousand intents of one task records one line,
/// not a hundred thousand.
#[derive(Clone, Debug, Default)]
pub struct FlushReport {
    pub(crate) runs: Vec<(ReportEntry, usize)>,
    pub(crate) dispatched: usize,
    pub(crate) captured: usize,
    pub(crate) detailed: bool,
    pub(crate) receipts: Vec<crate::Receipt>,
}

/// Reports are equal when they list the same entries, counts and receipts,
/// however the entries are grouped into runs.
impl PartialEq for FlushReport {
    fn eq(&self, other: &Self) -> bool {
        self.dispatched == other.dispatched
            && self.captured == other.captured
            && self.detailed == other.detailed
            && self.receipts == other.receipts
            && self.entries().eq(other.entries())
    }
}

impl Eq for FlushReport {}

/// The entries of a [`FlushReport`], in order: see [`FlushReport::entries`].
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    runs: std::slice::Iter<'a, (ReportEntry, usize)>,
    /// The run being walked, and how many of it are left.
    current: Option<(ReportEntry, usize)>,
    left: usize,
}

impl Iterator for Entries<'_> {
    type Item = ReportEntry;

    fn next(&mut self) -> Option<ReportEntry> {
        loop {
            match &mut self.current {
                Some((entry, count)) if *count > 0 => {
                    *count -= 1;
                    self.left -= 1;
                    return Some(*entry);
                }
                _ => self.current = Some(*self.runs.next()?),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Entries<'_> {}

impl FlushReport {
    /// Every intent this flush recorded, in order.
    pub fn entries(&self) -> Entries<'_> {
        Entries {
            runs: self.runs.iter(),
            current: None,
            left: self.runs.iter().map(|(_, count)| count).sum(),
        }
    }

    /// Records one intent's fate.
    #[inline]
    pub(crate) fn push(&mut self, task: &'static str, fate: Fate) {
        // Names compare by address, as the constants they are: no call to
        // compare bytes. Equal names at two addresses only start a new run.
        if let Some((last, count)) = self.runs.last_mut()
            && std::ptr::eq(last.task, task)
            && same_fate(last.fate, fate)
        {
            *count += 1;
            return;
        }
        self.runs.push((ReportEntry { task, fate }, 1));
    }

    /// The names of the dispatched tasks, in dispatch order.
    pub fn dispatched(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.with_fate(|fate| fate == Fate::Dispatched)
    }

    /// How many intents were dispatched (exact even where names were not
    /// recorded).
    pub fn dispatched_count(&self) -> usize {
        self.dispatched
    }

    /// Whether every intent is listed, not only the dropped ones.
    pub fn is_detailed(&self) -> bool {
        self.detailed
    }

    /// The dropped tasks, each with the policy that dropped it.
    pub fn dropped(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.entries().filter_map(|e| match e.fate {
            Fate::Dropped { policy } => Some((e.task, policy)),
            _ => None,
        })
    }

    /// The names of the tasks whose dispatch the scope kind deferred.
    pub fn deferred(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.with_fate(|fate| fate == Fate::Deferred)
    }

    /// What a queue executor recorded about the intents it handed to its
    /// engine: one [`Receipt`](crate::Receipt) per confirmed intent, with the
    /// engine's job id, in the order the engine confirmed them. Empty for
    /// executors that record none ([`record_receipts`](crate::record_receipts)).
    pub fn receipts(&self) -> &[crate::Receipt] {
        &self.receipts
    }

    /// How many intents were handed to an enclosing scope instead of being
    /// judged here.
    pub fn captured(&self) -> usize {
        self.captured
    }

    fn with_fate(&self, keep: fn(Fate) -> bool) -> impl Iterator<Item = &'static str> + '_ {
        self.entries().filter(move |e| keep(e.fate)).map(|e| e.task)
    }

    pub(crate) fn mark(&mut self, from: Fate, to: Fate) {
        for (entry, _) in &mut self.runs {
            if entry.fate == from {
                entry.fate = to;
            }
        }
    }

    /// Keeps only the first `kept` dispatched entries: a dispatch that
    /// failed part-way dispatched no more.
    pub(crate) fn keep_dispatched(&mut self, kept: usize) {
        let mut left = kept;
        self.runs.retain_mut(|(entry, count)| {
            if entry.fate != Fate::Dispatched {
                return true;
            }
            *count = (*count).min(left);
            left -= *count;
            *count > 0
        });
    }
}

/// Whether two fates are one, comparing a dropping policy's name by address.
#[inline]
fn same_fate(a: Fate, b: Fate) -> bool {
    match (a, b) {
        (Fate::Dropped { policy: a }, Fate::Dropped { policy: b }) => std::ptr::eq(a, b),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::{Fate, FlushReport};

    /// One task dropped by one policy over and over is one run; a change of
    /// task or fate starts the next.
    #[test]
    fn repeated_fates_share_a_run() {
        let mut report = FlushReport::default();
        let dropped = Fate::Dropped { policy: "DropAll" };
        for _ in 0..1000 {
            report.push("work", dropped);
        }
        assert_eq!(report.runs.len(), 1);
        report.push(
            "work",
            Fate::Dropped {
                policy: "BlockTasks",
            },
        );
        report.push("work", Fate::Dispatched);
        report.push("work", Fate::Dispatched);
        report.push("mail", Fate::Dispatched);
        assert_eq!(report.runs.len(), 4);
        assert_eq!(report.entries().len(), 1004);
        assert_eq!(report.dropped().count(), 1001);
    }
}
