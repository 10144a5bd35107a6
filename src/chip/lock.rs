//! Lock recipes: how to enable a chip's readout/debug protection through its registers, how to
//! tell whether it is on, and how (if at all) to take it off again by mass erase.
//!
//! A recipe is data — a list of [`RegisterStep`]s (write, read-modify-write, wait for bits,
//! reset, delay) — run by [`run_register_steps`] over any [`RegisterBus`]. Keeping it data means
//! the built-in recipes can be checked against the reference manuals' sequences step by step in
//! tests without a chip, and a profile can declare its own recipe for a part we do not ship
//! (`[[lock.writes]]`, see docs/probes.md). After a recipe runs, the probe-rs target proves the
//! lock: the chip must report itself locked and a debug read of flash must be refused
//! ([`judge_lock_proof`]).
//!
//! Built in (register addresses and keys from the vendors' reference manuals):
//! - `nrf52-approtect`: UICR.APPROTECT = 0xFFFFFF00 through the NVMC, then reset; the CTRL-AP's
//!   APPROTECTSTATUS tells the state; recovery is the CTRL-AP ERASEALL that probe-rs runs when
//!   allowed to erase.
//! - `stm32f4-rdp1`: option bytes RDP = 0x55 (level 1) through FLASH_OPTCR; recovery writes
//!   RDP = 0xAA (level 0), which the chip answers with a mass erase.
//! - `stm32l4-rdp1`: option bytes RDP = 0xBB (level 1) through FLASH_OPTR, then OBL_LAUNCH
//!   (reloads the option bytes with a reset); recovery as for F4.

use std::time::{Duration, Instant};

use crate::device::TargetError;

/// One step of a register recipe. All accesses are 32-bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterStep {
    /// Write `value` to the register at `address`.
    Write { address: u64, value: u32, link_may_drop: bool },
    /// Read-modify-write: the bits in `mask` become those of `value`, the others are kept.
    Modify { address: u64, mask: u32, value: u32, link_may_drop: bool },
    /// Poll until `(read & mask) == value`, failing after `timeout_ms`.
    WaitFor { address: u64, mask: u32, value: u32, timeout_ms: u64 },
    /// A system reset (the debug link may drop; the target re-attaches afterwards).
    Reset,
    /// Wait without touching the chip.
    Delay { duration_ms: u64 },
}

/// How to tell whether the chip is locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStateCheck {
    /// A memory-mapped register: unlocked exactly when `(read & mask) == unlocked_value`. A read
    /// the chip refuses also counts as locked.
    Register { address: u64, mask: u32, unlocked_value: u32 },
    /// Nordic nRF52: the CTRL-AP (access port 1) register APPROTECTSTATUS (offset 0x0C) reads 0
    /// while access port protection is on. Readable even when the chip is locked.
    NordicCtrlAp,
}

impl LockStateCheck {
    /// For [`LockStateCheck::Register`]: whether a register value means unlocked.
    pub fn register_value_means_unlocked(&self, value: u32) -> Option<bool> {
        match self {
            LockStateCheck::Register { mask, unlocked_value, .. } => Some(value & mask == *unlocked_value),
            LockStateCheck::NordicCtrlAp => None,
        }
    }

    /// For [`LockStateCheck::NordicCtrlAp`]: whether an APPROTECTSTATUS value means unlocked.
    pub fn nordic_status_means_unlocked(status: u32) -> bool {
        status != 0
    }
}

/// How a locked chip is brought back (always destroying its flash contents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockMethod {
    /// probe-rs's own erase-all (its chip's debug sequence, e.g. the nRF52 CTRL-AP ERASEALL),
    /// triggered by attaching with the erase-all permission.
    ProbeRsEraseAll,
    /// A register recipe (e.g. RDP back to level 0, which the chip answers with a mass erase).
    Steps(Vec<RegisterStep>),
}

/// A complete recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecipe {
    /// The recipe's name (a built-in name or `profile`), for records and messages.
    pub name: String,
    /// The steps that enable protection.
    pub lock_steps: Vec<RegisterStep>,
    /// How to tell the state.
    pub lock_state: LockStateCheck,
    /// How to recover a locked chip.
    pub unlock: UnlockMethod,
}

