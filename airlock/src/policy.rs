//! Policies: WHAT may escape.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::intent::Intent;
use crate::task::Task;

/// Decides which intents may escape. Policies filter and observe; they never
/// reorder, and they cannot enqueue (an `enqueue` from a hook returns
/// [`Error::EnqueueInHook`](crate::Error::EnqueueInHook)).
///
/// Both hooks have permissive defaults, so a policy implements only what it
/// needs.
///
/// # Examples
///
/// A policy that refuses intents bound for a queue that is being drained:
///
/// ```
/// use airlock::{Intent, Policy, Violation};
///
/// struct QueueClosed(&'static str);
///
/// impl Policy for QueueClosed {
///     fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
///         if intent.options().queue.as_deref() == Some(self.0) {
///             return Err(Violation::new(format!("queue `{}` is closed for maintenance", self.0)));
///         }
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an airlock policy",
    label = "expected a policy",
    note = "use a built-in (`AllowAll`, `DropAll`, `AssertNoEffects`, `BlockTasks`, `LogOnFlush`), a tuple or `Vec` of policies, or implement `airlock::Policy`"
)]
pub trait Policy: Send + Sync + 'static {
    /// Called when an intent is enqueued, for the local policy regions it is
    /// enqueued in and the policy of every enclosing scope, innermost first.
    /// Returning an error rejects the intent: it is not buffered and `enqueue`
    /// returns [`Error::PolicyViolation`](crate::Error::PolicyViolation).
    fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
        let _ = intent;
        Ok(())
    }

    /// Called at flush. `false` drops the intent: it is not dispatched, and the
    /// flush report says which policy dropped it.
    fn allows(&self, intent: &Intent) -> bool {
        let _ = intent;
        true
    }

    /// A short name for reports and errors; the type's name by default.
    fn name(&self) -> &'static str {
        short_type_name(std::any::type_name::<Self>())
    }

    /// This policy's serializable form, if it travels with jobs: `None` for
    /// every policy but [`PortablePolicy`](crate::PortablePolicy) and
    /// combinations holding one. A queue executor sends it along with the job
    /// and the worker reinstates it (see [`portable`](crate::portable)).
    fn portable(&self) -> Option<crate::PortablePolicy> {
        None
    }

    /// The name of the policy that drops `intent`, if any: combinators report
    /// the member that said no rather than themselves.
    #[doc(hidden)]
    fn dropped_by(&self, intent: &Intent) -> Option<&'static str> {
        (!self.allows(intent)).then(|| self.name())
    }

    /// Whether [`on_enqueue`](Policy::on_enqueue) may reject anything.
    /// `false` lets airlock skip the call on every enqueue; say so only if
    /// `on_enqueue` is the default. Built-in policies that never reject at
    /// enqueue return `false`.
    #[doc(hidden)]
    fn checks_enqueue(&self) -> bool {
        true
    }

    /// [`on_enqueue`](Policy::on_enqueue) with the name of the policy that
    /// rejected: combinators report the member that said no.
    #[doc(hidden)]
    fn rejected_by(&self, intent: &Intent) -> Result<(), (&'static str, Violation)> {
        self.on_enqueue(intent)
            .map_err(|violation| (self.name(), violation))
    }
}

/// Why a policy rejected an intent at enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    reason: Cow<'static, str>,
}

impl Violation {
    /// A rejection with a reason that tells the user what to change.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Violation {
            reason: reason.into(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Violation {}

/// `my_crate::policies::Quiet<T>` → `Quiet<T>`.
fn short_type_name(full: &'static str) -> &'static str {
    let head = full.find('<').map_or(full, |i| &full[..i]);
    match head.rfind(':') {
        Some(i) => &full[i + 1..],
        None => full,
    }
}

macro_rules! forward_policy {
    ($($ptr:ident),*) => {$(
        impl<P: Policy + ?Sized> Policy for $ptr<P> {
            fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
                (**self).on_enqueue(intent)
            }
            fn allows(&self, intent: &Intent) -> bool {
                (**self).allows(intent)
            }
            fn name(&self) -> &'static str {
                (**self).name()
            }
            fn dropped_by(&self, intent: &Intent) -> Option<&'static str> {
                (**self).dropped_by(intent)
            }
            fn rejected_by(&self, intent: &Intent) -> Result<(), (&'static str, Violation)> {
                (**self).rejected_by(intent)
            }
            fn portable(&self) -> Option<crate::PortablePolicy> {
                (**self).portable()
            }
            fn checks_enqueue(&self) -> bool {
                (**self).checks_enqueue()
            }
        }
    )*};
}
forward_policy!(Box, Arc);

