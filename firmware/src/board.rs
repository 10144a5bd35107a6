//! The board: memory map, code-memory access, UART0, the bootloader-to-application handoff,
//! and the bare-metal runtime (vector table, reset handler, heap, panic handler).
//!
//! The memory map is fixed by the station's QEMU profile (`profiles/qemu-mps2-an385.toml`);
//! the constants below must agree with it.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::ptr;

/// Bootloader region (this is where the CPU finds its vector table at reset).
pub const BOOTLOADER_ADDRESS: usize = 0x0000_0000;
/// Application slot.
pub const APPLICATION_ADDRESS: usize = 0x0002_0000;
/// Size of the application slot.
pub const APPLICATION_SIZE_BYTES: usize = 0x000E_0000;
/// Candidate (staging) slot.
pub const CANDIDATE_ADDRESS: usize = 0x0010_0000;
/// Size of the candidate slot.
pub const CANDIDATE_SIZE_BYTES: usize = 0x000E_0000;
/// Config region: the store from its start, the boot-state record in its last sector.
pub const CONFIG_ADDRESS: usize = 0x001E_0000;
/// Size of the config region.
pub const CONFIG_SIZE_BYTES: usize = 0x0001_0000;
/// Erase unit of every region.
pub const SECTOR_SIZE_BYTES: usize = 0x1000;
/// Program unit of every region.
pub const WRITE_ALIGNMENT_BYTES: usize = 4;
/// Value of erased code memory.
pub const ERASED_VALUE: u8 = 0xFF;
/// The store's capacity: the config region minus its last sector.
pub const STORE_CAPACITY_BYTES: usize = CONFIG_SIZE_BYTES - SECTOR_SIZE_BYTES;
/// The boot-state record: the config region's last sector.
pub const BOOT_STATE_ADDRESS: usize = CONFIG_ADDRESS + CONFIG_SIZE_BYTES - SECTOR_SIZE_BYTES;
/// The chip unique ID (12 bytes, written by the fixture before boot; read-only to firmware).
pub const UNIQUE_ID_ADDRESS: usize = 0x003F_F000;
/// Length of the chip unique ID.
pub const UNIQUE_ID_SIZE_BYTES: usize = 12;
/// The RAM mailbox: request at +0, report at +32 (contract section 5); with a device identity
/// also the identity parameters at +256 and the identity response at +352 (section 6).
pub const MAILBOX_ADDRESS: usize = 0x2000_0000;
/// The mailbox size the firmware reserves: the 1024 bytes a profile with a device identity
/// uses (a profile without one uses only the first 256).
pub const MAILBOX_SIZE_BYTES: usize = 0x400;
/// The bootloader-to-application handoff, just above the (1 KiB) mailbox: the identity
/// parameters the station writes at mailbox +256 must survive the bootloader.
pub const HANDOFF_ADDRESS: usize = MAILBOX_ADDRESS + MAILBOX_SIZE_BYTES;

const UART0_ADDRESS: usize = 0x4000_4000;
const UART_DATA: usize = 0x00;
const UART_STATE: usize = 0x04;
const UART_CTRL: usize = 0x08;
const UART_BAUDDIV: usize = 0x10;
const UART_STATE_TX_FULL: u32 = 1;
const UART_CTRL_TX_ENABLE: u32 = 1;
const SCB_VTOR: usize = 0xE000_ED08;

/// Reads `length` bytes of code memory (or RAM) at `address`.
///
/// # Safety
/// The range must be mapped, and must not be written while the slice is alive.
pub unsafe fn memory(address: usize, length: usize) -> &'static [u8] {
    unsafe { core::slice::from_raw_parts(address as *const u8, length) }
}

/// The config store region (the store's capacity, not the boot-state sector).
pub fn store_region() -> &'static [u8] {
    // SAFETY: inside the 4 MiB code memory; only the bootloader writes the config region, and
    // only its last sector (the boot state), which this slice does not cover.
    unsafe { memory(CONFIG_ADDRESS, STORE_CAPACITY_BYTES) }
}

/// The chip unique ID.
pub fn unique_id() -> [u8; UNIQUE_ID_SIZE_BYTES] {
    let mut bytes = [0u8; UNIQUE_ID_SIZE_BYTES];
    for (index, byte) in bytes.iter_mut().enumerate() {
        // SAFETY: a mapped, factory-programmed location; volatile because nothing in this
        // program ever writes it and the compiler must not assume its value.
        *byte = unsafe { ptr::read_volatile((UNIQUE_ID_ADDRESS + index) as *const u8) };
    }
    bytes
}

