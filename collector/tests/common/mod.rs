//! Shared by the store and API test binaries.
#![allow(dead_code)]

pub mod clickhouse;
pub mod fixtures;
pub mod suite;