/// The names of the built-in recipes, for messages and docs.
pub const BUILTIN_RECIPE_NAMES: [&str; 3] = ["nrf52-approtect", "stm32f4-rdp1", "stm32l4-rdp1"];

mod nrf52 {
    pub const NVMC_READY: u64 = 0x4001_E400;
    pub const NVMC_CONFIG: u64 = 0x4001_E504;
    pub const NVMC_CONFIG_READ_ONLY: u32 = 0;
    pub const NVMC_CONFIG_WRITE_ENABLE: u32 = 1;
    pub const UICR_APPROTECT: u64 = 0x1000_1208;
    /// PALL = 0x00: protection enabled.
    pub const APPROTECT_ENABLED: u32 = 0xFFFF_FF00;
    /// A UICR word write takes about 41 µs; this bound is generous.
    pub const NVMC_TIMEOUT_MS: u64 = 100;
}

mod stm32f4 {
    pub const FLASH_OPTKEYR: u64 = 0x4002_3C08;
    pub const FLASH_SR: u64 = 0x4002_3C0C;
    pub const FLASH_OPTCR: u64 = 0x4002_3C14;
    pub const SR_BSY: u32 = 1 << 16;
    pub const OPTCR_OPTLOCK: u32 = 1 << 0;
    pub const OPTCR_OPTSTRT: u32 = 1 << 1;
    pub const OPTCR_RDP_MASK: u32 = 0xFF << 8;
    pub const RDP_LEVEL_0: u32 = 0xAA << 8;
    pub const RDP_LEVEL_1: u32 = 0x55 << 8;
    /// Programming the option bytes takes milliseconds.
    pub const OPTION_TIMEOUT_MS: u64 = 2_000;
    /// Level 1 -> 0 mass-erases up to 2 MiB: tens of seconds on an F42x/F43x.
    pub const MASS_ERASE_TIMEOUT_MS: u64 = 60_000;
}

mod stm32l4 {
    pub const FLASH_KEYR: u64 = 0x4002_2008;
    pub const FLASH_OPTKEYR: u64 = 0x4002_200C;
    pub const FLASH_SR: u64 = 0x4002_2010;
    pub const FLASH_CR: u64 = 0x4002_2014;
    pub const FLASH_OPTR: u64 = 0x4002_2020;
    pub const KEY1: u32 = 0x4567_0123;
    pub const KEY2: u32 = 0xCDEF_89AB;
    pub const SR_BSY: u32 = 1 << 16;
    /// Write-one-to-clear error flags: OPERR, PROGERR, WRPERR, PGAERR, SIZERR, PGSERR, MISSERR,
    /// FASTERR, RDERR, OPTVERR, and EOP.
    pub const SR_CLEAR_ALL: u32 = 0x0000_C3FB;
    pub const CR_OPTSTRT: u32 = 1 << 17;
    pub const CR_OBL_LAUNCH: u32 = 1 << 27;
    pub const OPTR_RDP_MASK: u32 = 0xFF;
    pub const RDP_LEVEL_0: u32 = 0xAA;
    pub const RDP_LEVEL_1: u32 = 0xBB;
    pub const OPTION_TIMEOUT_MS: u64 = 2_000;
    pub const MASS_ERASE_TIMEOUT_MS: u64 = 60_000;
    /// The option-byte reload resets the chip; give it time before re-attaching.
    pub const RELOAD_SETTLE_MS: u64 = 100;
}

/// The option-byte keys shared by STM32F4 and STM32L4.
const STM32_OPTKEY1: u32 = 0x0819_2A3B;
const STM32_OPTKEY2: u32 = 0x4C5D_6E7F;

fn write(address: u64, value: u32) -> RegisterStep {
    RegisterStep::Write { address, value, link_may_drop: false }
}

fn modify(address: u64, mask: u32, value: u32) -> RegisterStep {
    RegisterStep::Modify { address, mask, value, link_may_drop: false }
}

