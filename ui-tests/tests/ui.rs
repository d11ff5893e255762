//! Compile tests of `#[airlock::task]` and `#[airlock::scoped]`.
//!
//! `tests/ui/<macro>/pass/*.rs` must compile and run; `tests/ui/<macro>/fail/*.rs`
//! must fail with the error in the `.stderr` beside each. After changing a
//! message, regenerate with `TRYBUILD=overwrite cargo test -p airlock-ui-tests`
//! and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/*/pass/*.rs");
    t.compile_fail("tests/ui/*/fail/*.rs");
}
