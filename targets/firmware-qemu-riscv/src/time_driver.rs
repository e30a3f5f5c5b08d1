//! embassy-time driver on the RISC-V machine timer (ACLINT MTIMER in QEMU virt's CLINT).
//!
//! `mtime` counts at 10 MHz on virt; embassy-time ticks at 1 MHz (its default `TICK_HZ`), so
//! `now()` is `mtime / 10`. Wake-ups go through [`embassy_time_queue_utils::Queue`] (one entry
//! per task: the earliest instant it waits for, so it never runs out). The machine timer
//! interrupt is armed for the queue's next instant only (`mtimecmp`); no periodic tick.
//!
//! `mtime` and `mtimecmp` are 64-bit registers read and written as two 32-bit halves here
//! (rv32), hence the read loop and the write order below.
//!
//! Why not a crate: no maintained crate implements `embassy-time-driver` for the generic
//! machine timer (chip HALs such as esp-hal bring their own for their timers; riscv-peripheral
//! models the CLINT registers but has no embassy driver). The three registers are all this
//! needs.

use core::cell::RefCell;
use core::task::Waker;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time_driver::Driver as _;
use embassy_time_queue_utils::Queue;
use riscv::interrupt::Interrupt;

/// CLINT base on QEMU virt; hart 0's `mtimecmp` and the shared `mtime`.
const CLINT: usize = 0x0200_0000;
const MTIMECMP0: usize = CLINT + 0x4000;
const MTIME: usize = CLINT + 0xBFF8;
/// virt's timebase-frequency (device tree `/cpus/timebase-frequency`).
pub const MTIME_HZ: u64 = 10_000_000;
const MTIME_PER_TICK: u64 = MTIME_HZ / embassy_time_driver::TICK_HZ;
const _: () = assert!(
    MTIME_HZ.is_multiple_of(embassy_time_driver::TICK_HZ),
    "embassy's tick rate must divide the machine timer's"
);

/// Reads the 64-bit `mtime` from two halves: high, low, high again until the high half is
/// stable (the low half may carry into it between the reads).
#[allow(unsafe_code)]
fn mtime() -> u64 {
    loop {
        // SAFETY: `mtime` on QEMU virt's CLINT; reading it has no side effect.
        let (hi, lo, hi2) = unsafe {
            (
                core::ptr::read_volatile((MTIME + 4) as *const u32),
                core::ptr::read_volatile(MTIME as *const u32),
                core::ptr::read_volatile((MTIME + 4) as *const u32),
            )
        };
        if hi == hi2 {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

/// Sets hart 0's `mtimecmp`. The timer interrupt is pending while `mtime >= mtimecmp`.
/// Writes the high half to all ones first, so that no intermediate value lies in the past
/// (which would fire a spurious interrupt).
#[allow(unsafe_code)]
fn set_mtimecmp(at: u64) {
    // SAFETY: hart 0's `mtimecmp` on QEMU virt's CLINT; only this driver writes it, always
    // inside a critical section.
    unsafe {
        core::ptr::write_volatile((MTIMECMP0 + 4) as *mut u32, u32::MAX);
        core::ptr::write_volatile(MTIMECMP0 as *mut u32, at as u32);
        core::ptr::write_volatile((MTIMECMP0 + 4) as *mut u32, (at >> 32) as u32);
    }
}

struct MtimerDriver {
    queue: Mutex<CriticalSectionRawMutex, RefCell<Queue>>,
}

impl MtimerDriver {
    /// Wakes every expired task and arms the interrupt for the next instant (or disarms it).
    fn rearm(&self, queue: &mut Queue) {
        let next = queue.next_expiration(self.now());
        // `u64::MAX` (nothing scheduled) stays beyond any `mtime`.
        set_mtimecmp(next.saturating_mul(MTIME_PER_TICK));
    }

    fn on_interrupt(&self) {
        self.queue.lock(|q| self.rearm(&mut q.borrow_mut()));
    }
}

impl embassy_time_driver::Driver for MtimerDriver {
    fn now(&self) -> u64 {
        mtime() / MTIME_PER_TICK
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        self.queue.lock(|q| {
            let mut q = q.borrow_mut();
            if q.schedule_wake(at, waker) {
                // The earliest instant may have changed; one already past fires at once.
                self.rearm(&mut q);
            }
        });
    }
}

embassy_time_driver::time_driver_impl!(static TIME: MtimerDriver = MtimerDriver {
    queue: Mutex::new(RefCell::new(Queue::new())),
});

/// Disarms the timer, then enables the machine timer interrupt. Call once, first in `main`.
#[allow(unsafe_code)]
pub fn start() {
    set_mtimecmp(u64::MAX);
    // SAFETY: only the timer interrupt is enabled, and its handler below touches nothing but
    // the queue (under a critical section) and `mtimecmp`.
    unsafe {
        riscv::register::mie::set_mtimer();
        riscv::interrupt::enable();
    }
}

#[riscv_rt::core_interrupt(Interrupt::MachineTimer)]
fn machine_timer() {
    TIME.on_interrupt();
}
