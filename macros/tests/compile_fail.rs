//! Misuse of `#[derive(SyncEntity)]` fails to compile with an error at the user's span.

#[test]
fn misuse_is_a_compile_error_that_points_at_the_problem() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
