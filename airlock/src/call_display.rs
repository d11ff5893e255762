//! Renders a payload's JSON as a call: `name(field: value, ...)`.
//!
//! Going through the JSON text (rather than `serde_json::Value`) keeps the
//! fields in declaration order without turning on serde_json's
//! `preserve_order` feature for every crate in the user's build.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The top level of a payload: the shapes a task struct serializes to.
enum Args<'a> {
    /// `struct S { a, b }` → `{"a":..,"b":..}`
    Named(Vec<(&'a str, &'a RawValue)>),
    /// `struct S(a, b)` → `[..]`
    Positional(Vec<&'a RawValue>),
    /// `struct S;` → `null`
    None,
}

impl<'de: 'a, 'a> Deserialize<'de> for Args<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;

        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = Args<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a struct, a tuple or null")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut args = Vec::new();
                while let Some(entry) = map.next_entry::<&str, &RawValue>()? {
                    args.push(entry);
                }
                Ok(Args::Named(args))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut args = Vec::new();
                while let Some(value) = seq.next_element::<&RawValue>()? {
                    args.push(value);
                }
                Ok(Args::Positional(args))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Args::None)
            }
        }

        deserializer.deserialize_any(ArgsVisitor)
    }
}

pub(crate) fn write_call(f: &mut fmt::Formatter<'_>, name: &str, json: &str) -> fmt::Result {
    f.write_str(name)?;
    match serde_json::from_str::<Args<'_>>(json) {
        Ok(Args::Named(args)) => {
            f.write_str("(")?;
            for (i, (key, value)) in args.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}{key}: {}", value.get())?;
            }
            f.write_str(")")
        }
        Ok(Args::Positional(args)) => {
            f.write_str("(")?;
            for (i, value) in args.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}{}", value.get())?;
            }
            f.write_str(")")
        }
        Ok(Args::None) => f.write_str("()"),
        // A newtype or a plain value: show it as the single argument.
        Err(_) => write!(f, "({json})"),
    }
}
