//! What a scope holds: its own intents, and what it captured from nested
//! scopes, kept whole.
//!
//! A nested scope that flushes into its parent hands over its whole buffer as
//! one [`Chunk`] (or, when it holds only a few intents, moves them one by
//! one): capture costs the same at any depth, so ten thousand nested scopes
//! cost ten thousand captures, not fifty million moves. The chunks are laid
//! out flat, in enqueue order, only when the buffer is read or flushed.
//!
//! Chunk trees can be as deep as the scopes were nested, so nothing here
//! recurses: every walk keeps its own stack.

use std::sync::Arc;

use crate::intent::Intent;
use crate::policy::Policy;

/// Buffers at most this long move intent by intent into their parent; longer
/// ones (or ones holding chunks) move as one chunk.
pub(crate) const MOVE_LIMIT: usize = 16;

/// A nested scope's buffer, captured whole.
pub(crate) struct Chunk {
    /// How many of the holder's own intents were enqueued before it.
    at: usize,
    intents: Vec<Intent>,
    nested: Vec<Chunk>,
    /// The captured scope's policy: every intent in the chunk carries it
    /// (rule 9).
    policy: Option<Arc<dyn Policy>>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // Without this, a deep chain would drop recursively.
        let mut pending = std::mem::take(&mut self.nested);
        while let Some(mut chunk) = pending.pop() {
            pending.append(&mut chunk.nested);
        }
    }
}

/// The captured part of a scope's buffer.
#[derive(Default)]
pub(crate) struct Captured {
    chunks: Vec<Chunk>,
    /// How many intents the chunks hold, all levels included.
    total: usize,
}

impl Captured {
    pub(crate) fn len(&self) -> usize {
        self.total
    }
}

/// Captures a nested scope's buffer (`intents`, then what it had captured)
/// into a holder's, marking each intent captured and carrying `policy`. The
/// holder's own intents are `holder[start..]` (its part of the thread's
/// buffer). Returns the nested scope's emptied buffer, for reuse.
#[inline(always)]
pub(crate) fn capture_into(
    holder: &mut Vec<Intent>,
    start: usize,
    holder_captured: &mut Option<Box<Captured>>,
    mut intents: Vec<Intent>,
    captured: Option<Box<Captured>>,
    policy: Option<&Arc<dyn Policy>>,
) -> Vec<Intent> {
    if captured.is_none() && intents.len() <= MOVE_LIMIT {
        holder.extend(
            intents
                .drain(..)
                .map(|intent| mark_captured(intent, policy)),
        );
        return intents;
    }
    capture_chunk(
        holder.len() - start,
        holder_captured,
        intents,
        captured,
        policy,
    );
    Vec::new()
}

fn capture_chunk(
    at: usize,
    holder_captured: &mut Option<Box<Captured>>,
    intents: Vec<Intent>,
    captured: Option<Box<Captured>>,
    policy: Option<&Arc<dyn Policy>>,
) {
    let (nested, nested_total) = match captured {
        Some(mut captured) => (std::mem::take(&mut captured.chunks), captured.total),
        None => (Vec::new(), 0),
    };
    let into = holder_captured.get_or_insert_with(Default::default);
    into.total += intents.len() + nested_total;
    into.chunks.push(Chunk {
        at,
        intents,
        nested,
        policy: policy.cloned(),
    });
}

/// Marks an intent as captured from a scope with `policy` (rule 9).
#[inline]
pub(crate) fn mark_captured(mut intent: Intent, policy: Option<&Arc<dyn Policy>>) -> Intent {
    intent.set_captured();
    if let Some(policy) = policy {
        intent.push_scope_policy(policy.clone());
    }
    intent
}

/// Where a chunk's intents sit: whether in a chunk at all (then they are
/// captured), and the policies they carry, innermost first, as a path
/// through an arena whose entries name a policy and the entry around it.
/// Chunks without a policy add no entry, so marking an intent costs one step
/// per policy, not one per level of nesting.
#[derive(Clone, Copy)]
struct Path {
    in_chunk: bool,
    policies: Option<usize>,
}

