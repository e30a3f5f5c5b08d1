//! QEMU virt's devices the image uses: the NS16550A UART (console) and the SiFive test
//! finisher (exit code), plus riscv-rt's stack region.
//!
//! Both devices are memory-mapped; each access is one volatile load or store to a fixed
//! address QEMU's `virt` machine documents (hw/riscv/virt.c), hence the `unsafe` blocks.

/// NS16550A UART0: transmit holding register at +0, line status register at +5.
const UART0: usize = 0x1000_0000;
const UART_THR: usize = UART0;
const UART_LSR: usize = UART0 + 5;
/// LSR bit 5: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;

/// SiFive test finisher: a 32-bit store ends QEMU. `0x5555` exits with status 0;
/// `(code << 16) | 0x3333` exits with status `code`.
const TEST_FINISHER: usize = 0x0010_0000;
const FINISHER_PASS: u32 = 0x5555;
const FINISHER_FAIL: u32 = 0x3333;

/// Writes bytes to the UART, waiting for room before each.
#[allow(unsafe_code)]
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: UART0's registers on QEMU virt; LSR reads have no side effect, a THR write
        // sends one byte. Only this image touches the UART, one hart, and every write happens
        // inside a critical section (`Uart::write_str` callers hold one), so bytes of two
        // lines do not interleave.
        unsafe {
            while core::ptr::read_volatile(UART_LSR as *const u8) & LSR_THR_EMPTY == 0 {}
            core::ptr::write_volatile(UART_THR as *mut u8, b);
        }
    }
}

/// `core::fmt` onto the UART.
pub struct Uart;

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Prints one line; interrupts are off while it is written, so a line is never split.
pub fn print_line(args: core::fmt::Arguments<'_>) {
    use core::fmt::Write as _;
    critical_section::with(|_| {
        let _ = Uart.write_fmt(args);
        write_bytes(b"\n");
    });
}

/// Ends QEMU: exit status 0 when `passed`, 1 otherwise.
#[allow(unsafe_code)]
pub fn exit(passed: bool) -> ! {
    let word = if passed {
        FINISHER_PASS
    } else {
        (1 << 16) | FINISHER_FAIL
    };
    // SAFETY: the test finisher's one register on QEMU virt; the store stops the machine.
    unsafe { core::ptr::write_volatile(TEST_FINISHER as *mut u32, word) };
    // Not reached under QEMU; on anything else, stop here.
    loop {
        riscv::asm::wfi();
    }
}

/// riscv-rt's stack (one hart): from the end of the heap region (`__estack`, just above the
/// statics: this image has no heap) to `_stack_start`, the top of RAM.
#[allow(unsafe_code)]
pub fn stack_region() -> (usize, usize) {
    extern "C" {
        // Linker-script symbols: only their addresses mean anything.
        static __estack: u32;
        static _stack_start: u32;
    }
    let bottom = core::ptr::addr_of!(__estack) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    ((bottom + 3) & !3, top & !3)
}

/// The stack pointer register.
#[allow(unsafe_code)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: copies `sp` into a register; no memory access, no side effect.
    unsafe { core::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// The word unused stack is painted with (the same as cortex-m-rt's on the ARM image).
pub const STACK_PAINT: u32 = 0xCCCC_CCCC;
