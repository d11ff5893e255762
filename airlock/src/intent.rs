//! Intents: one buffered call, inspectable until it escapes.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::policy::{Policy, PolicyChain};
use crate::stored::Stored;
use crate::task::{DispatchOptions, Run, Task};

/// One buffered side effect: a typed task payload plus how to dispatch it.
///
/// Intents are made by [`enqueue`](crate::enqueue) (from any [`Task`]) or
/// explicitly with [`Intent::new`] when options or an origin are wanted. Until
/// their scope flushes they can be inspected: by name, by payload type, as JSON.
///
/// # Examples
///
/// ```
/// # use airlock::{Intent, Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// # struct SendEmail { order_id: u64, to: String }
/// # impl Task for SendEmail {
/// #     const NAME: &'static str = "send_email";
/// #     fn run(self) -> Run { Run::ok() }
/// # }
/// let intent = Intent::new(SendEmail { order_id: 42, to: "a@b.c".into() })
///     .with_origin("checkout");
/// assert_eq!(intent.name(), "send_email");
/// assert_eq!(intent.payload::<SendEmail>().unwrap().order_id, 42);
/// assert_eq!(intent.to_json()?["to"], "a@b.c");
/// assert_eq!(intent.to_string(), r#"send_email(order_id: 42, to: "a@b.c")"#);
/// assert_eq!(intent.origin(), Some("checkout"));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub struct Intent {
    stored: Stored,
}

// An intent crosses threads (handles, executors) and is shared by reference
// (reports, hooks): it stays `Send` and `Sync` whatever its storage does.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Intent>();
};

/// Where an intent has been, beside its task. Most intents have the plain
/// route (no local policy, not captured), which [`Stored`] implies without
/// storing it; the others carry a local policy chain and the captured flag,
/// and the rare extras (options, an origin, captured-from scopes' policies)
/// live out of line. Three words (the flag's spare values tell the variants
/// apart).
#[derive(Clone)]
pub(crate) enum Route {
    Lean(Base),
    Full(Box<Full>),
}

#[derive(Clone, Default)]
pub(crate) struct Base {
    /// Local policy regions active at enqueue, innermost first.
    local: Option<PolicyChain>,
    captured: bool,
}

#[derive(Clone, Default)]
pub(crate) struct Full {
    base: Base,
    options: Option<DispatchOptions>,
    origin: Option<Cow<'static, str>>,
    /// Policies of the scopes this intent was captured from, innermost first.
    scope_policies: Vec<Arc<dyn Policy>>,
}

impl Route {
    /// The plain route, captured or not.
    #[inline(always)]
    pub(crate) fn lean(captured: bool) -> Self {
        Self::lean_in(None, captured)
    }

    /// A lean route: in the local policy regions `local`, captured or not.
    #[inline(always)]
    pub(crate) fn lean_in(local: Option<PolicyChain>, captured: bool) -> Self {
        Route::Lean(Base { local, captured })
    }

    #[inline]
    fn base(&self) -> &Base {
        match self {
            Route::Lean(base) => base,
            Route::Full(full) => &full.base,
        }
    }

    #[inline]
    pub(crate) fn is_captured(&self) -> bool {
        self.base().captured
    }

    #[inline]
    pub(crate) fn set_captured(&mut self) {
        match self {
            Route::Lean(base) => base.captured = true,
            Route::Full(full) => full.base.captured = true,
        }
    }

    fn full(&self) -> Option<&Full> {
        match self {
            Route::Lean(_) => None,
            Route::Full(full) => Some(full),
        }
    }

    fn full_mut(&mut self) -> &mut Full {
        if let Route::Lean(base) = self {
            let base = std::mem::take(base);
            *self = Route::Full(Box::new(Full {
                base,
                ..Full::default()
            }));
        }
        match self {
            Route::Full(full) => full,
            Route::Lean(_) => unreachable!("made full above"),
        }
    }

