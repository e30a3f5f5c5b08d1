//! QEMU (mps2-an386, Cortex-M4F) firmware running the real gate: the embassy adapter's
//! `Driver` (accessgate core + reqwless, plain HTTP) over an in-memory TCP stack whose
//! server end is a scripted backend, driven through its `Link` by a scenario that asserts
//! each state: grant, an outage shorter than the budget (access held), one longer (fail
//! closed at the deadline), recovery by probing, revocation, and a 401.
//!
//! All of that is shared with the RISC-V image (`targets/firmware-qemu-riscv`) in
//! `accessgate-firmware-scenario` (`targets/firmware-scenario`). This crate is the board:
//! semihosting for the console and the exit code (with `--features defmt`, the console and
//! the gate's log are defmt frames on semihosting's stdout), cortex-m-rt's stack (painted at reset,
//! `paint-stack`), and a SysTick time driver ([`time_driver`]).

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod time_driver;

use accessgate_firmware_scenario::{app, set_board, Board};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use embassy_executor::Spawner;
use panic_semihosting as _;
// The defmt image: the global logger (frames on semihosting's stdout).
#[cfg(feature = "defmt")]
use defmt_semihosting as _;

#[cfg(not(feature = "defmt"))]
fn print_line(args: core::fmt::Arguments<'_>) {
    cortex_m_semihosting::hprintln!("{}", args);
}

/// `defmt::panic!` and friends (in embassy, the adapter) end like any panic: panic-semihosting
/// prints it and QEMU exits failed.
#[cfg(feature = "defmt")]
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    core::panic!("defmt panic")
}

/// The defmt image: the scenario's lines are defmt frames too, since text written to the same
/// stdout would break the frame stream. Formatted on the device (`Display2Format`): they are
/// the scenario's, not the gate's.
#[cfg(feature = "defmt")]
fn print_line(args: core::fmt::Arguments<'_>) {
    defmt::println!("{}", defmt::Display2Format(&args));
}

fn exit(passed: bool) -> ! {
    debug::exit(if passed { EXIT_SUCCESS } else { EXIT_FAILURE });
    // Only reached if semihosting is off (QEMU without `-semihosting-config`).
    loop {
        cortex_m::asm::wfi();
    }
}

/// cortex-m-rt's stack: from the end of the statics (`_stack_end`) to the top of RAM.
#[allow(unsafe_code)]
fn stack_region() -> (usize, usize) {
    extern "C" {
        // Linker-script symbols: only their addresses mean anything.
        static _stack_end: u32;
        static _stack_start: u32;
    }
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    (bottom, top)
}

fn stack_pointer() -> usize {
    cortex_m::register::msp::read() as usize
}

static BOARD: Board = Board {
    name: "QEMU mps2-an386 (Cortex-M4F)",
    print_line,
    exit,
    stack_region,
    stack_pointer,
    stack_paint: cortex_m_rt::STACK_PAINT_VALUE,
};

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    set_board(&BOARD);
    let mut core = cortex_m::Peripherals::take().expect("core peripherals taken once");
    time_driver::start(&mut core.SYST);
    app::start(spawner);
}
