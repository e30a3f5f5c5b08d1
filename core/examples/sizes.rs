//! Prints `size_of` of the core's machines with their default capacities (RAM per session).
//! Run: `cargo run -p accessgate --example sizes`.
use accessgate::{Gate, ProbeSchedule, RetrySchedule, Session};
use core::mem::size_of;

fn main() {
    println!(
        "Gate<8> (default retry capacity)        {:>6} bytes",
        size_of::<Gate<8>>()
    );
    println!(
        "RetrySchedule<8>                        {:>6} bytes",
        size_of::<RetrySchedule<8>>()
    );
    println!(
        "ProbeSchedule                           {:>6} bytes",
        size_of::<ProbeSchedule>()
    );
    println!(
        "Session<8, 4, 1024> (default)           {:>6} bytes",
        size_of::<Session>()
    );
    println!(
        "Session<8, 4, 256> (short tokens)       {:>6} bytes",
        size_of::<Session<8, 4, 256>>()
    );
}
