//! Tests that drive a real browser. `make test` runs this module with --test-threads=1 so two
//! Chromium instances never share the two cores.

mod browser;
mod room;
