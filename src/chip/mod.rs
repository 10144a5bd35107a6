//! What the station knows about chips, independent of any backend: how to lock a chip and prove
//! it locked ([`lock`]: register recipes, lock-state checks, unlock methods, the built-in recipes
//! for nRF52, STM32F4 and STM32L4), and how to tell that the attached chip is the profile's
//! ([`id`]: the identification-register check).
//!
//! The profile validates its `[chip]` and `[lock]` sections into these types; backends that
//! speak to registers (today probe-rs) run them. Keeping this knowledge below both means loading
//! a profile never pulls in a backend.
//!
//! **Invariant:** pure data and pure functions over a [`lock::RegisterBus`]; imports neither the
//! profile, the station nor any backend (only the seam's [`crate::device::TargetError`]).

pub mod id;
pub mod lock;

pub use id::ChipIdCheck;
pub use lock::{LockRecipe, LockStateCheck, RegisterStep, UnlockMethod};
