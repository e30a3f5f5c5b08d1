//! embassy-time driver: SysTick for the clock, the executor-integrated timer queue for wake-ups.
//!
//! `systick-timer`'s own embassy driver keeps one slot per distinct `(waker, instant)` pair
//! until that instant passes, and panics when all are taken. The gate schedules many distinct
//! instants (a `with_timeout` per attempt that usually ends early, the session's next deadline
//! after every input, a token-refresh instant an hour away), so slots would leak for as long as
//! those instants lie in the future. Here only its 64-bit clock ([`systick_timer::Timer`]) is
//! used; wake-ups go through [`embassy_time_queue_utils::Queue`], which keeps one entry per
//! task (the earliest instant it waits for) and so can never run out.
//!
//! The queue is checked on every SysTick interrupt (1 kHz): a timer fires at most one tick late.

use core::cell::RefCell;
use core::task::Waker;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time_queue_utils::Queue;

/// MPS2 AN386 runs the core (and so SysTick's processor clock) at 25 MHz.
pub const CORE_HZ: u64 = 25_000_000;
/// One SysTick interrupt per millisecond: the granularity of timer wake-ups.
const SYSTICK_RELOAD: u32 = (CORE_HZ / 1_000) as u32 - 1;

struct Alarms {
    queue: Queue,
    /// When the queue next needs looking at (`u64::MAX`: nothing scheduled).
    next: u64,
}

/// The time driver. One instance, registered with `time_driver_impl!` below.
struct SystickQueueDriver {
    clock: systick_timer::Timer,
    alarms: Mutex<CriticalSectionRawMutex, RefCell<Alarms>>,
}

impl SystickQueueDriver {
    const fn new() -> Self {
        Self {
            clock: systick_timer::Timer::new(embassy_time_driver::TICK_HZ, SYSTICK_RELOAD, CORE_HZ),
            alarms: Mutex::new(RefCell::new(Alarms {
                queue: Queue::new(),
                next: u64::MAX,
            })),
        }
    }

    fn start(&self, syst: &mut cortex_m::peripheral::SYST) {
        self.clock.start(syst);
    }

    /// Call from the SysTick exception handler.
    fn on_systick(&self) {
        self.clock.systick_handler();
        let now = self.clock.now();
        self.alarms.lock(|a| {
            let mut a = a.borrow_mut();
            if now >= a.next {
                // Wakes every expired task and returns the next instant to look at.
                a.next = a.queue.next_expiration(now);
            }
        });
    }
}

impl embassy_time_driver::Driver for SystickQueueDriver {
    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        self.alarms.lock(|a| {
            let mut a = a.borrow_mut();
            if a.queue.schedule_wake(at, waker) {
                // An instant already past is woken here and now.
                a.next = a.queue.next_expiration(self.clock.now());
            }
        });
    }
}

embassy_time_driver::time_driver_impl!(static TIME: SystickQueueDriver = SystickQueueDriver::new());

/// Starts SysTick. Call once, before anything awaits a timer.
pub fn start(syst: &mut cortex_m::peripheral::SYST) {
    TIME.start(syst);
}

#[cortex_m_rt::exception]
fn SysTick() {
    TIME.on_systick();
}