fn wait_for(address: u64, mask: u32, value: u32, timeout_ms: u64) -> RegisterStep {
    RegisterStep::WaitFor { address, mask, value, timeout_ms }
}

fn nrf52_approtect() -> LockRecipe {
    use nrf52::*;
    LockRecipe {
        name: "nrf52-approtect".to_string(),
        lock_steps: vec![
            write(NVMC_CONFIG, NVMC_CONFIG_WRITE_ENABLE),
            wait_for(NVMC_READY, 1, 1, NVMC_TIMEOUT_MS),
            write(UICR_APPROTECT, APPROTECT_ENABLED),
            wait_for(NVMC_READY, 1, 1, NVMC_TIMEOUT_MS),
            write(NVMC_CONFIG, NVMC_CONFIG_READ_ONLY),
            wait_for(NVMC_READY, 1, 1, NVMC_TIMEOUT_MS),
            // UICR.APPROTECT takes effect at the next reset.
            RegisterStep::Reset,
        ],
        lock_state: LockStateCheck::NordicCtrlAp,
        unlock: UnlockMethod::ProbeRsEraseAll,
    }
}

fn stm32f4_option_bytes(rdp_value: u32, timeout_ms: u64) -> Vec<RegisterStep> {
    use stm32f4::*;
    vec![
        wait_for(FLASH_SR, SR_BSY, 0, OPTION_TIMEOUT_MS),
        write(FLASH_OPTKEYR, STM32_OPTKEY1),
        write(FLASH_OPTKEYR, STM32_OPTKEY2),
        modify(FLASH_OPTCR, OPTCR_RDP_MASK, rdp_value),
        modify(FLASH_OPTCR, OPTCR_OPTSTRT, OPTCR_OPTSTRT),
        wait_for(FLASH_SR, SR_BSY, 0, timeout_ms),
        modify(FLASH_OPTCR, OPTCR_OPTLOCK, OPTCR_OPTLOCK),
    ]
}

fn stm32f4_rdp1() -> LockRecipe {
    use stm32f4::*;
    LockRecipe {
        name: "stm32f4-rdp1".to_string(),
        lock_steps: stm32f4_option_bytes(RDP_LEVEL_1, OPTION_TIMEOUT_MS),
        lock_state: LockStateCheck::Register {
            address: FLASH_OPTCR,
            mask: OPTCR_RDP_MASK,
            unlocked_value: RDP_LEVEL_0,
        },
        unlock: UnlockMethod::Steps(stm32f4_option_bytes(RDP_LEVEL_0, MASS_ERASE_TIMEOUT_MS)),
    }
}

fn stm32l4_option_bytes(rdp_value: u32, timeout_ms: u64) -> Vec<RegisterStep> {
    use stm32l4::*;
    vec![
        wait_for(FLASH_SR, SR_BSY, 0, OPTION_TIMEOUT_MS),
        write(FLASH_KEYR, KEY1),
        write(FLASH_KEYR, KEY2),
        write(FLASH_OPTKEYR, STM32_OPTKEY1),
        write(FLASH_OPTKEYR, STM32_OPTKEY2),
        write(FLASH_SR, SR_CLEAR_ALL),
        modify(FLASH_OPTR, OPTR_RDP_MASK, rdp_value),
        modify(FLASH_CR, CR_OPTSTRT, CR_OPTSTRT),
        wait_for(FLASH_SR, SR_BSY, 0, timeout_ms),
        // Reloading the option bytes resets the chip: the debug link drops here.
        RegisterStep::Modify {
            address: FLASH_CR,
            mask: CR_OBL_LAUNCH,
            value: CR_OBL_LAUNCH,
            link_may_drop: true,
        },
        RegisterStep::Delay { duration_ms: RELOAD_SETTLE_MS },
    ]
}

fn stm32l4_rdp1() -> LockRecipe {
    use stm32l4::*;
    LockRecipe {
        name: "stm32l4-rdp1".to_string(),
        lock_steps: stm32l4_option_bytes(RDP_LEVEL_1, OPTION_TIMEOUT_MS),
        lock_state: LockStateCheck::Register {
            address: FLASH_OPTR,
            mask: OPTR_RDP_MASK,
            unlocked_value: RDP_LEVEL_0,
        },
        unlock: UnlockMethod::Steps(stm32l4_option_bytes(RDP_LEVEL_0, MASS_ERASE_TIMEOUT_MS)),
    }
}

