//! Integration tests of `fieldsync-shared` through its public API.

mod fuzz_regressions;