const TOP: Path = Path {
    in_chunk: false,
    policies: None,
};

#[derive(Default)]
struct Paths(Vec<(Arc<dyn Policy>, Option<usize>)>);

impl Paths {
    fn enter(&mut self, policy: Option<Arc<dyn Policy>>, outer: Path) -> Path {
        let policies = match policy {
            Some(policy) => {
                self.0.push((policy, outer.policies));
                Some(self.0.len() - 1)
            }
            None => outer.policies,
        };
        Path {
            in_chunk: true,
            policies,
        }
    }

    /// Marks `intent` captured and gives it the policies on `path`.
    fn apply(&self, mut intent: Intent, path: Path) -> Intent {
        if !path.in_chunk {
            return intent;
        }
        intent.set_captured();
        let mut at = path.policies;
        while let Some(index) = at {
            let (policy, outer) = &self.0[index];
            intent.push_scope_policy(policy.clone());
            at = *outer;
        }
        intent
    }
}

/// Lays a buffer out flat, in enqueue order: the holder's own intents with
/// each chunk where it was captured.
#[inline]
pub(crate) fn flatten(intents: Vec<Intent>, captured: Option<Box<Captured>>) -> Vec<Intent> {
    match captured {
        None => intents,
        Some(captured) => flatten_chunks(intents, *captured),
    }
}

fn flatten_chunks(intents: Vec<Intent>, mut captured: Captured) -> Vec<Intent> {
    let mut out = Vec::with_capacity(intents.len() + captured.total);
    let mut paths = Paths::default();
    struct Level {
        intents: std::iter::Peekable<std::iter::Enumerate<std::vec::IntoIter<Intent>>>,
        chunks: std::iter::Peekable<std::vec::IntoIter<Chunk>>,
        path: Path,
    }
    let level = |intents: Vec<Intent>, chunks: Vec<Chunk>, path| Level {
        intents: intents.into_iter().enumerate().peekable(),
        chunks: chunks.into_iter().peekable(),
        path,
    };
    let mut stack = vec![level(intents, std::mem::take(&mut captured.chunks), TOP)];
    while let Some(top) = stack.last_mut() {
        // Chunks captured before the next own intent come first.
        let position = top.intents.peek().map(|(at, _)| *at);
        let due = top
            .chunks
            .next_if(|chunk| position.is_none_or(|at| chunk.at <= at));
        if let Some(mut chunk) = due {
            let path = paths.enter(chunk.policy.take(), top.path);
            let intents = std::mem::take(&mut chunk.intents);
            let nested = std::mem::take(&mut chunk.nested);
            stack.push(level(intents, nested, path));
            continue;
        }
        match top.intents.next() {
            Some((_, intent)) => out.push(paths.apply(intent, top.path)),
            None => {
                stack.pop();
            }
        }
    }
    out
}

/// Clones of a buffer's intents, laid out flat as [`flatten`] would.
pub(crate) fn snapshot(intents: &[Intent], captured: Option<&Captured>) -> Vec<Intent> {
    let Some(captured) = captured else {
        return intents.to_vec();
    };
    let mut out = Vec::with_capacity(intents.len() + captured.total);
    let mut paths = Paths::default();
    struct Level<'a> {
        intents: &'a [Intent],
        next: usize,
        chunks: &'a [Chunk],
        path: Path,
    }
    let mut stack = vec![Level {
        intents,
        next: 0,
        chunks: &captured.chunks,
        path: TOP,
    }];
    while let Some(top) = stack.last_mut() {
        if let Some((chunk, rest)) = top.chunks.split_first()
            && (top.next >= top.intents.len() || chunk.at <= top.next)
        {
            top.chunks = rest;
            let path = paths.enter(chunk.policy.clone(), top.path);
            stack.push(Level {
                intents: &chunk.intents,
                next: 0,
                chunks: &chunk.nested,
                path,
            });
            continue;
        }
        match top.intents.get(top.next) {
            Some(intent) => {
                top.next += 1;
                out.push(paths.apply(intent.clone(), top.path));
            }
            None => {
                stack.pop();
            }
        }
    }
    out
}
