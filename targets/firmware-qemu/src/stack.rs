//! Peak stack use, measured from cortex-m-rt's stack paint.
//!
//! With cortex-m-rt's `paint-stack` feature the reset handler fills everything between
//! `_stack_end` (just above `.bss`/`.uninit`) and `_stack_start` (top of RAM) with
//! `STACK_PAINT_VALUE` before `main`. The deepest the stack ever reached is the lowest
//! word no longer holding the paint.

/// Bytes of stack used so far (high-water mark), and the size of the stack region.
#[allow(unsafe_code)]
pub fn peak_and_size() -> (usize, usize) {
    extern "C" {
        // Linker-script symbols: only their addresses mean anything.
        static _stack_end: u32;
        static _stack_start: u32;
    }
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut addr = bottom;
    while addr < top {
        // SAFETY: [bottom, top) is RAM reserved for the stack by the linker script, aligned
        // to 4; reading a word of it has no side effect. Volatile so the scan is not elided.
        let word = unsafe { core::ptr::read_volatile(addr as *const u32) };
        if word != cortex_m_rt::STACK_PAINT_VALUE {
            break;
        }
        addr += 4;
    }
    (top - addr, top - bottom)
}