impl LockRecipe {
    /// A built-in recipe by name (`nrf52-approtect`, `stm32f4-rdp1`, `stm32l4-rdp1`).
    pub fn builtin(name: &str) -> Option<LockRecipe> {
        match name {
            "nrf52-approtect" => Some(nrf52_approtect()),
            "stm32f4-rdp1" => Some(stm32f4_rdp1()),
            "stm32l4-rdp1" => Some(stm32l4_rdp1()),
            _ => None,
        }
    }

    /// The built-in recipe for a probe-rs chip name, when its family has one (`nRF52840_xxAA` ->
    /// `nrf52-approtect`, `STM32F429ZITx` -> `stm32f4-rdp1`, `STM32L476RGTx` -> `stm32l4-rdp1`).
    pub fn default_for_chip(chip_name: &str) -> Option<LockRecipe> {
        let upper = chip_name.to_ascii_uppercase();
        let name = if upper.starts_with("NRF52") {
            "nrf52-approtect"
        } else if upper.starts_with("STM32F4") {
            "stm32f4-rdp1"
        } else if upper.starts_with("STM32L4")
            && !upper.starts_with("STM32L4R")
            && !upper.starts_with("STM32L4S")
        {
            // L4R/L4S have a different flash controller layout (dual-bank 2 MiB): not covered.
            "stm32l4-rdp1"
        } else {
            return None;
        };
        LockRecipe::builtin(name)
    }
}

/// How long probe-rs's own erase-all (CTRL-AP ERASEALL and the like) may take.
pub const PROBE_RS_ERASE_ALL_BOUND_MS: u64 = 60_000;
/// Allowance per register access, and per re-attach after a dropped link.
const ACCESS_ALLOWANCE_MS: u64 = 1_000;
const REATTACH_ALLOWANCE_MS: u64 = 10_000;

/// An upper bound on how long `steps` may take, for the watchdog around a recipe (recipes
/// report no progress): every wait's and delay's own bound, plus an allowance per access and
/// per re-attach.
pub fn steps_time_bound_ms(steps: &[RegisterStep]) -> u64 {
    steps
        .iter()
        .map(|step| match step {
            RegisterStep::Write { link_may_drop, .. } | RegisterStep::Modify { link_may_drop, .. } => {
                ACCESS_ALLOWANCE_MS + if *link_may_drop { REATTACH_ALLOWANCE_MS } else { 0 }
            }
            RegisterStep::WaitFor { timeout_ms, .. } => ACCESS_ALLOWANCE_MS + timeout_ms,
            RegisterStep::Reset => ACCESS_ALLOWANCE_MS + REATTACH_ALLOWANCE_MS,
            RegisterStep::Delay { duration_ms } => *duration_ms,
        })
        .fold(0u64, u64::saturating_add)
}

/// What a recipe runs on: 32-bit register access through the debug port, a system reset, and
/// time. The probe-rs session implements it; tests use a register map.
pub trait RegisterBus {
    /// Reads a 32-bit register.
    fn read_u32(&mut self, address: u64) -> Result<u32, TargetError>;
    /// Writes a 32-bit register.
    fn write_u32(&mut self, address: u64, value: u32) -> Result<(), TargetError>;
    /// Resets the chip (the debug link may drop).
    fn system_reset(&mut self) -> Result<(), TargetError>;
    /// The step before dropped the debug link on purpose: re-attach before the next access.
    fn link_dropped(&mut self);
    /// Sleeps (polling interval, delays).
    fn sleep(&mut self, duration: Duration);
}