/// Several policies as one: every member must allow an intent, and the first
/// member to reject it at enqueue wins. Tuples of up to six policies combine
/// the same way.
///
/// # Examples
///
/// ```
/// use airlock::{BlockTasks, LogOnFlush, Policy, Scope};
///
/// let scope = Scope::new().policy((LogOnFlush::new(), BlockTasks::names(["send_sms"])));
/// let dynamic: Vec<Box<dyn Policy>> = vec![Box::new(LogOnFlush::new())];
/// let scope = Scope::new().policy(dynamic);
/// ```
impl<P: Policy> Policy for Vec<P> {
    fn name(&self) -> &'static str {
        "policy list"
    }
    fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
        self.iter().try_for_each(|p| p.on_enqueue(intent))
    }
    fn allows(&self, intent: &Intent) -> bool {
        self.iter().all(|p| p.allows(intent))
    }
    fn dropped_by(&self, intent: &Intent) -> Option<&'static str> {
        self.iter().find_map(|p| p.dropped_by(intent))
    }
    fn rejected_by(&self, intent: &Intent) -> Result<(), (&'static str, Violation)> {
        self.iter().try_for_each(|p| p.rejected_by(intent))
    }
    fn portable(&self) -> Option<crate::PortablePolicy> {
        crate::PortablePolicy::combine(self.iter().filter_map(Policy::portable))
    }
    fn checks_enqueue(&self) -> bool {
        self.iter().any(Policy::checks_enqueue)
    }
}

macro_rules! tuple_policy {
    ($($name:ident)+) => {
        impl<$($name: Policy),+> Policy for ($($name,)+) {
            fn name(&self) -> &'static str {
                "policy tuple"
            }
            #[allow(non_snake_case)]
            fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
                let ($($name,)+) = self;
                $($name.on_enqueue(intent)?;)+
                Ok(())
            }
            #[allow(non_snake_case)]
            fn allows(&self, intent: &Intent) -> bool {
                let ($($name,)+) = self;
                $($name.allows(intent))&&+
            }
            #[allow(non_snake_case)]
            fn dropped_by(&self, intent: &Intent) -> Option<&'static str> {
                let ($($name,)+) = self;
                None$(.or_else(|| $name.dropped_by(intent)))+
            }
            #[allow(non_snake_case)]
            fn rejected_by(&self, intent: &Intent) -> Result<(), (&'static str, Violation)> {
                let ($($name,)+) = self;
                $($name.rejected_by(intent)?;)+
                Ok(())
            }
            #[allow(non_snake_case)]
            fn portable(&self) -> Option<crate::PortablePolicy> {
                let ($($name,)+) = self;
                crate::PortablePolicy::combine([$($name.portable()),+].into_iter().flatten())
            }
            #[allow(non_snake_case)]
            fn checks_enqueue(&self) -> bool {
                let ($($name,)+) = self;
                $($name.checks_enqueue())||+
            }
        }
    };
}
tuple_policy!(A B);
tuple_policy!(A B C);
tuple_policy!(A B C D);
tuple_policy!(A B C D E);
tuple_policy!(A B C D E F);

/// Lets everything through. The default policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Policy for AllowAll {
    fn name(&self) -> &'static str {
        "AllowAll"
    }

    fn checks_enqueue(&self) -> bool {
        false
    }
}

/// Buffers everything and dispatches nothing: a dry run, a migration, a
/// backfill.
#[derive(Clone, Copy, Debug, Default)]
pub struct DropAll;

