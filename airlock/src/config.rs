//! Global defaults (rule 13): the policy, executor and scope kind a scope uses
//! when it does not name its own.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::context::Config;
use crate::executor::{Executor, InlineExecutor};
use crate::kind::ScopeKind;
use crate::policy::{AllowAll, Policy};

/// The policy, executor and scope kind that scopes use unless told otherwise.
///
/// Set them once at start-up with [`configure`]; an explicit argument to
/// [`Scope`](crate::Scope) always wins. Tests should use [`with_defaults`],
/// which changes them for one thread (or one future) only, so tests running in
/// parallel do not disturb each other.
///
/// # Examples
///
/// ```
/// use airlock::{Defaults, LogOnFlush};
///
/// airlock::configure(Defaults::new().policy(LogOnFlush::new()));
/// assert_eq!(airlock::defaults().policy_name(), "LogOnFlush");
/// airlock::reset_defaults();
/// assert_eq!(airlock::defaults().policy_name(), "AllowAll");
/// ```
#[derive(Clone, Default)]
pub struct Defaults {
    pub(crate) policy: Option<Arc<dyn Policy>>,
    pub(crate) executor: Option<Arc<dyn Executor>>,
    pub(crate) kind: Option<Arc<dyn ScopeKind>>,
    pub(crate) undelivered: Option<crate::undelivered::Hook>,
    /// The three above, as the scopes that use them all share them.
    pub(crate) config: Option<Arc<Config>>,
}

impl Defaults {
    /// The built-in defaults: [`AllowAll`], [`InlineExecutor`], a plain scope.
    pub fn new() -> Self {
        Defaults::default()
    }

    /// Sets the default policy.
    pub fn policy<P: Policy>(mut self, policy: P) -> Self {
        self.policy = crate::scope::policy_arc(policy);
        self.resolved()
    }

    /// Sets the default executor.
    pub fn executor<E: Executor>(mut self, executor: E) -> Self {
        self.executor = crate::scope::executor_arc(executor);
        self.resolved()
    }

    /// Sets the default scope kind.
    pub fn kind<K: ScopeKind>(mut self, kind: K) -> Self {
        self.kind = Some(Arc::new(kind));
        self.resolved()
    }

    /// Sets the undelivered hook: it receives the intents that no caller can
    /// take back (a dispatch cancelled half way, a task that panicked
    /// mid-batch, a deferred batch dropped unused, a task that failed after a
    /// background executor took it). The default logs each at `ERROR` with
    /// its task name and JSON payload. See [`Undelivered`](crate::Undelivered).
    ///
    /// The hook may run on any thread, from a destructor, during a panic: it
    /// should be quick and must not block on the scope that lost the intents.
    /// A panic in it is caught and logged.
    pub fn on_undelivered<F>(mut self, hook: F) -> Self
    where
        F: Fn(crate::Undelivered) + Send + Sync + 'static,
    {
        self.undelivered = Some(Arc::new(hook));
        self
    }

    /// Whether the undelivered hook is the default one (log at `ERROR`).
    pub fn undelivered_is_logged(&self) -> bool {
        self.undelivered.is_none()
    }

    pub(crate) fn undelivered_hook(&self) -> Option<crate::undelivered::Hook> {
        self.undelivered.clone()
    }

    fn resolved(mut self) -> Self {
        self.config = Config::new(
            self.policy.clone(),
            self.executor.clone(),
            self.kind.clone(),
        );
        self
    }

    /// The default policy's name.
    pub fn policy_name(&self) -> &'static str {
        self.policy.as_ref().map_or(AllowAll.name(), |p| p.name())
    }

    /// Whether the default executor is the [`InlineExecutor`].
    pub fn executor_is_inline(&self) -> bool {
        self.executor.is_none()
    }

    /// Whether the default scope kind is a plain scope.
    pub fn kind_is_plain(&self) -> bool {
        self.kind.is_none()
    }
}

impl fmt::Debug for Defaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Defaults")
            .field("policy", &self.policy_name())
            .field(
                "executor",
                &if self.executor.is_none() {
                    std::any::type_name::<InlineExecutor>()
                } else {
                    "custom"
                },
            )
            .field(
                "kind",
                &if self.kind.is_none() {
                    "plain"
                } else {
                    "custom"
                },
            )
            .field(
                "undelivered",
                &if self.undelivered.is_none() {
                    "log"
                } else {
                    "custom"
                },
            )
            .finish()
    }
}

static GLOBAL: RwLock<Option<Defaults>> = RwLock::new(None);
/// Bumped by every change, so threads can cache the defaults and re-read them
/// only when they changed.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Sets the process-wide defaults. Call it once at start-up.
pub fn configure(defaults: Defaults) {
    replace_global(Some(defaults));
}

/// Restores the built-in defaults.
pub fn reset_defaults() {
    replace_global(None);
}

fn replace_global(defaults: Option<Defaults>) {
    let previous = std::mem::replace(
        &mut *GLOBAL.write().unwrap_or_else(PoisonError::into_inner),
        defaults,
    );
    GENERATION.fetch_add(1, Ordering::Release);
    // Dropped after the lock is released: a policy's `Drop` may read the
    // defaults.
    drop(previous);
}

/// The defaults in force here: a [`with_defaults`] override if one is active,
/// else the process-wide ones.
pub fn defaults() -> Defaults {
    crate::context::with_defaults_ref(Defaults::clone)
}

/// Runs `f` with `defaults` in force on this thread only (nested scopes
/// included), then restores what was there, even if `f` panics.
///
/// This is the way for tests to change the defaults: it cannot disturb tests
/// running on other threads. [`with_defaults_async`] does the same for a
/// future.
pub fn with_defaults<R>(defaults: Defaults, f: impl FnOnce() -> R) -> R {
    let _restore = crate::context::DefaultsOverride::set(Some(defaults));
    f()
}

/// [`with_defaults`] for a future: the override is in force while it is
/// polled, on whatever thread polls it.
pub fn with_defaults_async<F: std::future::Future>(
    defaults: Defaults,
    future: F,
) -> crate::future::WithDefaults<F> {
    crate::future::WithDefaults::new(defaults, future)
}

#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The global defaults, or `None` if the lock is held by this thread (a
/// `Drop` run while `configure` replaces them).
pub(crate) fn try_global() -> Option<Defaults> {
    match GLOBAL.try_read() {
        Ok(global) => Some(global.clone().unwrap_or_default()),
        Err(std::sync::TryLockError::Poisoned(global)) => {
            Some(global.into_inner().clone().unwrap_or_default())
        }
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

pub(crate) fn global() -> Defaults {
    GLOBAL
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_default()
}
