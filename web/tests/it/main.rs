//! Integration tests of the `tongxin` server. Modules under `serial` drive a real browser and
//! run one at a time (`make test` runs them with --test-threads=1); everything else runs in
//! parallel.

mod api;
mod classroom_manage;
mod classroom_reports;
mod cli;
mod harness;
mod https;
mod rooms;
mod serial;
mod store;
mod stream_keys;
