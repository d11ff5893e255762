//! `#[task]`: parse the options and the function, check them against the rules
//! a buffered call must follow, then generate the intent struct, its `Task`
//! impl and its registration.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Attribute, Expr, FnArg, Ident, ItemFn, Lit, LitStr, Pat, ReturnType, Token, Type};

use crate::options::{Errors, Once, attrs_named, item_with_errors, parse_list, show};

/// Expands `#[task(attr)] item`. On error, the item as it was and the errors.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    match try_expand(attr, item.clone()) {
        Ok(tokens) => tokens,
        Err(error) => item_with_errors(item, &error),
    }
}

fn try_expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    // Both halves are parsed and checked even when the other one failed, so
    // that one compile reports every mistake.
    let (options, parsed) = parse::options(attr);
    errors.take(parsed);
    let function = errors.take(parse::function(item));
    // Without `name = ...`, the function's name is the task's name: the same
    // rule applies to it.
    if options.name.is_none()
        && let Some(function) = &function
    {
        errors.take(validate::default_name(&function.sig.ident));
    }
    let options = errors.take(validate::options(options));
    let fields = function
        .as_ref()
        .and_then(|function| errors.take(validate::function(function)));
    errors.finish()?;
    match (options, function, fields) {
        (Some(options), Some(function), Some(fields)) => {
            Ok(generate::task(&model::Task::new(options, function, fields)))
        }
        // Unreachable: a missing part has recorded an error.
        _ => Err(syn::Error::new(Span::call_site(), "#[task]: invalid input")),
    }
}

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(ident);
    syn::custom_keyword!(queue);
    syn::custom_keyword!(max_attempts);
    syn::custom_keyword!(priority);
    syn::custom_keyword!(delay);
    syn::custom_keyword!(allow_unknown_fields);
}

/// The options `#[task(...)]` accepts, in the order the docs list them.
const OPTIONS: &[&str] = &[
    "name",
    "ident",
    "queue",
    "max_attempts",
    "priority",
    "delay",
    "allow_unknown_fields",
];

/// What the user wrote, with spans, before any rule is checked.
mod model {
    use super::{Expr, Ident, ItemFn, LitStr, Span, Type};
    use syn::ext::IdentExt;

    /// The options as written: values are kept as expressions so that
    /// validation can say "`max_attempts` takes an integer" rather than
    /// syn's "expected integer literal".
    #[derive(Default)]
    pub(super) struct Options {
        pub(super) name: Option<Expr>,
        pub(super) ident: Option<Ident>,
        pub(super) queue: Option<Expr>,
        pub(super) max_attempts: Option<Expr>,
        pub(super) priority: Option<Expr>,
        pub(super) delay: Option<Expr>,
        pub(super) allow_unknown_fields: bool,
    }

    /// The options once checked.
    pub(super) struct Checked {
        pub(super) name: Option<LitStr>,
        pub(super) ident: Option<Ident>,
        pub(super) dispatch: Dispatch,
        pub(super) allow_unknown_fields: bool,
    }

    /// Default dispatch options, in the runtime's units.
    #[derive(Default)]
    pub(super) struct Dispatch {
        pub(super) queue: Option<LitStr>,
        pub(super) max_attempts: Option<(u32, Span)>,
        pub(super) priority: Option<(i32, Span)>,
        pub(super) delay_ms: Option<(u64, Span)>,
    }

    impl Dispatch {
        pub(super) fn is_empty(&self) -> bool {
            self.queue.is_none()
                && self.max_attempts.is_none()
                && self.priority.is_none()
                && self.delay_ms.is_none()
        }
    }

    /// One argument of the function, one field of the intent struct.
    pub(super) struct Field {
        pub(super) ident: Ident,
        pub(super) ty: Type,
    }

    /// Everything generation needs.
    pub(super) struct Task {
        pub(super) function: ItemFn,
        pub(super) fields: Vec<Field>,
        /// The intent struct: `ident = ...`, or the function's name in
        /// PascalCase, spanned at the function's name so that a clash
        /// points there.
        pub(super) struct_ident: Ident,
        /// The stable name: `name = "..."`, or the function's name.
        pub(super) name: LitStr,
        pub(super) dispatch: Dispatch,
        /// Whether a payload may hold fields that are not arguments; by
        /// default they are an error, so that a misspelt or stale field is
        /// not silently ignored.
        pub(super) allow_unknown_fields: bool,
    }

