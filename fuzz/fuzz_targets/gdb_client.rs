//! Fuzz target: the GDB client (`GdbClient::connect` and the calls the station makes after it)
//! against a server that replies with arbitrary bytes: `qSupported` (packet sizes), stop
//! replies, `qXfer` target descriptions and memory maps (XML, includes), memory and register
//! reads, flash commands.
//!
//! Every reply a server sends is outside input. Whatever it says, the client must answer with
//! an error, never a panic, and never loop without consuming input (the script ends, so every
//! loop must end).
#![no_main]

use imprint::device::gdb::client::{GdbClient, GdbOptions};
use imprint_fuzz::{ScriptedTransport, gdb_server_script};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let script = gdb_server_script(data);
    let options = if data.get(1).is_some_and(|byte| byte & 1 == 1) {
        GdbOptions::qemu()
    } else {
        GdbOptions::default()
    };
    let Ok(mut client) = GdbClient::connect(Box::new(ScriptedTransport::new(script)), options) else {
        return;
    };
    let _ = client.read_chunk_bytes();
    let _ = client.write_chunk_bytes();
    let _ = client.flash_region(0x0800_0000, 0x1000);
    let _ = client.flash_region(u64::MAX - 1, 16);
    if let Some(description) = client.target_description() {
        let _ = description.register_number("pc");
    }
    let mut buffer = vec![0u8; 256];
    let _ = client.read_memory(0x2000_0000, &mut buffer);
    let _ = client.write_memory(0x2000_0000, &buffer[..64]);
    let _ = client.read_registers();
    let _ = client.read_register_u32("pc");
    let _ = client.flash_erase(0x0800_0000, 0x800);
    let _ = client.flash_write(0x0800_0000, &buffer[..32]);
    let _ = client.flash_done();
    let _ = client.take_console_output();
});