/// Erases (fills with the erased value) the sectors covering `[address, address + length)`.
/// `address` must be sector-aligned.
pub fn erase(address: usize, length_bytes: usize) {
    let end = address + length_bytes.next_multiple_of(SECTOR_SIZE_BYTES);
    let erased_word = u32::from_ne_bytes([ERASED_VALUE; 4]);
    let mut word_address = address;
    while word_address < end {
        // SAFETY: code memory is RAM on this board; callers pass regions the bootloader owns.
        unsafe { ptr::write_volatile(word_address as *mut u32, erased_word) };
        word_address += 4;
    }
}

/// Programs `data` at `address`, padded with the erased value to the write alignment.
pub fn program(address: usize, data: &[u8]) {
    for (index, chunk) in data.chunks(WRITE_ALIGNMENT_BYTES).enumerate() {
        let mut word = [ERASED_VALUE; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        // SAFETY: as in `erase`.
        unsafe { ptr::write_volatile((address + index * 4) as *mut u32, u32::from_ne_bytes(word)) };
    }
}

/// CMSDK APB UART0: transmit only.
pub struct Uart;

impl Uart {
    /// Enables the transmitter.
    pub fn init() -> Uart {
        // SAFETY: UART0's registers on this board.
        unsafe {
            ptr::write_volatile((UART0_ADDRESS + UART_BAUDDIV) as *mut u32, 16);
            ptr::write_volatile((UART0_ADDRESS + UART_CTRL) as *mut u32, UART_CTRL_TX_ENABLE);
        }
        Uart
    }

    /// Sends bytes, waiting while the transmit buffer is full.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            // SAFETY: UART0's registers on this board.
            unsafe {
                while ptr::read_volatile((UART0_ADDRESS + UART_STATE) as *const u32) & UART_STATE_TX_FULL != 0
                {
                }
                ptr::write_volatile((UART0_ADDRESS + UART_DATA) as *mut u32, u32::from(*byte));
            }
        }
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        self.write_bytes(text.as_bytes());
        Ok(())
    }
}

/// What the bootloader tells the application: at `HANDOFF_ADDRESS`, four little-endian words
/// `magic "IMPH"`, `update status`, `nonce`, `!(update status ^ nonce)`.
///
/// RAM survives the branch to the application (and a system reset, which is why the application
/// clears the magic after reading: a stale handoff must not be reported twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The update client's reason code (contract section 3.3).
    pub update_status: u32,
    /// The nonce of the station's request found at reset (0 when none).
    pub nonce: u32,
}

/// Magic of the handoff record ("IMPH").
pub const HANDOFF_MAGIC: [u8; 4] = *b"IMPH";

impl Handoff {
    /// Writes the record.
    pub fn store(&self) {
        let words = [
            u32::from_le_bytes(HANDOFF_MAGIC),
            self.update_status,
            self.nonce,
            !(self.update_status ^ self.nonce),
        ];
        for (index, word) in words.iter().enumerate() {
            // SAFETY: RAM reserved for the handoff by the linker scripts (below our RAM window).
            unsafe { ptr::write_volatile((HANDOFF_ADDRESS + index * 4) as *mut u32, *word) };
        }
    }

    /// Reads and clears the record; `None` when absent or inconsistent.
    pub fn take() -> Option<Handoff> {
        let mut words = [0u32; 4];
        for (index, word) in words.iter_mut().enumerate() {
            // SAFETY: as in `store`.
            *word = unsafe { ptr::read_volatile((HANDOFF_ADDRESS + index * 4) as *const u32) };
        }
        // SAFETY: as in `store`.
        unsafe { ptr::write_volatile(HANDOFF_ADDRESS as *mut u32, 0) };
        let [magic, update_status, nonce, check] = words;
        (magic == u32::from_le_bytes(HANDOFF_MAGIC) && check == !(update_status ^ nonce))
            .then_some(Handoff { update_status, nonce })
    }
}

/// Starts the image whose vector table is at `vector_table_address`: points VTOR at it, loads
/// its initial stack pointer and branches to its reset handler. Never returns.
pub fn start_image(vector_table_address: usize) -> ! {
    // SAFETY: the caller checked that the slot holds an image (not erased); the first two words
    // of a Cortex-M vector table are the initial MSP and the reset vector (Thumb bit set).
    unsafe {
        let stack_pointer = ptr::read_volatile(vector_table_address as *const u32);
        let reset_vector = ptr::read_volatile((vector_table_address + 4) as *const u32);
        ptr::write_volatile(SCB_VTOR as *mut u32, vector_table_address as u32);
        core::arch::asm!(
            "dsb",
            "isb",
            "msr msp, {stack_pointer}",
            "bx {reset_vector}",
            stack_pointer = in(reg) stack_pointer,
            reset_vector = in(reg) reset_vector,
            options(noreturn),
        )
    }
}