    impl Task {
        pub(super) fn new(options: Checked, function: ItemFn, fields: Vec<Field>) -> Self {
            let fn_ident = &function.sig.ident;
            let fn_name = fn_ident.unraw().to_string();
            let struct_ident = options
                .ident
                .unwrap_or_else(|| Ident::new(&pascal_case(&fn_name), fn_ident.span()));
            let name = options
                .name
                .unwrap_or_else(|| LitStr::new(&fn_name, fn_ident.span()));
            Task {
                function,
                fields,
                struct_ident,
                name,
                dispatch: options.dispatch,
                allow_unknown_fields: options.allow_unknown_fields,
            }
        }
    }

    /// `send_confirmation_email` -> `SendConfirmationEmail`.
    pub(super) fn pascal_case(snake: &str) -> String {
        let mut out = String::with_capacity(snake.len());
        let mut upper = true;
        for c in snake.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        if out.is_empty() {
            "Task".to_owned()
        } else {
            out
        }
    }
}

mod parse {
    use super::*;

    /// The options that parsed, and the errors of those that did not: the
    /// good ones are still validated, so one compile reports every mistake.
    pub(super) fn options(attr: TokenStream) -> (model::Options, syn::Result<()>) {
        let mut options = model::Options::default();
        let result = Parser::parse2(
            |input: ParseStream<'_>| parse_options(input, &mut options),
            attr,
        );
        (options, result)
    }

    fn parse_options(input: ParseStream<'_>, out: &mut model::Options) -> syn::Result<()> {
        let mut name = Once::new("name");
        let mut ident = Once::new("ident");
        let mut queue = Once::new("queue");
        let mut max_attempts = Once::new("max_attempts");
        let mut priority = Once::new("priority");
        let mut delay = Once::new("delay");
        let mut allow_unknown_fields = Once::new("allow_unknown_fields");
        let result = parse_list(input, OPTIONS, |input| {
            let span = input.span();
            if input.peek(kw::name) {
                input.parse::<kw::name>()?;
                name.set(span, value(input)?)?;
            } else if input.peek(kw::ident) {
                input.parse::<kw::ident>()?;
                input.parse::<Token![=]>()?;
                let value = input.parse::<Ident>().map_err(|error| {
                    syn::Error::new(
                        error.span(),
                        "`ident` takes the name of the struct to generate, \
                         e.g. `ident = SendEmailIntent`",
                    )
                })?;
                ident.set(span, value)?;
            } else if input.peek(kw::queue) {
                input.parse::<kw::queue>()?;
                queue.set(span, value(input)?)?;
            } else if input.peek(kw::max_attempts) {
                input.parse::<kw::max_attempts>()?;
                max_attempts.set(span, value(input)?)?;
            } else if input.peek(kw::priority) {
                input.parse::<kw::priority>()?;
                priority.set(span, value(input)?)?;
            } else if input.peek(kw::delay) {
                input.parse::<kw::delay>()?;
                delay.set(span, value(input)?)?;
            } else if input.peek(kw::allow_unknown_fields) {
                input.parse::<kw::allow_unknown_fields>()?;
                if input.peek(Token![=]) {
                    return Err(input.error(
                        "`allow_unknown_fields` is a flag and takes no value: write \
                         `#[airlock::task(allow_unknown_fields)]` to accept payloads with \
                         fields that are not arguments, or leave it out to reject them",
                    ));
                }
                allow_unknown_fields.set(span, ())?;
            } else {
                return Ok(false);
            }
            Ok(true)
        });
        out.name = name.into_inner();
        out.ident = ident.into_inner();
        out.queue = queue.into_inner();
        out.max_attempts = max_attempts.into_inner();
        out.priority = priority.into_inner();
        out.delay = delay.into_inner();
        out.allow_unknown_fields = allow_unknown_fields.into_inner().is_some();
        result
    }

    /// `= <expr>`; the expression stops at the next comma.
    fn value(input: ParseStream<'_>) -> syn::Result<Expr> {
        input.parse::<Token![=]>()?;
        input.parse()
    }