impl Policy for DropAll {
    fn name(&self) -> &'static str {
        "DropAll"
    }

    fn allows(&self, _: &Intent) -> bool {
        false
    }

    fn checks_enqueue(&self) -> bool {
        false
    }
}

/// Makes any enqueue an error naming the task: for tests of code that must be
/// free of side effects.
///
/// Applies to enqueues made anywhere inside the scope, nested scopes included.
#[derive(Clone, Copy, Debug, Default)]
pub struct AssertNoEffects;

impl Policy for AssertNoEffects {
    fn name(&self) -> &'static str {
        "AssertNoEffects"
    }

    fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
        Err(Violation::new(format!(
            "no side effects are allowed here, but `{intent}` was enqueued"
        )))
    }

    fn allows(&self, _: &Intent) -> bool {
        // Intents captured from a nested scope that was opened before this
        // policy applied cannot exist, but a scope's own policy is checked at
        // flush too: keep the promise there as well.
        false
    }
}

/// Blocks some tasks and lets the others through.
///
/// Tasks are named by type ([`BlockTasks::of`], checked by the compiler) or by
/// their stable name ([`BlockTasks::names`], for names that come from
/// configuration). Blocked intents stay buffered and are dropped at flush;
/// [`reject_at_enqueue`](BlockTasks::reject_at_enqueue) turns the enqueue
/// itself into an error instead.
///
/// # Examples
///
/// ```
/// # use airlock::{BlockTasks, Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct SendEmail;
/// # impl Task for SendEmail { const NAME: &'static str = "send_email"; fn run(self) -> Run { Run::ok() } }
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct SendSms;
/// # impl Task for SendSms { const NAME: &'static str = "send_sms"; fn run(self) -> Run { Run::ok() } }
/// let by_type = BlockTasks::of::<SendEmail>().and::<SendSms>();
/// let by_name = BlockTasks::names(["send_email", "send_sms"]).reject_at_enqueue();
/// assert!(by_type.blocks("send_sms") && by_name.blocks("send_email"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct BlockTasks {
    names: Names,
    reject: bool,
}