/// Sleeps forever (a device that has nothing more to do, or cannot boot).
pub fn halt() -> ! {
    loop {
        // SAFETY: `wfi` only waits for an interrupt.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime: vector table, reset handler, heap, panic handler.

unsafe extern "Rust" {
    /// Each binary's entry point, called after .data and .bss are set up.
    fn firmware_main() -> !;
}

unsafe extern "C" {
    static mut _sdata: u32;
    static mut _edata: u32;
    static _sidata: u32;
    static mut _sbss: u32;
    static mut _ebss: u32;
}

/// The reset handler: copies .data from code memory, zeroes .bss, runs the binary's main.
///
/// # Safety
/// Only the CPU calls it, at reset (or the bootloader, through the vector table).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn Reset() -> ! {
    // SAFETY: the linker script defines these symbols word-aligned, .data's load image in code
    // memory and .data/.bss in our RAM window; nothing else runs yet.
    unsafe {
        let mut source = &raw const _sidata;
        let mut destination = &raw mut _sdata;
        while destination < &raw mut _edata {
            ptr::write_volatile(destination, ptr::read_volatile(source));
            destination = destination.add(1);
            source = source.add(1);
        }
        let mut destination = &raw mut _sbss;
        while destination < &raw mut _ebss {
            ptr::write_volatile(destination, 0);
            destination = destination.add(1);
        }
        firmware_main()
    }
}

/// Any fault: sleep (the station sees no report and times out).
unsafe extern "C" fn fault_handler() -> ! {
    halt()
}

/// One entry of the vector table after the initial stack pointer.
#[repr(C)]
pub union Vector {
    handler: unsafe extern "C" fn() -> !,
    reserved: usize,
}

/// Reset, NMI, HardFault, MemManage, BusFault, UsageFault, 4 reserved, SVCall, DebugMonitor,
/// reserved, PendSV, SysTick. No peripheral interrupts are used.
#[unsafe(link_section = ".vector_table.exceptions")]
#[used]
pub static EXCEPTIONS: [Vector; 15] = [
    Vector { handler: Reset },
    Vector { handler: fault_handler },
    Vector { handler: fault_handler },
    Vector { handler: fault_handler },
    Vector { handler: fault_handler },
    Vector { handler: fault_handler },
    Vector { reserved: 0 },
    Vector { reserved: 0 },
    Vector { reserved: 0 },
    Vector { reserved: 0 },
    Vector { handler: fault_handler },
    Vector { handler: fault_handler },
    Vector { reserved: 0 },
    Vector { handler: fault_handler },
    Vector { handler: fault_handler },
];

/// Heap for the DER and X.509 decoders (which need `alloc`). A bump allocator: the bootloader
/// verifies one candidate per boot and then leaves, so memory is never reused; freeing or
/// growing the most recent allocation works in place, which covers the decoders' temporary
/// vectors. 3 MiB (of the board's 4 MiB RAM) holds the worst case with room to spare: a
/// manifest filling the candidate slot is copied about once, the stored certificate is at most
/// the store's 60 KiB, and delegated certificates are bounded before parsing
/// (`update_client::DELEGATE_CERTIFICATE_MAX_SIZE_BYTES`).
const HEAP_SIZE_BYTES: usize = 3 * 1024 * 1024;

struct BumpHeap {
    arena: UnsafeCell<[u8; HEAP_SIZE_BYTES]>,
    next: Cell<usize>,
}

// SAFETY: single core, no interrupts use the heap.
unsafe impl Sync for BumpHeap {}

unsafe impl GlobalAlloc for BumpHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.arena.get() as usize;
        let start = (base + self.next.get()).next_multiple_of(layout.align());
        let end = start + layout.size();
        if end > base + HEAP_SIZE_BYTES {
            return ptr::null_mut();
        }
        self.next.set(end - base);
        start as *mut u8
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The most recent allocation grows or shrinks in place; any other is moved.
        let base = self.arena.get() as usize;
        if pointer as usize + layout.size() == base + self.next.get() {
            if pointer as usize + new_size > base + HEAP_SIZE_BYTES {
                return ptr::null_mut();
            }
            self.next.set(pointer as usize + new_size - base);
            return pointer;
        }
        // SAFETY: the caller guarantees a valid layout for `new_size`; the copy stays within
        // both allocations.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new_pointer = self.alloc(new_layout);
            if !new_pointer.is_null() {
                ptr::copy_nonoverlapping(pointer, new_pointer, layout.size().min(new_size));
            }
            new_pointer
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        let base = self.arena.get() as usize;
        if pointer as usize + layout.size() == base + self.next.get() {
            self.next.set(pointer as usize - base);
        }
    }
}

#[global_allocator]
static HEAP: BumpHeap = BumpHeap { arena: UnsafeCell::new([0; HEAP_SIZE_BYTES]), next: Cell::new(0) };

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    halt()
}
