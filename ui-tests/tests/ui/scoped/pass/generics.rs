//! Generics, lifetimes, `where` clauses, `impl Trait` in arguments and
//! return types, `const` generics.
#![deny(warnings)]

use std::fmt::Display;

#[airlock::scoped]
fn describe<T: Display, const N: usize>(items: [T; N]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

#[airlock::scoped]
fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> &'a str {
    if a.len() >= b.len() { a } else { b }
}

#[airlock::scoped]
fn sum<I>(items: I) -> Result<u64, String>
where
    I: IntoIterator,
    I::Item: Into<u64>,
{
    let total: u64 = items.into_iter().map(Into::into).sum();
    if total == 0 {
        return Err("empty".to_owned());
    }
    Ok(total)
}

#[airlock::scoped]
fn show(value: impl Display, suffix: &impl Display) -> impl Display {
    format!("{value}{suffix}")
}

#[airlock::scoped]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

#[airlock::scoped]
fn boxed<'a>(items: &'a [u8]) -> Box<dyn Iterator<Item = &'a u8> + 'a> {
    Box::new(items.iter())
}

struct Wrapper<T>(T);

impl<T: Clone + PartialEq> Wrapper<T> {
    #[airlock::scoped]
    fn get(&self) -> T {
        self.0.clone()
    }

    #[airlock::scoped]
    fn same<U>(&self, other: &U) -> bool
    where
        U: AsRef<T>,
    {
        *other.as_ref() == self.0
    }
}

struct Holder(u8);

impl AsRef<u8> for Holder {
    fn as_ref(&self) -> &u8 {
        &self.0
    }
}

fn main() {
    assert_eq!(describe([1, 2]), ["1", "2"]);
    assert_eq!(longest("ab", "c"), "ab");
    assert_eq!(sum([1u8, 2, 3]), Ok(6));
    assert_eq!(sum(Vec::<u8>::new()), Err("empty".to_owned()));
    assert_eq!(show(1, &"x").to_string(), "1x");
    assert_eq!(evens(5).collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(boxed(&[1, 2]).count(), 2);
    assert_eq!(Wrapper(3u8).get(), 3);
    assert!(Wrapper(3u8).same(&Holder(3)));
}
