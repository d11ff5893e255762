//! The attributes of airlock: `#[airlock::task]` and `#[airlock::scoped]`.
//!
//! Use them through the `airlock-effects` crate (imported as `airlock`), which
//! re-exports them with its `macros` feature (on by default). It is not on
//! crates.io yet: depend on a clone of the repository by path, or on the
//! repository by `git`:
//!
//! ```toml
//! [dependencies]
//! airlock = { package = "airlock-effects", path = "../airlock/airlock" }
//! ```
//!
//! The generated code names the runtime as `::airlock`, so the dependency must
//! keep that name. It reaches `serde` and `inventory` through the runtime's
//! hidden `airlock::__private` module, so the crate using the attributes needs
//! neither in its own `Cargo.toml`.
//!
//! Both attributes check their input and, on a mistake, report every error
//! they find at the offending tokens, saying what to write instead; they then
//! still emit the item as it was, so the rest of the crate keeps compiling.
//! The compile-fail cases in the repository's `ui-tests/` show each message.

#![forbid(unsafe_code)]
mod judge;
mod options;
mod scoped;
mod task;

use proc_macro::TokenStream;

/// Turns a function into a task: a side effect that can be buffered in a
/// scope, serialized, and run later by an executor or by a worker that holds
/// only its name and a JSON payload.
///
/// ```
/// # #[derive(Debug)] struct MailError;
/// # impl std::fmt::Display for MailError {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("mail") }
/// # }
/// # impl std::error::Error for MailError {}
/// /// Emails the customer that the order went through.
/// #[airlock::task]
/// fn send_confirmation_email(order_id: u64, to: String) -> Result<(), MailError> {
///     // ...
/// #   let _ = (order_id, to);
/// #   Ok(())
/// }
///
/// # fn main() -> anyhow::Result<()> {
/// // The function stays callable as before:
/// send_confirmation_email(7, "a@b.c".into())?;
/// // and it has a typed, serializable intent:
/// # airlock::scope(|| -> airlock::Result<()> {
/// airlock::enqueue(SendConfirmationEmail { order_id: 7, to: "a@b.c".into() })?;
/// # Ok(()) })?;
/// # Ok(()) }
/// ```
///
/// # What it generates
///
/// The function is kept unchanged. Next to it:
///
/// - a struct named after the function in PascalCase
///   (`send_confirmation_email` → `SendConfirmationEmail`), whose fields are
///   the arguments. It has the function's visibility (so do its fields) and
///   doc comment, and derives `Clone`, `Debug`, `Serialize` and
///   `Deserialize`. Decoding rejects a payload with a field that is not an
///   argument (`#[serde(deny_unknown_fields)]`; see `allow_unknown_fields`
///   below), so a misspelt or stale field is an error rather than ignored. A
///   function without arguments gives a braced empty struct, built as
///   `Bump {}` and serialized as `{}`;
/// - an `airlock::Task` impl for it: the stable name, whether it is async, its
///   default dispatch options (only when some are given), and `run`, which
///   calls the function with the fields;
/// - a registration, so that `airlock::registry` can find the task by name
///   and report its Rust path, file and line.
///
/// The function may be sync or `async`. It returns `()` or a `Result` whose
/// error converts into `airlock::BoxError` (`anyhow::Error`, `io::Error`,
/// your own error types); an `Err` becomes the task's error, carried to the
/// executor or the worker. The `Ok` value is dropped.
///
/// ```text
/// /// Emails the customer that the order went through.
/// #[derive(Clone, Debug, Serialize, Deserialize)]   // through ::airlock::__private::serde
/// #[serde(deny_unknown_fields)]
/// struct SendConfirmationEmail {
///     /// The `order_id` argument.
///     order_id: u64,
///     /// The `to` argument.
///     to: String,
/// }
///
/// impl ::airlock::Task for SendConfirmationEmail {
///     const NAME: &'static str = "send_confirmation_email";
///     const IS_ASYNC: bool = false;
///     fn run(self) -> ::airlock::Run {
///         ::airlock::Run::done(send_confirmation_email(self.order_id, self.to))
///         // for an `async fn`: ::airlock::Run::pending(send_confirmation_email(..))
///     }
/// }
///
/// ::airlock::__private::inventory::submit! {
///     ::airlock::__private::Registration::new::<SendConfirmationEmail>(
///         concat!(module_path!(), "::", "send_confirmation_email"), file!(), line!())
/// }
/// ```
///
/// (The impl, the registration and one compile-time check per argument type
/// sit in a `const _: () = { .. };` block; the serde derives carry bounds
/// that make an argument type that is not serializable an error at that
/// argument's type rather than at the attribute.)
///
/// # Arguments
///
/// The arguments are kept until the scope flushes, possibly serialized to a
/// queue and decoded by another process, so each must be a plain name with
/// an owned type that implements `Serialize`, `Deserialize`, `Clone`,
/// `Debug`, `Send` and `Sync`. These are compile errors, each with the fix:
///
/// - generic parameters, lifetimes or a `where` clause (a worker must know
///   the concrete types);
/// - a `self` receiver (the attribute goes on a free function);
/// - a destructuring pattern or `_` (a field needs a name);
/// - a borrowed type: `&str` (take `String`), `&[T]` (take `Vec<T>`),
///   `&Path` (take `PathBuf`), any other `&T` (take `T`), also inside other
///   types (`Option<&str>`);
/// - `impl Trait` in an argument;
/// - `const fn`, `unsafe fn`, an `extern` ABI;
/// - an argument type that is not serializable (reported at that type).
///
/// A float argument (`f64`, and floats inside `Option`, `Vec`, maps or your
/// own structs) must be finite when the intent is serialized: JSON cannot
/// carry NaN or an infinity, so `Intent::to_json` returns an error naming the
/// task and the field rather than writing `null`.
///
/// The attribute cannot tell a free function from an associated function
/// without `self` inside an `impl` block; there, the generated struct would
/// not be allowed, so put tasks at module level.
///
/// # Options
///
/// Every option is optional; each may be given once. An unknown option is an
/// error that lists the valid ones.
///
/// ## `name = "stable.name"`
///
/// The name a worker finds the task by, which payloads already in a queue
/// refer to: set it once and keep it when renaming the function. It defaults
/// to the function's name. Either way it must be non-empty, made of ASCII
/// letters, digits, `_`, `.`, `:` and `-`, and start and end with a letter,
/// digit or `_`: a function whose name has other letters (`envoyer_reçu`)
/// needs an explicit `name`.
///
/// ```
/// use airlock::Task;
///
/// #[airlock::task(name = "billing.send_invoice")]
/// fn send_invoice(order_id: u64) {
///     // ...
/// #   let _ = order_id;
/// }
///
/// assert_eq!(SendInvoice::NAME, "billing.send_invoice");
/// ```
///
/// ```text
/// const NAME: &'static str = "billing.send_invoice";
/// ```
///
/// ## `ident = StructName`
///
/// Names the generated struct, for when the default would clash with an
/// existing item (or read badly).
///
/// ```
/// #[airlock::task(ident = SyncInventory)]
/// fn sync(sku: String) { // `Sync` would shadow the std trait
///     // ...
/// #   let _ = sku;
/// }
///
/// let intent = SyncInventory { sku: "A-1".into() };
/// # let _ = intent;
/// ```
///
/// ```text
/// struct SyncInventory { sku: String }
/// ```
///
/// ## `allow_unknown_fields`
///
/// A flag, without a value: payloads may hold fields that are not arguments,
/// which decoding then ignores (for payloads written by a newer version of
/// the task that added an argument). Without it, such a payload is a
/// `RegistryError::Payload` naming the field, and the task does not run.
///
/// ```
/// #[airlock::task(allow_unknown_fields)]
/// fn resize(width: u32) {
///     // ...
/// #   let _ = width;
/// }
///
/// let intent = airlock::registry::decode("resize", r#"{"width": 3, "height": 4}"#)?;
/// assert_eq!(intent.payload::<Resize>().unwrap().width, 3);
/// # Ok::<(), airlock::RegistryError>(())
/// ```
///
/// ## `queue = "name"`, `max_attempts = N`, `priority = N`, `delay = "30s"`
///
/// The task's default dispatch options, which an executor may read and an
/// intent may override (`Intent::with_options`). `queue` is a non-empty
/// string; `max_attempts` a `u32` literal of at least 1; `priority` an `i32`
/// literal, negative allowed (higher runs first); `delay` a string of
/// numbers with units `ms`, `s`, `m` or `h`, combinable (`"250ms"`, `"30s"`,
/// `"1m30s"`, `"2h"`). A bare number is an error that asks for a unit.
///
/// ```
/// use std::time::Duration;
/// use airlock::{DispatchOptions, Task};
///
/// #[airlock::task(queue = "warehouse", max_attempts = 5, priority = -3, delay = "1m30s")]
/// async fn notify_warehouse(order_id: u64) -> anyhow::Result<()> {
///     // ...
/// #   let _ = order_id;
/// #   Ok(())
/// }
///
/// assert_eq!(
///     NotifyWarehouse::default_options(),
///     DispatchOptions::new()
///         .queue("warehouse")
///         .max_attempts(5)
///         .priority(-3)
///         .delay(Duration::from_secs(90)),
/// );
/// ```
///
/// ```text
/// const IS_ASYNC: bool = true;
/// fn default_options() -> ::airlock::DispatchOptions {
///     ::airlock::DispatchOptions::new()
///         .queue("warehouse")
///         .max_attempts(5u32)
///         .priority(-3i32)
///         .delay(::core::time::Duration::from_millis(90000u64))
/// }
/// ```
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(attr.into(), item.into()).into()
}

