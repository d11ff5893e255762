//! Pieces shared by both attributes: collecting errors, set-once options,
//! walking an option list, re-emitting the item on error.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::{Attribute, Ident, Token};

/// Several errors reported together, so that one compile shows every mistake
/// in an attribute rather than one per round trip.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records the error of a rule that returns a value, and passes the value
    /// on when there is one.
    pub(crate) fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// An option that may be given at most once.
pub(crate) struct Once<T> {
    key: &'static str,
    value: Option<T>,
}

impl<T> Once<T> {
    pub(crate) const fn new(key: &'static str) -> Self {
        Once { key, value: None }
    }

    /// Stores `value`, or reports "`key` given twice" at the second key.
    pub(crate) fn set(&mut self, key_span: Span, value: T) -> syn::Result<()> {
        if self.value.is_some() {
            return Err(syn::Error::new(
                key_span,
                format!("`{}` given twice: keep one of them", self.key),
            ));
        }
        self.value = Some(value);
        Ok(())
    }

    pub(crate) fn into_inner(self) -> Option<T> {
        self.value
    }
}

/// Walks `key = value, key = value, ...`.
///
/// `option` parses one option, key included, and returns `Ok(false)` when the
/// next key is not one it knows. A bad option is recorded and skipped up to
/// the next comma, so that every bad option in the list is reported at once.
pub(crate) fn parse_list(
    input: ParseStream<'_>,
    valid: &[&str],
    mut option: impl FnMut(ParseStream<'_>) -> syn::Result<bool>,
) -> syn::Result<()> {
    let mut errors = Errors::default();
    while !input.is_empty() {
        match option(input) {
            Ok(true) => {}
            Ok(false) => {
                errors.push(unknown_key(input, valid));
                skip_to_comma(input);
            }
            Err(error) => {
                errors.push(error);
                skip_to_comma(input);
            }
        }
        if input.is_empty() {
            break;
        }
        if let Err(error) = input.parse::<Token![,]>() {
            errors.push(error);
            skip_to_comma(input);
            // The comma itself, when skipping stopped at one.
            let _ = input.parse::<Option<Token![,]>>();
        }
    }
    errors.finish()
}

fn unknown_key(input: ParseStream<'_>, valid: &[&str]) -> syn::Error {
    let expected = list(valid);
    match input.fork().call(Ident::parse_any) {
        Ok(key) => syn::Error::new(
            key.span(),
            format!(
                "unknown option `{}`: expected one of {expected}",
                key.unraw()
            ),
        ),
        Err(_) => input.error(format!("expected an option: one of {expected}")),
    }
}

fn skip_to_comma(input: ParseStream<'_>) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, proc_macro2::TokenTree::Punct(p) if p.as_char() == ',') {
                return Ok(((), rest));
            }
            rest = next;
        }
        Ok(((), rest))
    });
}

/// "`a`, `b` or `c`".
fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("`{item}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// What an attribute expands to when it cannot do its job: the item as it
/// was, so that the rest of the crate still type-checks, and the errors.
pub(crate) fn item_with_errors(item: TokenStream, error: &syn::Error) -> TokenStream {
    let mut tokens = item;
    tokens.extend(error.to_compile_error());
    tokens
}

/// The attributes whose path is exactly `name` (`doc`, `cfg`).
pub(crate) fn attrs_named<'a>(
    attrs: &'a [Attribute],
    name: &'a str,
) -> impl Iterator<Item = &'a Attribute> + 'a {
    attrs.iter().filter(move |attr| attr.path().is_ident(name))
}

/// A type or pattern as a user would write it, for error messages:
/// `Vec<u8>` rather than `Vec < u8 >`.
pub(crate) fn show(tokens: &impl quote::ToTokens) -> String {
    let mut text = tokens.to_token_stream().to_string();
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" ,", ","),
        (" :: ", "::"),
        (":: ", "::"),
        ("& ", "&"),
        ("[ ", "["),
        (" ]", "]"),
        ("( ", "("),
        (" )", ")"),
        (" ;", ";"),
        ("' ", "'"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// `struct`, `enum`, `impl`, ...: the token that says what the item is.
pub(crate) fn item_keyword_span(item: &syn::Item) -> Option<Span> {
    use syn::Item;
    Some(match item {
        Item::Struct(item) => item.struct_token.span,
        Item::Enum(item) => item.enum_token.span,
        Item::Union(item) => item.union_token.span,
        Item::Impl(item) => item.impl_token.span,
        Item::Trait(item) => item.trait_token.span,
        Item::Mod(item) => item.mod_token.span,
        Item::Const(item) => item.const_token.span,
        Item::Static(item) => item.static_token.span,
        Item::Type(item) => item.type_token.span,
        Item::Use(item) => item.use_token.span,
        Item::ExternCrate(item) => item.extern_token.span,
        Item::ForeignMod(item) => item.abi.extern_token.span,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_read_as_written() {
        let ty: syn::Type = syn::parse_quote!(&'a [Vec<(u8, std::string::String)>; 3]);
        assert_eq!(show(&ty), "&'a [Vec<(u8, std::string::String)>; 3]");
        let ty: syn::Type = syn::parse_quote!(Option<&mut str>);
        assert_eq!(show(&ty), "Option<&mut str>");
    }

    #[test]
    fn lists_read_like_english() {
        assert_eq!(list(&["a"]), "`a`");
        assert_eq!(list(&["a", "b"]), "`a` or `b`");
        assert_eq!(list(&["a", "b", "c"]), "`a`, `b` or `c`");
    }

    #[test]
    fn once_rejects_a_second_value() {
        let mut once = Once::new("queue");
        assert!(once.set(Span::call_site(), 1).is_ok());
        let error = once.set(Span::call_site(), 2).unwrap_err();
        assert_eq!(error.to_string(), "`queue` given twice: keep one of them");
        assert_eq!(once.into_inner(), Some(1));
    }
}