    /// The item must be a function; anything else is reported at its
    /// keyword, as `#[task]` means "this function is a task".
    pub(super) fn function(item: TokenStream) -> syn::Result<ItemFn> {
        match syn::parse2::<syn::Item>(item.clone()) {
            Ok(syn::Item::Fn(function)) => Ok(function),
            Ok(other) => Err(syn::Error::new(
                crate::options::item_keyword_span(&other).unwrap_or_else(|| other.span()),
                "#[airlock::task] goes on a free function: the function's arguments become \
                 the fields of the generated intent struct",
            )),
            Err(_) => Err(syn::Error::new(
                item.into_iter()
                    .next()
                    .map_or_else(Span::call_site, |token| token.span()),
                "#[airlock::task] goes on a free function with a body",
            )),
        }
    }
}

/// The rules, one function each. Those about the function all run, so that
/// every bad argument is reported in one compile.
mod validate {
    use super::*;
    use model::{Checked, Dispatch, Field, Options};

    pub(super) fn options(options: Options) -> syn::Result<Checked> {
        let mut errors = Errors::default();
        let name = options.name.and_then(|name| errors.take(task_name(&name)));
        let queue = options
            .queue
            .and_then(|queue| errors.take(queue_name(&queue)));
        let max_attempts = options
            .max_attempts
            .and_then(|n| errors.take(max_attempts(&n)));
        let priority = options.priority.and_then(|p| errors.take(priority(&p)));
        let delay_ms = options.delay.and_then(|d| errors.take(delay(&d)));
        errors.finish()?;
        Ok(Checked {
            name,
            ident: options.ident,
            dispatch: Dispatch {
                queue,
                max_attempts,
                priority,
                delay_ms,
            },
            allow_unknown_fields: options.allow_unknown_fields,
        })
    }

    pub(super) fn function(function: &ItemFn) -> syn::Result<Vec<Field>> {
        let mut errors = Errors::default();
        let sig = &function.sig;
        errors.take(not_const(sig));
        errors.take(not_unsafe(sig));
        errors.take(no_extern_abi(sig));
        errors.take(not_generic(sig));
        errors.take(not_variadic(sig));
        let mut fields = Vec::new();
        for arg in &sig.inputs {
            if let Some(field) = errors.take(argument(arg)) {
                fields.push(field);
            }
        }
        errors.finish()?;
        Ok(fields)
    }

    // ---- options -------------------------------------------------------