    fn has_policies(&self) -> bool {
        match self {
            Route::Lean(base) => base.local.is_some(),
            Route::Full(full) => full.base.local.is_some() || !full.scope_policies.is_empty(),
        }
    }

    /// See [`Intent::enter`].
    fn enter(&mut self, local: Option<PolicyChain>) {
        match self {
            Route::Lean(base) => {
                *base = Base {
                    local,
                    captured: false,
                }
            }
            Route::Full(full) => {
                full.base = Base {
                    local,
                    captured: false,
                };
                full.scope_policies.clear();
            }
        }
    }
}

impl Intent {
    /// Wraps a task payload; its dispatch options start as the task's defaults.
    #[inline]
    pub fn new<T: Task>(task: T) -> Self {
        Intent {
            stored: Stored::new(task),
        }
    }

    fn full(&self) -> Option<&Full> {
        self.stored.route()?.full()
    }

    fn full_mut(&mut self) -> &mut Full {
        self.stored.route_mut().full_mut()
    }

    /// The local policy regions it was enqueued in, innermost first.
    #[inline]
    pub(crate) fn local(&self) -> Option<&PolicyChain> {
        self.stored.route()?.base().local.as_ref()
    }

    /// Marks it captured from a nested scope.
    #[inline]
    pub(crate) fn set_captured(&mut self) {
        self.stored.set_captured();
    }

    /// Replaces the dispatch options; options left unset fall back to the
    /// task's defaults.
    pub fn with_options(mut self, options: DispatchOptions) -> Self {
        self.full_mut().options = Some(options);
        self
    }

    /// Records where the intent came from (a request id, a command name), for
    /// logs and executors.
    pub fn with_origin(mut self, origin: impl Into<Cow<'static, str>>) -> Self {
        self.full_mut().origin = Some(origin.into());
        self
    }

    /// The task's stable name.
    #[inline]
    pub fn name(&self) -> &'static str {
        self.stored.name()
    }

    /// The payload as its own type, or `None` if it is another task.
    pub fn payload<T: Task>(&self) -> Option<&T> {
        let any: &dyn Any = self.stored.task();
        any.downcast_ref()
    }

    /// Whether the payload is a `T`.
    pub fn is<T: Task>(&self) -> bool {
        self.payload::<T>().is_some()
    }

    /// The payload serialized to JSON.
    ///
    /// # Errors
    ///
    /// - A float in the payload is NaN or infinite: JSON cannot carry it (it
    ///   would become `null`, which no worker can decode). The message names
    ///   the task and the field (`points[2].x`).
    /// - The payload's `Serialize` impl fails (a map with non-string keys, for
    ///   instance).
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        self.stored.task().to_json()
    }

    /// The effective dispatch options: this intent's own, then the task's
    /// defaults.
    pub fn options(&self) -> Cow<'_, DispatchOptions> {
        let defaults = self.stored.task().default_options();
        match self.full().and_then(|full| full.options.as_ref()) {
            None => Cow::Owned(defaults),
            Some(own) if defaults == DispatchOptions::default() => Cow::Borrowed(own),
            Some(own) => Cow::Owned(own.clone().or(&defaults)),
        }
    }

    /// Where the intent came from, if that was recorded.
    pub fn origin(&self) -> Option<&str> {
        self.full()?.origin.as_deref()
    }

    /// Whether the task runs asynchronously ([`Task::IS_ASYNC`]).
    pub fn is_async(&self) -> bool {
        self.stored.task().is_async()
    }

    /// Whether this intent was captured from a nested scope rather than
    /// enqueued directly into the scope that holds it.
    pub fn is_captured(&self) -> bool {
        self.stored.is_captured()
    }

    /// Every policy that will judge this intent at flush, before the policy of
    /// the scope that flushes it: the local policy regions it was enqueued in
    /// (innermost first), then the policies of the nested scopes it was
    /// captured from (innermost first).
    pub fn policies(&self) -> impl Iterator<Item = &dyn Policy> {
        let local = self.local().into_iter().flat_map(PolicyChain::iter);
        let scopes = self
            .full()
            .into_iter()
            .flat_map(|full| full.scope_policies.iter().map(|p| &**p));
        local.chain(scopes)
    }

    /// Whether any policy besides the flushing scope's will judge it.
    #[inline]
    pub(crate) fn has_policies(&self) -> bool {
        self.stored.route().is_some_and(Route::has_policies)
    }

    /// Sets it out from where it is enqueued: in the local policy regions
    /// `local`, and forgetting where it has been (the scopes it was captured
    /// from), so that one handed back by a failed flush and enqueued again is
    /// judged afresh where it lands.
    #[inline(always)]
    pub(crate) fn enter(&mut self, local: Option<PolicyChain>) {
        match (self.stored.spilled_route_mut(), local) {
            (Some(route), local) => route.enter(local),
            // The plain route: only the captured flag to clear.
            (None, None) => self.stored.set_fresh(),
            (None, local) => self.stored.spill(local, false),
        }
    }

    /// [`enter`](Intent::enter) with no local policy region: nothing to do
    /// for an intent fresh from [`Intent::new`] (the plain route, not
    /// captured), which one comparison tells.
    #[inline(always)]
    pub(crate) fn enter_plain(&mut self) {
        if !self.stored.is_fresh() {
            self.reenter();
        }
    }

    /// An intent enqueued again (from a report or a capture): its route is
    /// reset.
    #[inline(never)]
    fn reenter(&mut self) {
        self.enter(None);
    }

    pub(crate) fn push_scope_policy(&mut self, policy: Arc<dyn Policy>) {
        self.full_mut().scope_policies.push(policy);
    }

    /// Runs a clone of the task, keeping this intent: if the run fails, the
    /// intent can still be handed back whole. The clone is made on the stack,
    /// so it costs no allocation beyond what the payload's own `Clone` does.
    #[inline]
    pub(crate) fn run_cloned(&self) -> Run {
        self.stored.run_cloned()
    }

    /// Runs the task in place, consuming the intent.
    #[inline]
    pub fn run(self) -> Run {
        self.stored.run()
    }
}

