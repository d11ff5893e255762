//! How a `#[scoped]` function's return value decides its scope's fate: the
//! tier its type picks at compile time, the `always_flush` opt-in, and the
//! return types refused because their success cannot be read.

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit::Visit;
use syn::{Ident, ReturnType, TypeImplTrait};

/// The traits that pick, for the body's return type, how the scope reads
/// success: an HTTP response by its status (feature `axum`), then `Outcome`
/// impls, then `Result`, then anything (a normal return is a success).
pub(crate) fn imports() -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use ::airlock::__private::{
            ViaAny as _, ViaHttp as _, ViaOutcome as _, ViaResult as _,
        };
    }
}

/// `out` wrapped with its success decided: by its type, or always a success
/// with `always_flush`.
pub(crate) fn wrap(out: &Ident, always_flush: bool) -> TokenStream {
    if always_flush {
        return quote!(::airlock::__private::AnyTag.wrap(#out));
    }
    quote! {
        (&&&&::airlock::__private::Kind(&#out))
            .__airlock_kind()
            .wrap(#out)
    }
}

/// Refuses a return type that can signal failure in-band where the scope
/// cannot see it: `impl IntoResponse`, whose status is known only once it is
/// turned into a response. `always_flush` accepts it on purpose.
pub(crate) fn check_return(output: &ReturnType, always_flush: bool) -> syn::Result<()> {
    let ReturnType::Type(_, ty) = output else {
        return Ok(());
    };
    if always_flush {
        return Ok(());
    }
    let mut finder = IntoResponseFinder(None);
    finder.visit_type(ty);
    match finder.0 {
        Some(found) => Err(syn::Error::new_spanned(
            found,
            "#[airlock::scoped] cannot judge `impl IntoResponse`: its status is only known \
             once it is turned into a response, so a 4xx or 5xx would flush the scope's \
             effects. Return `axum::response::Response` (end with `.into_response()`), or \
             put `airlock::tower::AirlockLayer` in front of the routes instead of this \
             attribute, or write `#[airlock::scoped(always_flush)]` to flush whatever the \
             handler returns",
        )),
        None => Ok(()),
    }
}

/// The first `impl ... IntoResponse ...` in a type.
struct IntoResponseFinder(Option<TypeImplTrait>);

impl<'ast> Visit<'ast> for IntoResponseFinder {
    fn visit_type_impl_trait(&mut self, ty: &'ast TypeImplTrait) {
        let into_response = ty.bounds.iter().any(|bound| match bound {
            syn::TypeParamBound::Trait(bound) => bound
                .path
                .segments
                .last()
                .is_some_and(|segment| segment.ident == "IntoResponse"),
            _ => false,
        });
        if into_response && self.0.is_none() {
            self.0 = Some(ty.clone());
        }
        syn::visit::visit_type_impl_trait(self, ty);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(tokens: TokenStream) -> ReturnType {
        syn::parse2(tokens).unwrap()
    }

    #[test]
    fn impl_into_response_is_refused_anywhere_in_the_type() {
        for ty in [
            quote!(-> impl IntoResponse),
            quote!(-> impl axum::response::IntoResponse + Send),
            quote!(-> Result<impl IntoResponse, AppError>),
        ] {
            let error = check_return(&output(ty), false).unwrap_err();
            assert!(error.to_string().contains("always_flush"), "{error}");
        }
    }

    #[test]
    fn other_types_and_the_opt_in_pass() {
        for ty in [
            quote!(-> Response),
            quote!(-> impl Future<Output = u8>),
            quote!(-> (StatusCode, String)),
        ] {
            assert!(check_return(&output(ty), false).is_ok());
        }
        assert!(check_return(&output(quote!(-> impl IntoResponse)), true).is_ok());
        assert!(check_return(&ReturnType::Default, false).is_ok());
    }

    #[test]
    fn always_flush_skips_the_tiers() {
        let out = Ident::new("out", proc_macro2::Span::call_site());
        assert!(wrap(&out, true).to_string().contains("AnyTag"));
        let tiered = wrap(&out, false).to_string();
        assert!(
            tiered.contains("Kind") && !tiered.contains("AnyTag"),
            "{tiered}"
        );
    }
}
