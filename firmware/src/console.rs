//! Console helpers: lowercase hex without an allocator (the report line is written straight
//! to the UART).

use core::fmt::Write;

/// Writes `bytes` as lowercase hex.
pub fn write_hex(out: &mut impl Write, bytes: &[u8]) -> core::fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.write_char(DIGITS[usize::from(byte >> 4)] as char)?;
        out.write_char(DIGITS[usize::from(byte & 0x0F)] as char)?;
    }
    Ok(())
}
