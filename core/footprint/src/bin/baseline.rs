//! The same skeleton as `with_core`, without the gate: the reference for the difference.
#![no_std]
#![no_main]

use core::hint::black_box;
use cortex_m_rt::entry;
use panic_halt as _;

#[entry]
fn main() -> ! {
    let mut x: u64 = 0;
    loop {
        x = black_box(x.wrapping_add(black_box(1)));
    }
}