/// Blocked names; one name (the usual case) needs no allocation.
#[derive(Clone, Debug, Default)]
enum Names {
    #[default]
    None,
    One(Cow<'static, str>),
    Many(Vec<Cow<'static, str>>),
}

impl Names {
    fn push(&mut self, name: Cow<'static, str>) {
        match self {
            Names::None => *self = Names::One(name),
            Names::One(first) => {
                let first = std::mem::take(first);
                *self = Names::Many(vec![first, name]);
            }
            Names::Many(names) => names.push(name),
        }
    }

    #[inline]
    fn contains(&self, name: &str) -> bool {
        match self {
            Names::None => false,
            Names::One(blocked) => same_name(blocked, name),
            Names::Many(blocked) => any_same_name(blocked, name),
        }
    }
}

/// [`Names::contains`] for a list, out of line: the loop would otherwise
/// make the usual one-name check save and restore registers it never uses.
#[inline(never)]
fn any_same_name(blocked: &[Cow<'static, str>], name: &str) -> bool {
    blocked.iter().any(|blocked| same_name(blocked, name))
}

/// Name equality, answering at once for the common cases: both sides the
/// task's own `NAME` constant, or names that differ in length or first byte.
/// Names of 4 to 16 bytes then compare as two words each, without a call.
#[inline]
fn same_name(blocked: &str, name: &str) -> bool {
    if std::ptr::eq(blocked, name) {
        return true;
    }
    let (blocked, name) = (blocked.as_bytes(), name.as_bytes());
    if blocked.len() != name.len() || blocked.first() != name.first() {
        return false;
    }
    match blocked.len() {
        4..=8 => halves::<4>(blocked) == halves::<4>(name),
        9..=16 => halves::<8>(blocked) == halves::<8>(name),
        _ => same_bytes(blocked, name),
    }
}

/// `==` on bytes, out of line for the same reason as [`any_same_name`]: it
/// calls `memcmp`.
#[inline(never)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a == b
}

/// The first and the last `N` bytes of `bytes` (at least `N` long).
#[inline]
fn halves<const N: usize>(bytes: &[u8]) -> ([u8; N], [u8; N]) {
    let mut first = [0; N];
    let mut last = [0; N];
    first.copy_from_slice(&bytes[..N]);
    last.copy_from_slice(&bytes[bytes.len() - N..]);
    (first, last)
}

impl BlockTasks {
    /// Blocks the tasks with these stable names.
    pub fn names<I>(names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Cow<'static, str>>,
    {
        let mut names = names.into_iter().map(Into::into);
        // Built whole, not pushed one by one: a region's policy is made on
        // every `with_policy` call, and one name is the usual case.
        let names = match names.next() {
            None => Names::None,
            Some(first) => match names.next() {
                None => Names::One(first),
                Some(second) => Names::Many([first, second].into_iter().chain(names).collect()),
            },
        };
        BlockTasks {
            names,
            reject: false,
        }
    }

    /// Blocks task `T`.
    pub fn of<T: Task>() -> Self {
        BlockTasks::names([T::NAME])
    }

    /// Blocks task `T` too.
    pub fn and<T: Task>(self) -> Self {
        self.and_name(T::NAME)
    }

    /// Blocks the task with this stable name too.
    pub fn and_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.names.push(name.into());
        self
    }

    /// Rejects blocked tasks at enqueue ([`Error::PolicyViolation`](crate::Error::PolicyViolation))
    /// instead of dropping them at flush.
    pub fn reject_at_enqueue(mut self) -> Self {
        self.reject = true;
        self
    }

    /// Whether the task with this name is blocked.
    #[inline]
    pub fn blocks(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The blocked names, in the order they were given.
    pub(crate) fn blocked_names(&self) -> impl Iterator<Item = &str> {
        let names: &[Cow<'static, str>] = match &self.names {
            Names::None => &[],
            Names::One(name) => std::slice::from_ref(name),
            Names::Many(names) => names,
        };
        names.iter().map(|name| &**name)
    }

    /// Whether blocked tasks are rejected at enqueue.
    pub(crate) fn rejects(&self) -> bool {
        self.reject
    }
}

impl Policy for BlockTasks {
    fn name(&self) -> &'static str {
        "BlockTasks"
    }

    fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
        if self.reject && self.blocks(intent.name()) {
            return Err(Violation::new(format!(
                "`{}` is blocked here; remove it from the BlockTasks list or do not enqueue it",
                intent.name()
            )));
        }
        Ok(())
    }

    fn allows(&self, intent: &Intent) -> bool {
        !self.blocks(intent.name())
    }

    // One call per intent at flush, not two.
    fn dropped_by(&self, intent: &Intent) -> Option<&'static str> {
        self.blocks(intent.name()).then(|| self.name())
    }

    fn checks_enqueue(&self) -> bool {
        self.reject
    }
}

/// Allows everything and logs each intent through `tracing` as it is judged at
/// flush (target `airlock`, `INFO` unless [`level`](LogOnFlush::level) says
/// otherwise).
#[derive(Clone, Copy, Debug)]
pub struct LogOnFlush {
    level: tracing::Level,
}

impl LogOnFlush {
    /// Logs at `INFO`.
    pub fn new() -> Self {
        LogOnFlush {
            level: tracing::Level::INFO,
        }
    }

    /// Logs at `level`.
    pub fn level(mut self, level: tracing::Level) -> Self {
        self.level = level;
        self
    }
}

impl Default for LogOnFlush {
    fn default() -> Self {
        LogOnFlush::new()
    }
}

