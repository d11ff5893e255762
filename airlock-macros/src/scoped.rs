//! `#[scoped]`: parse the options and the function, check them, then replace
//! the body with one that runs the original body inside a fresh scope.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Block, Expr, ItemFn, ReturnType, Token, Type};

use crate::options::{Errors, Once, item_with_errors, parse_list};

/// Expands `#[scoped(attr)] item`. On error, the item as it was and the
/// errors.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    match try_expand(attr, item.clone()) {
        Ok(tokens) => tokens,
        Err(error) => item_with_errors(item, &error),
    }
}

fn try_expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let options = errors.take(parse::options(attr));
    let function = errors.take(parse::function(item));
    if let Some(function) = &function {
        errors.take(validate::function(function));
    }
    errors.finish()?;
    match (options, function) {
        (Some(options), Some(function)) => Ok(generate::scoped(options, function)),
        // Unreachable: a missing part has recorded an error.
        _ => Err(syn::Error::new(
            Span::call_site(),
            "#[scoped]: invalid input",
        )),
    }
}

mod kw {
    syn::custom_keyword!(policy);
    syn::custom_keyword!(executor);
    syn::custom_keyword!(scope);
}

/// The options `#[scoped(...)]` accepts, in the order the docs list them.
const OPTIONS: &[&str] = &["policy", "executor", "scope"];

mod model {
    use super::{Expr, Type};

    /// What the scope is built with; each falls back to the global default.
    #[derive(Default)]
    pub(super) struct Options {
        pub(super) policy: Option<Expr>,
        pub(super) executor: Option<Expr>,
        /// A `ScopeKind` type, built with `Default::default()`.
        pub(super) scope: Option<Type>,
    }
}

mod parse {
    use super::*;

    pub(super) fn options(attr: TokenStream) -> syn::Result<model::Options> {
        let mut policy = Once::new("policy");
        let mut executor = Once::new("executor");
        let mut scope = Once::new("scope");
        let parser = |input: ParseStream<'_>| {
            parse_list(input, OPTIONS, |input| {
                let span = input.span();
                if input.peek(kw::policy) {
                    input.parse::<kw::policy>()?;
                    input.parse::<Token![=]>()?;
                    policy.set(span, input.parse::<Expr>()?)?;
                } else if input.peek(kw::executor) {
                    input.parse::<kw::executor>()?;
                    input.parse::<Token![=]>()?;
                    executor.set(span, input.parse::<Expr>()?)?;
                } else if input.peek(kw::scope) {
                    input.parse::<kw::scope>()?;
                    input.parse::<Token![=]>()?;
                    scope.set(span, scope_type(input)?)?;
                } else {
                    return Ok(false);
                }
                Ok(true)
            })
        };
        Parser::parse2(parser, attr)?;
        Ok(model::Options {
            policy: policy.into_inner(),
            executor: executor.into_inner(),
            scope: scope.into_inner(),
        })
    }

    /// A type, and all of the option's value: `scope = Independent::new()`
    /// parses as the type `Independent::new` followed by `()`, which is an
    /// expression, not a type.
    fn scope_type(input: ParseStream<'_>) -> syn::Result<Type> {
        let fork = input.fork();
        if let Ok(ty) = fork.parse::<Type>()
            && (fork.is_empty() || fork.peek(Token![,]))
        {
            input.parse::<Type>()?;
            return Ok(ty);
        }
        let value = input.parse::<Expr>()?;
        Err(syn::Error::new_spanned(
            value,
            "`scope` takes a type, not a value: write the scope kind's type, e.g. \
             `scope = airlock::Independent` (it is built with `Default::default()`); \
             for a configured value, build the scope by hand with \
             `airlock::Scope::new().kind(...)`",
        ))
    }

    /// A function or a method, with a body.
    pub(super) fn function(item: TokenStream) -> syn::Result<ItemFn> {
        match syn::parse2::<syn::Item>(item.clone()) {
            Ok(syn::Item::Fn(function)) => Ok(function),
            // What syn leaves unparsed: here, a function without a body.
            Ok(syn::Item::Verbatim(tokens)) => Err(no_body(tokens)),
            Ok(other) => Err(syn::Error::new(
                crate::options::item_keyword_span(&other).unwrap_or_else(|| other.span()),
                "#[airlock::scoped] goes on a function or a method: each call of it runs \
                 in a fresh scope",
            )),
            Err(_) => Err(no_body(item)),
        }
    }

    fn no_body(tokens: TokenStream) -> syn::Error {
        syn::Error::new_spanned(
            tokens,
            "#[airlock::scoped] goes on a function or a method with a body: on a trait, \
             put it on the implementations of the method (or on a default body), \
             not on its declaration",
        )
    }
}