impl<T: Task> From<T> for Intent {
    fn from(task: T) -> Self {
        Intent::new(task)
    }
}

impl Clone for Intent {
    fn clone(&self) -> Self {
        Intent {
            stored: self.stored.clone(),
        }
    }
}

impl fmt::Debug for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Intent");
        d.field("name", &self.name());
        d.field("payload", &self.stored.task().as_debug());
        if let Some(full) = self.full() {
            if let Some(options) = &full.options {
                d.field("options", options);
            }
            if let Some(origin) = &full.origin {
                d.field("origin", origin);
            }
        }
        if self.is_captured() {
            d.field("captured", &true);
        }
        d.finish_non_exhaustive()
    }
}

/// Reads like the call it stands for: `send_email(order_id: 42, to: "a@b.c")`.
impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = match self.stored.task().to_json_string() {
            Ok(json) => json,
            Err(error) => return write!(f, "{}(<unserializable: {error}>)", self.name()),
        };
        crate::call_display::write_call(f, self.name(), &json)
    }
}

/// The object-safe face of a [`Task`], so intents of different tasks can share
/// one buffer.
pub(crate) trait ErasedTask: Any + Send + Sync {
    fn is_async(&self) -> bool;
    fn default_options(&self) -> DispatchOptions;
    fn to_json(&self) -> serde_json::Result<serde_json::Value>;
    fn to_json_string(&self) -> serde_json::Result<String>;
    fn as_debug(&self) -> &dyn fmt::Debug;
}

impl<T: Task> ErasedTask for T {
    fn is_async(&self) -> bool {
        T::IS_ASYNC
    }

    fn default_options(&self) -> DispatchOptions {
        T::default_options()
    }

    fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        crate::finite::check(T::NAME, self)?;
        serde_json::to_value(self)
    }

    fn to_json_string(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }
}