impl Policy for LogOnFlush {
    fn name(&self) -> &'static str {
        "LogOnFlush"
    }

    fn allows(&self, intent: &Intent) -> bool {
        macro_rules! log {
            ($level:expr) => {
                tracing::event!(target: "airlock", $level, task = intent.name(), %intent, "flushing intent")
            };
        }
        match self.level {
            tracing::Level::ERROR => log!(tracing::Level::ERROR),
            tracing::Level::WARN => log!(tracing::Level::WARN),
            tracing::Level::INFO => log!(tracing::Level::INFO),
            tracing::Level::DEBUG => log!(tracing::Level::DEBUG),
            tracing::Level::TRACE => log!(tracing::Level::TRACE),
        }
        true
    }

    fn checks_enqueue(&self) -> bool {
        false
    }
}

/// Local policy regions in force, innermost first: an immutable list shared by
/// every intent enqueued in the region.
#[derive(Clone)]
pub(crate) struct PolicyChain(Arc<Node<dyn Policy>>);

struct Node<P: ?Sized> {
    next: Option<PolicyChain>,
    /// Whether this region or one outside it checks enqueues
    /// ([`Policy::checks_enqueue`]).
    checks: bool,
    policy: P,
}

impl PolicyChain {
    pub(crate) fn push<P: Policy>(next: Option<PolicyChain>, policy: P) -> Self {
        let checks = policy.checks_enqueue() || next.as_ref().is_some_and(PolicyChain::checks);
        PolicyChain(Arc::new(Node {
            next,
            checks,
            policy,
        }))
    }

    /// Links a freshly made region (not yet shared) above `outer`.
    pub(crate) fn on_top_of(mut self, outer: PolicyChain) -> Self {
        if let Some(node) = Arc::get_mut(&mut self.0) {
            node.checks |= outer.checks();
            node.next = Some(outer);
        }
        self
    }

    /// Where the chain lives: equal for clones of one chain only.
    #[inline]
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0).cast::<()>() as usize
    }

    /// Whether any region in the chain checks enqueues.
    #[inline]
    pub(crate) fn checks(&self) -> bool {
        self.0.checks
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &dyn Policy> {
        let mut node = Some(&*self.0);
        std::iter::from_fn(move || {
            let current = node?;
            node = current.next.as_ref().map(|chain| &*chain.0);
            Some(&current.policy)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{BlockTasks, same_name};

    /// However many names it is given, it keeps each once, in order, and
    /// blocks exactly those; `and_name` adds to any of them.
    #[test]
    fn names_keeps_every_name_given() {
        let all = ["a", "bb", "ccc", "dddd"];
        for count in 0..=all.len() {
            let given = &all[..count];
            let policy = BlockTasks::names(given.iter().copied());
            assert_eq!(policy.blocked_names().collect::<Vec<_>>(), given);
            for name in all {
                assert_eq!(
                    policy.blocks(name),
                    given.contains(&name),
                    "{name} of {given:?}"
                );
            }
            let more = policy.and_name("e");
            let mut expected = given.to_vec();
            expected.push("e");
            assert_eq!(more.blocked_names().collect::<Vec<_>>(), expected);
        }
    }

    /// The word-wise comparison agrees with `==` at every length it covers
    /// and beyond, wherever two names of one length differ.
    #[test]
    fn same_name_agrees_with_string_equality() {
        for len in 0..=20 {
            let name: String = (0..len).map(|i| char::from(b'a' + i as u8)).collect();
            // A copy, so the pointers differ.
            assert!(same_name(&name, &name.clone()), "{name:?}");
            assert!(same_name(&name, &name), "{name:?}");
            for at in 0..len {
                let mut other = name.clone().into_bytes();
                other[at] = b'_';
                let other = String::from_utf8(other).unwrap();
                assert!(!same_name(&name, &other), "{name:?} vs {other:?}");
                assert!(!same_name(&other, &name), "{other:?} vs {name:?}");
            }
            assert!(!same_name(&name, &format!("{name}a")), "{name:?}");
        }
        // Of two lengths, however alike their ends: never equal, and never
        // read past the shorter one.
        assert!(!same_name("abcdabcd", "abcdabcdabcd"));
        assert!(!same_name("abcdabcdabcd", "abcdabcd"));
        assert!(!same_name("abcdefgh", "ab"));
        assert!(!same_name("abcdefghijklmnop", "abcdefg"));
    }
}