mod validate {
    use super::*;

    pub(super) fn function(function: &ItemFn) -> syn::Result<()> {
        let mut errors = Errors::default();
        errors.take(not_const(&function.sig));
        errors.finish()
    }

    fn not_const(sig: &syn::Signature) -> syn::Result<()> {
        match &sig.constness {
            Some(token) => Err(syn::Error::new(
                token.span,
                "#[airlock::scoped] cannot wrap a `const fn`: a scope is opened and flushed \
                 at run time; remove `const`",
            )),
            None => Ok(()),
        }
    }
}

mod generate {
    use super::*;

    /// The function with its body replaced; everything else (attributes,
    /// inner attributes, docs, visibility, signature) is printed as it was.
    pub(super) fn scoped(options: model::Options, mut function: ItemFn) -> TokenStream {
        let builder = builder(&options);
        let ret = annotation(&function.sig.output);
        let is_async = function.sig.asyncness.is_some();
        if !is_async && let Some(future) = async_trait_future(&mut function.block) {
            // `#[async_trait]` ran first and turned `async fn` into a `fn`
            // returning `Box::pin(async move { .. })`: scope the future, not
            // its construction. The future's output type is set by
            // `async_trait`'s own `let __ret: T = ..`.
            let wrapped = async_body(&builder, future.block.to_token_stream(), None);
            future.block.stmts = vec![syn::Stmt::Expr(Expr::Verbatim(wrapped), None)];
            return quote!(#function);
        }
        if !is_async && let Some((future, prefix)) = returned_async_block(&function.block) {
            // A `fn` returning `impl Future` whose body ends in an `async`
            // block: the work happens when the future is polled, so that is
            // what the scope must cover, not the future's construction.
            let new_body = future_body(&builder, prefix, future);
            function.block.stmts = vec![syn::Stmt::Expr(Expr::Verbatim(new_body), None)];
            return quote!(#function);
        }
        let body = function.block.to_token_stream();
        let new_body = if is_async {
            async_body(&builder, body, ret)
        } else {
            sync_body(&builder, body, ret)
        };
        *function.block = Block {
            brace_token: function.block.brace_token,
            stmts: vec![syn::Stmt::Expr(Expr::Verbatim(new_body), None)],
        };
        quote!(#function)
    }

    /// `::airlock::Scope::new()` and one call per option, each spanned at
    /// the user's tokens so that "`X` is not a `Policy`" points there.
    fn builder(options: &model::Options) -> TokenStream {
        let policy = options
            .policy
            .as_ref()
            .map(|policy| quote_spanned!(policy.span()=> .policy(#policy)));
        let executor = options
            .executor
            .as_ref()
            .map(|executor| quote_spanned!(executor.span()=> .executor(#executor)));
        let kind = options.scope.as_ref().map(
            |ty| quote_spanned!(ty.span()=> .kind(<#ty as ::core::default::Default>::default())),
        );
        quote!(::airlock::Scope::new() #policy #executor #kind)
    }

    /// The return type to annotate the body with: `()` for none, nothing
    /// when it holds an `impl Trait`, which cannot be named in a closure or
    /// a `let`.
    fn annotation(output: &ReturnType) -> Option<TokenStream> {
        match output {
            ReturnType::Default => Some(quote!(())),
            ReturnType::Type(_, ty) if contains_impl_trait(ty) => None,
            ReturnType::Type(_, ty) => Some(ty.to_token_stream()),
        }
    }

    fn contains_impl_trait(ty: &Type) -> bool {
        struct Finder(bool);
        impl<'ast> Visit<'ast> for Finder {
            fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
                self.0 = true;
            }
        }
        let mut finder = Finder(false);
        finder.visit_type(ty);
        finder.0
    }

    /// A local of the expansion: mixed-site hygiene keeps it out of the
    /// body's reach, so an argument named `__airlock_scope` still works.
    fn local(name: &str) -> syn::Ident {
        syn::Ident::new(name, Span::mixed_site())
    }

    /// The traits that pick, for the body's return type, how the scope
    /// reads success: `Outcome` impls first, then `Result`, then anything
    /// (a normal return is a success).
    fn outcome_imports() -> TokenStream {
        quote! {
            #[allow(unused_imports)]
            use ::airlock::__private::{ViaAny as _, ViaOutcome as _, ViaResult as _};
        }
    }

    /// The original body runs in a closure, so that its `return`s and `?`s
    /// leave the closure and not the function, and the scope sees the value.
    fn sync_body(
        builder: &TokenStream,
        body: TokenStream,
        ret: Option<TokenStream>,
    ) -> TokenStream {
        let imports = outcome_imports();
        let (scope, out) = (local("__airlock_scope"), local("__airlock_out"));
        let ret = ret.map(|ty| quote!(-> #ty));
        quote! {
            #imports
            // A closure passed where `FnOnce` is expected is `FnOnce`, so
            // the body may return what it borrows from a captured
            // `&mut self`; called in place, it would be `FnMut` and could not.
            fn __airlock_call_once<R>(f: impl ::core::ops::FnOnce() -> R) -> R {
                f()
            }
            let #scope = #builder;
            #scope
                .run(move || {
                    let #out = __airlock_call_once(move || #ret #body);
                    #[allow(unreachable_code)]
                    (&&&::airlock::__private::Kind(&#out))
                        .__airlock_kind()
                        .wrap(#out)
                })
                .into_inner()
        }
    }

    /// The original body runs in an `async` block, so that its `return`s
    /// and `?`s leave the block. The inner `let` gives the block its type
    /// before the body is checked, as `async-trait` does, so `?` converts
    /// errors without annotations.
    fn async_body(
        builder: &TokenStream,
        body: TokenStream,
        ret: Option<TokenStream>,
    ) -> TokenStream {
        let imports = outcome_imports();
        let (scope, out) = (local("__airlock_scope"), local("__airlock_out"));
        let ret_local = local("__airlock_ret");
        let inner = match &ret {
            Some(ty) => quote! {
                async move {
                    let #ret_local: #ty = #body;
                    #[allow(unreachable_code)]
                    #ret_local
                }
            },
            None => quote!(async move #body),
        };
        let ret = ret.map(|ty| quote!(: #ty));
        quote! {
            #imports
            let #scope = #builder;
            #scope
                .run_async(async move {
                    let #out #ret = #inner.await;
                    #[allow(unreachable_code)]
                    (&&&::airlock::__private::Kind(&#out))
                        .__airlock_kind()
                        .wrap(#out)
                })
                .await
                .into_inner()
        }
    }

    /// The `async` block a body ends in, and the statements before it: the
    /// shape of a `fn` that returns `impl Future` (the same probe as
    /// `tracing`'s `#[instrument]`).
    fn returned_async_block(block: &Block) -> Option<(&syn::ExprAsync, &[syn::Stmt])> {
        match block.stmts.split_last() {
            Some((syn::Stmt::Expr(Expr::Async(future), None), prefix)) => Some((future, prefix)),
            _ => None,
        }
    }

    /// The scope is built when the function is called, as for a sync `fn`,
    /// so its options may use borrowed arguments even when the future is
    /// `'static`; the statements before the `async` block run then too, as
    /// written. The block itself is kept as the user wrote it (`move` or
    /// not) and awaited inside the scope, which is current whenever the
    /// returned future is polled.
    fn future_body(
        builder: &TokenStream,
        prefix: &[syn::Stmt],
        future: &syn::ExprAsync,
    ) -> TokenStream {
        let imports = outcome_imports();
        let (scope, out) = (local("__airlock_scope"), local("__airlock_out"));
        let inner = local("__airlock_future");
        quote! {
            #imports
            let #scope = #builder;
            #(#prefix)*
            let #inner = #future;
            async move {
                #scope
                    .run_async(async move {
                        let #out = #inner.await;
                        #[allow(unreachable_code)]
                        (&&&::airlock::__private::Kind(&#out))
                            .__airlock_kind()
                            .wrap(#out)
                    })
                    .await
                    .into_inner()
            }
        }
    }

    /// The `async move { .. }` in a body ending in `Box::pin(async move {
    /// .. })`, the shape `#[async_trait]` gives a method (the same probe as
    /// `tracing`'s `#[instrument]`).
    fn async_trait_future(block: &mut Block) -> Option<&mut syn::ExprAsync> {
        let Some(syn::Stmt::Expr(Expr::Call(call), None)) = block.stmts.last_mut() else {
            return None;
        };
        let Expr::Path(path) = &*call.func else {
            return None;
        };
        let segments: Vec<String> = path
            .path
            .segments
            .iter()
            .map(|segment| segment.ident.to_string())
            .collect();
        if !segments.ends_with(&["Box".to_owned(), "pin".to_owned()]) || call.args.len() != 1 {
            return None;
        }
        match call.args.first_mut() {
            Some(Expr::Async(future)) => Some(future),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let options = parse::options(quote!(
            policy = airlock::DropAll,
            executor = self.executor(),
            scope = Independent
        ))
        .ok()
        .unwrap();
        assert!(options.policy.is_some() && options.executor.is_some() && options.scope.is_some());
    }

    #[test]
    fn scope_must_be_a_type() {
        let error = parse::options(quote!(scope = Independent::new()))
            .err()
            .unwrap();
        assert!(error.to_string().starts_with("`scope` takes a type"));
        let error = parse::options(quote!(scope = 5)).err().unwrap();
        assert!(error.to_string().starts_with("`scope` takes a type"));
    }

    #[test]
    fn repeated_and_unknown_options_are_all_reported() {
        let error = parse::options(quote!(policy = a, polcy = b, policy = c))
            .err()
            .unwrap();
        let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(
            messages,
            [
                "unknown option `polcy`: expected one of `policy`, `executor` or `scope`",
                "`policy` given twice: keep one of them",
            ]
        );
    }

    #[test]
    fn only_the_body_changes() {
        let out = expand(
            quote!(),
            quote! {
                /// Docs.
                #[inline]
                pub(crate) fn checkout(&self, n: u32) -> Result<u32, E> { #![allow(unused)] Ok(n) }
            },
        )
        .to_string();
        assert!(out.starts_with("# [doc = r\" Docs.\"] # [inline] pub (crate) fn checkout (& self , n : u32) -> Result < u32 , E > { # ! [allow (unused)]"), "{out}");
        assert!(out.contains("__airlock_scope . run (move ||"));
    }

    #[test]
    fn returned_async_blocks_are_scoped() {
        let out = expand(
            quote!(policy = DropAll),
            quote! {
                fn handle(&self) -> impl Future<Output = u8> + 'static {
                    let n = self.n;
                    async move { n }
                }
            },
        )
        .to_string();
        let scope =
            out.find("let __airlock_scope = :: airlock :: Scope :: new () . policy (DropAll) ;");
        let prefix = out.find("let n = self . n ;");
        let future = out.find("let __airlock_future = async move { n } ;");
        let run = out.find("async move { __airlock_scope . run_async (async move { let __airlock_out = __airlock_future . await ;");
        assert!(
            scope < prefix && prefix < future && future < run && scope.is_some(),
            "{out}"
        );
        // Only a final `async` block is the returned future.
        let out = expand(
            quote!(),
            quote!(
                fn f() {
                    async {};
                }
            ),
        )
        .to_string();
        assert!(out.contains(". run (move ||"), "{out}");
    }

    #[test]
    fn async_trait_methods_scope_the_future() {
        let out = expand(
            quote!(),
            quote! {
                fn handle<'a, 'async_trait>(&'a self) -> Pin<Box<dyn Future<Output = u8> + Send + 'async_trait>> {
                    Box::pin(async move { let __ret: u8 = { 1 }; __ret })
                }
            },
        )
        .to_string();
        assert!(
            out.contains("Box :: pin (async move { # [allow (unused_imports)]"),
            "{out}"
        );
        assert!(out.contains("run_async"));
    }
}
