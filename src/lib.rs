//! Imprint: a factory provisioning station.
//!
//! The library holds everything the station does; the `imprint` binary (`src/main.rs` and
//! `src/cli/`) only parses arguments and calls in here. See ARCHITECTURE.md for the code map.
//!
//! Layers, bottom up:
//! - formats (pure, no device I/O): [`profile`], [`image`], [`identity`], [`trust`], [`chip`],
//!   [`manifest`], [`store`];
//! - the hardware seam: [`target`] (one `Target` trait, backends in submodules);
//! - the station: [`station`] (one unit through the steps, a line of slots, events);
//! - the audit record: [`ledger`] (the only module that touches SQLite), and [`central`], the
//!   shared PostgreSQL record many stations feed (the only module that touches PostgreSQL);
//! - the operator window: [`gui`] (the only module that touches egui).

pub mod central;
pub mod chip;
pub mod contract;
pub mod device;
pub mod fcc;
#[cfg(feature = "gui")]
pub mod gui;
pub mod identity;
pub mod image;
pub mod ledger;
pub mod manifest;
pub mod mbed_header;
pub mod output;
pub mod profile;
pub mod station;
pub mod store;
pub mod trust;