/// How often a [`RegisterStep::WaitFor`] polls.
pub const REGISTER_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Runs `steps` in order; `operation` (`lock` or `unlock`) names the work in errors. A step
/// marked `link_may_drop` (and [`RegisterStep::Reset`]) may fail without failing the recipe:
/// the chip resetting under the probe is what it is for.
pub fn run_register_steps(
    bus: &mut dyn RegisterBus,
    operation: &'static str,
    steps: &[RegisterStep],
) -> Result<(), TargetError> {
    for (index, step) in steps.iter().enumerate() {
        let step_context = |error: TargetError| match error {
            TargetError::Refused { operation, address, reason } => TargetError::Refused {
                operation,
                address,
                reason: format!("{reason} (step {} of {})", index + 1, steps.len()),
            },
            other => other,
        };
        match *step {
            RegisterStep::Write { address, value, link_may_drop } => {
                let outcome = bus.write_u32(address, value);
                finish_access(bus, outcome, link_may_drop).map_err(step_context)?;
            }
            RegisterStep::Modify { address, mask, value, link_may_drop } => {
                let old = bus.read_u32(address).map_err(step_context)?;
                let outcome = bus.write_u32(address, (old & !mask) | (value & mask));
                finish_access(bus, outcome, link_may_drop).map_err(step_context)?;
            }
            RegisterStep::WaitFor { address, mask, value, timeout_ms } => {
                let deadline = Instant::now() + Duration::from_millis(timeout_ms);
                loop {
                    let read = bus.read_u32(address).map_err(step_context)?;
                    if read & mask == value {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(step_context(TargetError::Refused {
                            operation,
                            address,
                            reason: format!(
                                "timed out after {timeout_ms} ms waiting for (value & {mask:#010x}) == {value:#010x}; last read {read:#010x}"
                            ),
                        }));
                    }
                    bus.sleep(REGISTER_POLL_INTERVAL);
                }
            }
            RegisterStep::Reset => {
                let outcome = bus.system_reset();
                finish_access(bus, outcome, true)?;
            }
            RegisterStep::Delay { duration_ms } => bus.sleep(Duration::from_millis(duration_ms)),
        }
    }
    Ok(())
}

fn finish_access(
    bus: &mut dyn RegisterBus,
    outcome: Result<(), TargetError>,
    link_may_drop: bool,
) -> Result<(), TargetError> {
    match outcome {
        Ok(()) if link_may_drop => {
            bus.link_dropped();
            Ok(())
        }
        Ok(()) => Ok(()),
        Err(error) if link_may_drop => {
            tracing::debug!(%error, "the debug link dropped as the recipe expected");
            bus.link_dropped();
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Evidence that a lock holds, recorded with the lock step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockProof {
    /// The address whose debug read was refused.
    pub refused_read_address: u64,
    /// How the refusal was reported.
    pub refusal: String,
}

/// Decides whether a recipe's lock holds: the chip must report itself locked, and a debug read
/// of `read_address` must have been refused as [`TargetError::Locked`] (the probe-rs target
/// reports an access fault on a locked chip that way: a locked nRF52 does not answer on its
/// AHB-AP at all, an STM32 at RDP level 1 answers flash reads with a bus fault). A lost probe or
/// a timeout proves nothing and fails the lock.
pub fn judge_lock_proof(
    recipe_name: &str,
    reports_locked: bool,
    read_address: u64,
    read_outcome: Result<(), TargetError>,
) -> Result<LockProof, TargetError> {
    if !reports_locked {
        return Err(TargetError::Refused {
            operation: "lock",
            address: read_address,
            reason: format!("lock recipe {recipe_name} ran, but the chip does not report itself locked"),
        });
    }
    match read_outcome {
        Ok(()) => Err(TargetError::Refused {
            operation: "lock",
            address: read_address,
            reason: format!(
                "lock recipe {recipe_name} ran and the chip reports itself locked, but a debug read of flash still succeeds (a power cycle may be needed for this part)"
            ),
        }),
        Err(TargetError::Locked) => {
            Ok(LockProof { refused_read_address: read_address, refusal: TargetError::Locked.to_string() })
        }
        Err(other) => Err(TargetError::Refused {
            operation: "lock",
            address: read_address,
            reason: format!(
                "lock recipe {recipe_name} ran, but the proof read failed for another reason than the lock: {other}"
            ),
        }),
    }
}