/// Runs every call of a function in a fresh scope: the intents it enqueues
/// are flushed when it succeeds and discarded when it fails.
///
/// ```
/// # #[airlock::task]
/// # fn send_confirmation_email(order_id: u64, to: String) { let _ = (order_id, to); }
/// # struct Cart { email: String, items: u32 }
/// # struct Order { id: u64 }
/// # #[derive(Debug)]
/// # enum CheckoutError { Empty, Airlock(airlock::Error) }
/// # impl From<airlock::Error> for CheckoutError {
/// #     fn from(error: airlock::Error) -> Self { CheckoutError::Airlock(error) }
/// # }
/// # fn place(cart: &Cart) -> Result<Order, CheckoutError> {
/// #     if cart.items == 0 { Err(CheckoutError::Empty) } else { Ok(Order { id: 7 }) }
/// # }
/// #[airlock::scoped]
/// fn checkout(cart: &Cart) -> Result<Order, CheckoutError> {
///     let order = place(cart)?;
///     airlock::enqueue(SendConfirmationEmail { order_id: order.id, to: cart.email.clone() })?;
///     Ok(order)
/// }
///
/// // Sends the email when `checkout` returns `Ok`:
/// let order = checkout(&Cart { email: "a@b.c".into(), items: 2 })?;
/// # assert_eq!(order.id, 7);
/// // and nothing when it returns `Err`:
/// assert!(checkout(&Cart { email: "a@b.c".into(), items: 0 }).is_err());
/// # Ok::<(), CheckoutError>(())
/// ```
///
/// Success is a normal return, or `Ok` when the function returns a `Result`;
/// failure is `Err` or a panic (which discards, then keeps unwinding). For
/// an `async fn`, dropping the future before it completes also discards.
/// When the return type is a `Result<T, E>` with `E: From<airlock::Error>`
/// (`airlock::Result`, `anyhow::Result`, your error type with that `From`),
/// a failed flush becomes the returned `Err`; for other return types it is
/// logged through `tracing`.
///
/// With the runtime's `axum` feature, an HTTP response is judged by its
/// status (below 400 flushes): `Response`, `StatusCode`, `(StatusCode, T)`,
/// and `Result<T, E: IntoResponse>` of those (see `airlock::axum`). A return
/// type holding `impl IntoResponse` is a compile error, because a 4xx inside
/// it would flush: return `Response`, use `airlock::tower::AirlockLayer`
/// instead, or opt in with `always_flush`.
///
/// The attribute goes on functions and methods (`self`, `&self`,
/// `&mut self`), sync or `async`, with generics, lifetimes, `where` clauses
/// and `impl Trait` arguments and return types; it keeps the attributes,
/// docs, visibility and signature, and replaces only the body. `return` and
/// `?` inside the body work as before. It stacks with other attributes such
/// as `#[tracing::instrument]` and `#[tokio::main]`, in either order, and
/// works on methods of `#[async_trait]` traits (it recognizes the
/// `Box::pin(async move { .. })` body they are rewritten to and scopes the
/// future) as well as native `async fn` in traits.
///
/// A `fn` returning `impl Future` whose body ends in an `async` block (the
/// style before `async fn`) is scoped like an `async fn`: the scope covers
/// the returned future, where the work happens, not just its construction.
/// Its options are evaluated, and the statements before the `async` block
/// run, when the function is called; those statements are outside the
/// scope, so enqueue from inside the `async` block (or write an `async fn`).
///
/// ```
/// use std::future::Future;
/// # #[airlock::task]
/// # fn pay(cents: u64) { panic!("a dry run pays nothing: {cents}") }
///
/// #[airlock::scoped(policy = airlock::DropAll)]
/// fn dry_run(cents: u64) -> impl Future<Output = airlock::Result<()>> + Send + 'static {
///     async move { airlock::enqueue(Pay { cents }) } // dropped, not the caller's
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> airlock::Result<()> {
/// airlock::scope_async(dry_run(250)).await?;
/// # Ok(()) }
/// ```
///
/// # What it generates
///
/// For a sync function:
///
/// ```text
/// fn checkout(cart: &Cart) -> Result<Order, CheckoutError> {
///     use ::airlock::__private::{ViaAny as _, ViaHttp as _, ViaOutcome as _, ViaResult as _};
///     fn __airlock_call_once<R>(f: impl FnOnce() -> R) -> R { f() }
///     let __airlock_scope = ::airlock::Scope::new() /* .policy(..) .executor(..) .kind(..) */;
///     __airlock_scope
///         .run(move || {
///             let __airlock_out = __airlock_call_once(move || -> Result<Order, CheckoutError> {
///                 /* the original body */
///             });
///             // picks, by the return type, how success is read
///             (&&&&::airlock::__private::Kind(&__airlock_out)).__airlock_kind().wrap(__airlock_out)
///         })
///         .into_inner()
/// }
/// ```
///
/// For an `async fn`:
///
/// ```text
/// async fn backfill(pool: &PgPool) -> anyhow::Result<()> {
///     use ::airlock::__private::{ViaAny as _, ViaHttp as _, ViaOutcome as _, ViaResult as _};
///     let __airlock_scope = ::airlock::Scope::new().policy(airlock::DropAll);
///     __airlock_scope
///         .run_async(async move {
///             let __airlock_out: anyhow::Result<()> = async move {
///                 let __airlock_ret: anyhow::Result<()> = { /* the original body */ };
///                 __airlock_ret
///             }
///             .await;
///             (&&&&::airlock::__private::Kind(&__airlock_out)).__airlock_kind().wrap(__airlock_out)
///         })
///         .await
///         .into_inner()
/// }
/// ```
///
/// The locals have mixed-site hygiene: the body cannot see them, and an
/// argument with the same name is not shadowed. When the return type holds an
/// `impl Trait`, which cannot be written on a closure or a `let`, the type
/// annotations are left out; errors inside such a body may then need a type
/// annotation of your own.
///
/// # Options
///
/// Every option is optional and falls back to the global defaults
/// (`airlock::configure`); each may be given once, and an unknown option is an
/// error that lists the valid ones. The expressions are evaluated at each call,
/// before the body, where the function's arguments (and `self`) are in scope.
///
/// ## `policy = EXPR`
///
/// Which intents may escape: any `airlock::Policy`.
///
/// ```
/// # #[airlock::task]
/// # fn send_confirmation_email(order_id: u64) { panic!("a dry run sends nothing: {order_id}") }
/// #[airlock::scoped(policy = airlock::DropAll)]
/// async fn backfill(orders: Vec<u64>) -> anyhow::Result<()> {
///     for order_id in orders {
///         airlock::enqueue(SendConfirmationEmail { order_id })?; // dropped
///     }
///     Ok(())
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// backfill(vec![1, 2, 3]).await?;
/// # Ok(()) }
/// ```
///
/// ```text
/// let __airlock_scope = ::airlock::Scope::new().policy(airlock::DropAll);
/// ```
///
/// ## `executor = EXPR`
///
/// How escaping intents run: any `airlock::Executor`.
///
/// ```
/// # use airlock::{AllowAll, DropAll, InlineExecutor, Policy};
/// # #[airlock::task]
/// # fn charge(cents: u64) { let _ = cents; }
/// struct Service {
///     dry_run: bool,
///     executor: InlineExecutor,
/// }
///
/// impl Service {
///     fn policy(&self) -> Box<dyn Policy> {
///         if self.dry_run { Box::new(DropAll) } else { Box::new(AllowAll) }
///     }
///
///     #[airlock::scoped(policy = self.policy(), executor = self.executor.clone())]
///     async fn handle(&self, cents: u64) -> airlock::Result<u64> {
///         airlock::enqueue(Charge { cents })?;
///         Ok(cents)
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> airlock::Result<()> {
/// let service = Service { dry_run: true, executor: InlineExecutor };
/// assert_eq!(service.handle(250).await?, 250);
/// # Ok(()) }
/// ```
///
/// ```text
/// let __airlock_scope = ::airlock::Scope::new()
///     .policy(self.policy())
///     .executor(self.executor.clone());
/// ```
///
/// ## `scope = TYPE`
///
/// When intents escape: a type implementing `airlock::ScopeKind` and
/// `Default`, built with `Default::default()`. A value is an error; for a
/// configured kind, build the scope by hand with `airlock::Scope::new().kind(..)`.
///
/// ```
/// # #[airlock::task]
/// # fn index_row(id: u64) { let _ = id; }
/// #[airlock::scoped(scope = airlock::Independent)]
/// fn import_batch(rows: Vec<u64>) -> airlock::Result<()> {
///     for id in rows {
///         airlock::enqueue(IndexRow { id })?;
///     }
///     Ok(())
/// }
///
/// // Flushes when it returns, even inside another scope:
/// airlock::scope(|| import_batch(vec![1, 2]))?;
/// # Ok::<(), airlock::Error>(())
/// ```
///
/// ```text
/// let __airlock_scope = ::airlock::Scope::new()
///     .kind(<airlock::Independent as ::core::default::Default>::default());
/// ```
///
/// ## `always_flush`
///
/// Flushes whatever the function returns (a panic or a dropped future still
/// discards); a failed flush is logged. For handlers that return
/// `impl IntoResponse` and whose every return is a success, or that report
/// failure some other way.
///
/// ```ignore
/// #[airlock::scoped(always_flush)]
/// async fn ping() -> impl IntoResponse { "pong" }
/// ```
///
/// ```text
/// ::airlock::__private::AnyTag.wrap(__airlock_out)
/// ```
#[proc_macro_attribute]
pub fn scoped(attr: TokenStream, item: TokenStream) -> TokenStream {
    scoped::expand(attr.into(), item.into()).into()
}