    /// Characters a stable name may hold: it travels through brokers, URLs
    /// and log lines.
    fn is_name_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
    }

    fn is_separator(c: char) -> bool {
        matches!(c, '.' | ':' | '-')
    }

    /// What a task name may be made of, for the messages.
    const NAME_RULE: &str = "ASCII letters, digits, `_`, `.`, `:` and `-`, \
                             starting and ending with a letter, digit or `_`";

    /// The one rule for task names, explicit or defaulted: what is wrong
    /// with `name`, if anything.
    fn name_problem(name: &str) -> Option<String> {
        if name.is_empty() {
            return Some("is empty".to_owned());
        }
        if let Some(bad) = name.chars().find(|&c| !is_name_char(c)) {
            return Some(format!("contains {bad:?}"));
        }
        let first = name.chars().next().unwrap_or('_');
        let last = name.chars().next_back().unwrap_or('_');
        if is_separator(first) || is_separator(last) {
            return Some("starts or ends with a separator".to_owned());
        }
        None
    }

    pub(super) fn task_name(expr: &Expr) -> syn::Result<LitStr> {
        let lit = lit_str(expr, "name", "name = \"billing.send_invoice\"")?;
        let name = lit.value();
        match name_problem(&name) {
            None => Ok(lit.clone()),
            Some(_) if name.is_empty() => Err(syn::Error::new(
                lit.span(),
                format!(
                    "the task name is empty: write one made of {NAME_RULE}, \
                     or remove `name` to use the function's name"
                ),
            )),
            Some(problem) => Err(syn::Error::new(
                lit.span(),
                format!("the task name {name:?} {problem}: use only {NAME_RULE}"),
            )),
        }
    }

    /// The function's name, when it is the task's name, follows the rule an
    /// explicit `name = ...` does.
    pub(super) fn default_name(fn_ident: &Ident) -> syn::Result<()> {
        let name = fn_ident.unraw().to_string();
        match name_problem(&name) {
            None => Ok(()),
            Some(problem) => Err(syn::Error::new(
                fn_ident.span(),
                format!(
                    "the task's name defaults to the function's name, and {name:?} {problem}: \
                     task names use only {NAME_RULE}; give the task one with \
                     `#[airlock::task(name = \"...\")]`"
                ),
            )),
        }
    }

    fn queue_name(expr: &Expr) -> syn::Result<LitStr> {
        let lit = lit_str(expr, "queue", "queue = \"mail\"")?;
        if lit.value().trim().is_empty() {
            return Err(syn::Error::new(
                lit.span(),
                "the queue name is empty: name a queue, or remove `queue` for the executor's default",
            ));
        }
        Ok(lit.clone())
    }

    fn max_attempts(expr: &Expr) -> syn::Result<(u32, Span)> {
        let lit = int_lit(expr, "max_attempts", "max_attempts = 5", &["u32"])?;
        let n: u32 = lit
            .base10_parse()
            .map_err(|_| syn::Error::new(lit.span(), "`max_attempts` must fit in a `u32`"))?;
        if n == 0 {
            return Err(syn::Error::new(
                lit.span(),
                "`max_attempts = 0` would never run the task: give at least 1",
            ));
        }
        Ok((n, lit.span()))
    }

    fn priority(expr: &Expr) -> syn::Result<(i32, Span)> {
        let (negative, inner) = match expr {
            Expr::Unary(syn::ExprUnary {
                op: syn::UnOp::Neg(_),
                expr,
                ..
            }) => (true, &**expr),
            other => (false, other),
        };
        let lit = int_lit(inner, "priority", "priority = 10", &["i32"])?;
        let magnitude: i64 = lit.base10_parse().map_err(|_| out_of_i32(expr))?;
        let value = if negative { -magnitude } else { magnitude };
        let value = i32::try_from(value).map_err(|_| out_of_i32(expr))?;
        Ok((value, expr.span()))
    }

    fn out_of_i32(expr: &Expr) -> syn::Error {
        syn::Error::new_spanned(expr, "`priority` must fit in an `i32`")
    }

    /// `"250ms"`, `"30s"`, `"5m"`, `"1h"`, or several of them: `"1h30m"`.
    pub(super) fn delay(expr: &Expr) -> syn::Result<(u64, Span)> {
        if let Expr::Lit(syn::ExprLit {
            lit: Lit::Int(int), ..
        }) = expr
        {
            let n = int.base10_digits();
            return Err(syn::Error::new(
                int.span(),
                format!(
                    "`delay` needs a unit: write it as a string, \
                         e.g. `delay = \"{n}s\"` or `delay = \"{n}ms\"`"
                ),
            ));
        }
        let lit = lit_str(expr, "delay", "delay = \"30s\"")?;
        let ms = parse_duration_ms(&lit.value()).ok_or_else(|| {
            syn::Error::new(
                lit.span(),
                format!(
                    "cannot read {:?} as a delay: write numbers with units \
                         (`ms`, `s`, `m`, `h`), e.g. `delay = \"30s\"` or `delay = \"1m30s\"`",
                    lit.value()
                ),
            )
        })?;
        Ok((ms, lit.span()))
    }

    /// Milliseconds in `text`, or `None` when it is not a sequence of
    /// `<digits><unit>` or overflows.
    pub(super) fn parse_duration_ms(text: &str) -> Option<u64> {
        let mut rest = text.trim();
        if rest.is_empty() {
            return None;
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return None;
            }
            let number: u64 = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let scale = match rest[..unit_len].trim() {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return None,
            };
            rest = &rest[unit_len..];
            total = total.checked_add(number.checked_mul(scale)?)?;
        }
        Some(total)
    }

    fn lit_str<'a>(expr: &'a Expr, key: &str, example: &str) -> syn::Result<&'a LitStr> {
        match expr {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(lit), ..
            }) => Ok(lit),
            other => Err(syn::Error::new_spanned(
                other,
                format!("`{key}` takes a string literal, e.g. `{example}`"),
            )),
        }
    }

    fn int_lit<'a>(
        expr: &'a Expr,
        key: &str,
        example: &str,
        suffixes: &[&str],
    ) -> syn::Result<&'a syn::LitInt> {
        match expr {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Int(lit), ..
            }) if lit.suffix().is_empty() || suffixes.contains(&lit.suffix()) => Ok(lit),
            other => Err(syn::Error::new_spanned(
                other,
                format!("`{key}` takes an integer literal, e.g. `{example}`"),
            )),
        }
    }

    // ---- the function --------------------------------------------------

    fn not_const(sig: &syn::Signature) -> syn::Result<()> {
        match &sig.constness {
            Some(token) => Err(syn::Error::new(
                token.span,
                "a task cannot be a `const fn`: it is a side effect run later by an \
                 executor; remove `const`",
            )),
            None => Ok(()),
        }
    }

    fn not_unsafe(sig: &syn::Signature) -> syn::Result<()> {
        match &sig.unsafety {
            Some(token) => Err(syn::Error::new(
                token.span,
                "a task cannot be an `unsafe fn`: the executor that runs it cannot uphold \
                 its safety contract; make it a safe function that checks its arguments",
            )),
            None => Ok(()),
        }
    }

    fn no_extern_abi(sig: &syn::Signature) -> syn::Result<()> {
        match &sig.abi {
            Some(abi) => Err(syn::Error::new_spanned(
                abi,
                "a task cannot have an `extern` ABI: the executor calls it from Rust; \
                 remove the ABI (wrap a foreign function in a plain Rust one)",
            )),
            None => Ok(()),
        }
    }

    fn not_generic(sig: &syn::Signature) -> syn::Result<()> {
        let generics = &sig.generics;
        if !generics.params.is_empty() {
            return Err(syn::Error::new_spanned(
                generics,
                "a task cannot be generic: a worker must know the concrete argument types \
                 to decode them; remove the generic parameters (one task per concrete type), \
                 and take owned arguments instead of borrowed ones",
            ));
        }
        if let Some(where_clause) = &generics.where_clause {
            return Err(syn::Error::new_spanned(
                where_clause,
                "a task cannot have a `where` clause: remove it",
            ));
        }
        Ok(())
    }

    fn not_variadic(sig: &syn::Signature) -> syn::Result<()> {
        match &sig.variadic {
            Some(variadic) => Err(syn::Error::new_spanned(
                variadic,
                "a task cannot be variadic: take a `Vec` instead",
            )),
            None => Ok(()),
        }
    }

    fn argument(arg: &FnArg) -> syn::Result<Field> {
        let typed = match arg {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new(
                    receiver.self_token.span,
                    "a task cannot take `self`: #[airlock::task] goes on a free function; \
                     move it out of the `impl` and pass what it needs from `self` as \
                     owned arguments",
                ));
            }
            FnArg::Typed(typed) => typed,
        };
        let mut errors = Errors::default();
        if let Some(attr) = typed.attrs.first() {
            errors.push(syn::Error::new_spanned(
                attr,
                "attributes on a task's arguments are not supported: remove it",
            ));
        }
        let ident = errors.take(argument_name(&typed.pat, &typed.ty));
        errors.take(argument_is_owned(&typed.ty));
        errors.finish()?;
        Ok(Field {
            ident: ident.expect("no error, so a name"),
            ty: (*typed.ty).clone(),
        })
    }

    /// An argument becomes a field: it needs a plain name.
    fn argument_name(pat: &Pat, ty: &Type) -> syn::Result<Ident> {
        match pat {
            Pat::Ident(pat_ident) if pat_ident.by_ref.is_none() && pat_ident.subpat.is_none() => {
                Ok(pat_ident.ident.clone())
            }
            Pat::Wild(_) => Err(syn::Error::new_spanned(
                pat,
                format!(
                    "name the argument: `_` cannot be a field of the intent struct; \
                         write e.g. `_unused: {}`",
                    show(ty)
                ),
            )),
            other => Err(syn::Error::new_spanned(
                other,
                format!(
                    "name the argument: a task's arguments become the fields of its \
                         intent struct, so destructuring patterns are not allowed; write \
                         e.g. `value: {}` and destructure it in the body",
                    show(ty)
                ),
            )),
        }
    }

    /// An intent outlives the call that buffered it: its arguments must own
    /// their data and be nameable by a worker.
    fn argument_is_owned(ty: &Type) -> syn::Result<()> {
        let mut finder = Unowned::default();
        finder.visit_type(ty);
        finder.errors.finish()
    }

    #[derive(Default)]
    struct Unowned {
        errors: Errors,
    }

    impl<'ast> Visit<'ast> for Unowned {
        fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
            let shown = show(reference);
            let owned = owned_counterpart(&reference.elem);
            self.errors.push(syn::Error::new_spanned(
                reference,
                format!(
                    "`{shown}` cannot be buffered: take `{owned}` \
                         (a task's arguments are kept until its scope flushes, \
                         so they must be owned)"
                ),
            ));
            // One error per reference: its contents are covered by it.
        }

        fn visit_type_impl_trait(&mut self, impl_trait: &'ast syn::TypeImplTrait) {
            self.errors.push(syn::Error::new_spanned(
                impl_trait,
                format!(
                    "`{}` cannot be a task argument: a worker must know the concrete \
                         type to decode the payload; take a concrete type",
                    show(impl_trait)
                ),
            ));
        }

        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if lifetime.ident != "static" {
                self.errors.push(syn::Error::new_spanned(
                    lifetime,
                    format!(
                        "`{lifetime}` borrows: a task's arguments are kept until its \
                             scope flushes, so they must be owned; use `'static` data or \
                             an owned type"
                    ),
                ));
            }
        }
    }

    /// What to take instead of `&elem`.
    fn owned_counterpart(elem: &Type) -> String {
        match elem {
            Type::Slice(slice) => format!("Vec<{}>", show(&slice.elem)),
            Type::Path(path) if path.qself.is_none() => {
                let last = path.path.segments.last().map(|s| s.ident.to_string());
                match last.as_deref() {
                    Some("str") => "String".to_owned(),
                    Some("Path") => "PathBuf".to_owned(),
                    Some("OsStr") => "OsString".to_owned(),
                    Some("CStr") => "CString".to_owned(),
                    _ => show(elem),
                }
            }
            other => show(other),
        }
    }
}

