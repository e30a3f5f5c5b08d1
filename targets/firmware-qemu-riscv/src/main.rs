//! QEMU virt (RV32IMC) firmware running the real gate, the RISC-V twin of
//! `targets/firmware-qemu`: the embassy adapter's `Driver` (accessgate core + reqwless, plain
//! HTTP) over the in-memory TCP stack and scripted backend, driven by the same scenario
//! (grant, short outage held, fail closed at the deadline, recovery, revocation, 401) from
//! `accessgate-firmware-scenario`.
//!
//! This crate is the board: the UART for the console, the SiFive test finisher for the exit
//! code, riscv-rt's stack (painted at the top of `main`) ([`board`]), and an embassy time driver
//! on the machine timer ([`time_driver`]).

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod board;
mod time_driver;

use accessgate_firmware_scenario::{app, set_board, stack, Board};
use embassy_executor::Spawner;

static BOARD: Board = Board {
    name: "QEMU virt (RV32IMC)",
    print_line: board::print_line,
    exit: board::exit,
    stack_region: board::stack_region,
    stack_pointer: board::stack_pointer,
    stack_paint: board::STACK_PAINT,
};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    board::print_line(format_args!("FAIL: panic: {}", info));
    board::exit(false)
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    set_board(&BOARD);
    stack::paint_unused();
    time_driver::start();
    app::start(spawner);
}