mod generate {
    use super::*;
    use model::Task;

    pub(super) fn task(task: &Task) -> TokenStream {
        let function = &task.function;
        let vis = &function.vis;
        let fn_ident = &function.sig.ident;
        let ident = &task.struct_ident;
        let name = &task.name;
        let cfgs: Vec<&Attribute> = attrs_named(&function.attrs, "cfg").collect();
        let docs = struct_docs(task);
        let field_defs = task.fields.iter().map(|field| {
            let field_ident = &field.ident;
            let ty = &field.ty;
            let doc = format!(" The `{}` argument.", field_ident.unraw());
            quote!(#[doc = #doc] #vis #field_ident: #ty)
        });
        let is_async = function.sig.asyncness.is_some();
        let default_options = default_options(task);
        let run = run_body(task, is_async);
        let assertions = task.fields.iter().map(|field| {
            let ty = &field.ty;
            quote_spanned! {ty.span()=>
                __airlock_assert_argument::<#ty>();
            }
        });
        let fn_name = fn_ident.unraw().to_string();
        let (serde_bounds, task_bounds) = deferred_bounds(task);
        let line = quote_spanned!(fn_ident.span()=> ::core::line!());
        let deny_unknown_fields =
            (!task.allow_unknown_fields).then(|| quote!(#[serde(deny_unknown_fields)]));
        // At the function's name, so that a clash with another item of the
        // same name is reported there rather than at the attribute.
        let intent_struct = quote_spanned! {fn_ident.span()=>
            #(#cfgs)*
            #(#docs)*
            #[derive(
                ::core::clone::Clone,
                ::core::fmt::Debug,
                ::airlock::__private::serde::Serialize,
                ::airlock::__private::serde::Deserialize,
            )]
            #[serde(crate = "::airlock::__private::serde")]
            #deny_unknown_fields
            #serde_bounds
            #vis struct #ident {
                #(#field_defs,)*
            }
        };

        quote! {
            #function

            #intent_struct

            #(#cfgs)*
            const _: () = {
                #[automatically_derived]
                // Calling a `#[deprecated]` task is the executor's business,
                // not a warning in the crate that declares it.
                #[allow(deprecated)]
                impl ::airlock::Task for #ident #task_bounds {
                    const NAME: &'static str = #name;
                    const IS_ASYNC: bool = #is_async;
                    #default_options
                    fn run(self) -> ::airlock::Run {
                        #run
                    }
                }

                // Each argument type must be a payload: checked once per
                // argument, spanned at its type, so that is where the error
                // points (the derives' bounds defer theirs to here).
                #[allow(dead_code)]
                fn __airlock_assert_arguments() {
                    fn __airlock_assert_argument<
                        T: ::airlock::__private::serde::Serialize
                            + ::airlock::__private::serde::de::DeserializeOwned,
                    >() {}
                    #(#assertions)*
                }

                ::airlock::__private::inventory::submit! {
                    ::airlock::__private::Registration::new::<#ident>(
                        ::core::concat!(::core::module_path!(), "::", #fn_name),
                        ::core::file!(),
                        #line,
                    )
                }
            };
        }
    }

    /// Bounds that move "argument type is not a payload" errors from the
    /// derives (which point at the attribute) to the assertions (which point
    /// at the argument's type). `for<'__airlock>` keeps each bound from being
    /// "trivial", so it is assumed inside the impl rather than checked at it.
    fn deferred_bounds(task: &Task) -> (TokenStream, TokenStream) {
        let serde = quote!(::airlock::__private::serde);
        let tys: Vec<&Type> = task.fields.iter().map(|field| &field.ty).collect();
        let join = |bound: &dyn Fn(&Type) -> String| {
            tys.iter()
                .map(|ty| bound(ty))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ser = join(&|ty| format!("for<'__airlock> {}: {serde}::Serialize", quote!(#ty)));
        let de = join(&|ty| format!("for<'__airlock> {}: {serde}::Deserialize<'de>", quote!(#ty)));
        let serde_bounds = quote!(#[serde(bound(serialize = #ser, deserialize = #de))]);
        let task_bounds = quote! {
            where #(for<'__airlock> #tys: #serde::Serialize + #serde::de::DeserializeOwned,)*
        };
        (serde_bounds, task_bounds)
    }

    /// The function's docs, then a line saying what the struct is; without
    /// docs, that line alone, so `missing_docs` stays quiet.
    fn struct_docs(task: &Task) -> Vec<TokenStream> {
        let mut docs: Vec<TokenStream> = attrs_named(&task.function.attrs, "doc")
            .map(|attr| quote!(#attr))
            .collect();
        let span = task.function.sig.ident.span();
        if !docs.is_empty() {
            docs.push(quote_spanned!(span=> #[doc = ""]));
        }
        let line = format!(
            " The intent of the `{}` task: a buffered call of `{}`, its arguments as fields. \
             Generated by `#[airlock::task]`.",
            task.name.value(),
            task.function.sig.ident.unraw(),
        );
        docs.push(quote_spanned!(span=> #[doc = #line]));
        docs
    }

    fn default_options(task: &Task) -> Option<TokenStream> {
        let dispatch = &task.dispatch;
        if dispatch.is_empty() {
            return None;
        }
        let queue = dispatch.queue.as_ref().map(|queue| quote!(.queue(#queue)));
        let max_attempts = dispatch.max_attempts.map(|(n, span)| {
            let n = proc_macro2::Literal::u32_suffixed(n);
            quote_spanned!(span=> .max_attempts(#n))
        });
        let priority = dispatch.priority.map(|(p, span)| {
            let p = proc_macro2::Literal::i32_suffixed(p);
            quote_spanned!(span=> .priority(#p))
        });
        let delay = dispatch.delay_ms.map(|(ms, span)| {
            let ms = proc_macro2::Literal::u64_suffixed(ms);
            quote_spanned!(span=> .delay(::core::time::Duration::from_millis(#ms)))
        });
        Some(quote! {
            fn default_options() -> ::airlock::DispatchOptions {
                ::airlock::DispatchOptions::new() #queue #max_attempts #priority #delay
            }
        })
    }

    /// The call, with the fields moved out of `self`. Spanned at the return
    /// type (sync) or the name (async), where "not a task output" or "future
    /// is not `Send`" belongs.
    fn run_body(task: &Task, is_async: bool) -> TokenStream {
        let fn_ident = &task.function.sig.ident;
        let span = match &task.function.sig.output {
            ReturnType::Type(_, ty) if !is_async => ty.span(),
            _ => fn_ident.span(),
        };
        let mut callee = fn_ident.clone();
        callee.set_span(span);
        let args = task.fields.iter().map(|field| {
            let field_ident = &field.ident;
            quote_spanned!(span=> self.#field_ident)
        });
        if is_async {
            quote_spanned!(span=> ::airlock::Run::pending(#callee(#(#args),*)))
        } else {
            quote_spanned!(span=> ::airlock::Run::done(#callee(#(#args),*)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::model::pascal_case;
    use super::validate::{parse_duration_ms, task_name};
    use super::*;

    #[test]
    fn pascal_case_joins_words() {
        assert_eq!(
            pascal_case("send_confirmation_email"),
            "SendConfirmationEmail"
        );
        assert_eq!(pascal_case("_private_thing"), "PrivateThing");
        assert_eq!(pascal_case("bump"), "Bump");
        assert_eq!(pascal_case("v2_sync"), "V2Sync");
    }

    #[test]
    fn durations_read_units() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("1m 30s"), Some(90_000));
        assert_eq!(parse_duration_ms(""), None);
        assert_eq!(parse_duration_ms("30"), None);
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(parse_duration_ms("3 days"), None);
        assert_eq!(parse_duration_ms("99999999999999999999h"), None);
    }

    fn name_error(name: &str) -> Option<String> {
        let expr: Expr = syn::parse_str(&format!("{name:?}")).unwrap();
        task_name(&expr).err().map(|error| error.to_string())
    }

    #[test]
    fn task_names_are_checked() {
        assert_eq!(name_error("billing.send_invoice"), None);
        assert_eq!(name_error("billing::send-invoice.v2"), None);
        assert!(
            name_error("")
                .unwrap()
                .starts_with("the task name is empty: write one made of ASCII letters"),
            "says what to write, or to remove `name`"
        );
        assert!(name_error("has space").unwrap().contains("' '"));
        assert!(name_error(".leading").unwrap().contains("separator"));
        assert!(name_error("trailing:").unwrap().contains("separator"));
    }

    #[test]
    fn default_names_follow_the_same_rule() {
        let out = expand(
            quote!(),
            quote!(
                fn envoyer_reçu() {}
            ),
        )
        .to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains(r#"\"envoyer_reçu\" contains 'ç'"#), "{out}");
        // An explicit name replaces the function's: nothing to check there.
        let out = expand(
            quote!(name = "mail.receipt"),
            quote!(
                fn envoyer_reçu() {}
            ),
        )
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
        assert!(
            !expand(
                quote!(),
                quote!(
                    fn r#type() {}
                )
            )
            .to_string()
            .contains("compile_error")
        );
    }

    #[test]
    fn unknown_fields_are_denied_unless_allowed() {
        let denied = expand(
            quote!(),
            quote!(
                fn ping(n: u32) {}
            ),
        )
        .to_string();
        assert!(
            denied.contains("# [serde (deny_unknown_fields)]"),
            "{denied}"
        );
        let allowed = expand(
            quote!(allow_unknown_fields),
            quote!(
                fn ping(n: u32) {}
            ),
        )
        .to_string();
        assert!(!allowed.contains("compile_error"), "{allowed}");
        assert!(!allowed.contains("deny_unknown_fields"), "{allowed}");
    }

    #[test]
    fn allow_unknown_fields_is_a_flag() {
        let (_, result) = parse::options(quote!(allow_unknown_fields = true, queue = "q"));
        let message = result.unwrap_err().to_string();
        assert!(
            message.starts_with("`allow_unknown_fields` is a flag"),
            "{message}"
        );
        let (_, result) = parse::options(quote!(allow_unknown_fields, allow_unknown_fields));
        assert_eq!(
            result.unwrap_err().to_string(),
            "`allow_unknown_fields` given twice: keep one of them"
        );
    }

    #[test]
    fn options_report_every_mistake() {
        let (options, result) =
            parse::options(quote!(queue = "a", colour = 3, queue = "b", name = 5));
        let error = result.unwrap_err();
        assert!(options.queue.is_some() && options.name.is_some());
        let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("unknown option `colour`: expected one of `name`"));
        assert_eq!(messages[1], "`queue` given twice: keep one of them");
    }

    #[test]
    fn expansion_keeps_the_function_on_error() {
        let out = expand(
            quote!(bogus = 1),
            quote!(
                fn keep_me() {}
            ),
        )
        .to_string();
        assert!(out.contains("fn keep_me"));
        assert!(out.contains("compile_error"));
    }
}
