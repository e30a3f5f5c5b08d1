//! Stack use, measured from cortex-m-rt's stack paint, overall and per embassy task.
//!
//! With cortex-m-rt's `paint-stack` feature the reset handler fills everything between
//! `_stack_end` (just above `.bss`/`.uninit`) and `_stack_start` (top of RAM) with
//! `STACK_PAINT_VALUE` before `main`. The deepest the stack ever reached is the lowest word
//! no longer holding the paint.
//!
//! Every embassy task runs on this one stack (its future lives in static task storage; only
//! the frames of a `poll` are on the stack). To tell tasks apart, each task body is wrapped
//! in [`measured`]: before every poll of the wrapped future it paints the dead part of the
//! stack again, after it it finds the lowest dirty word and charges that depth to the task.
//! Exception handlers (SysTick) run on the same stack and are charged to the task they
//! interrupted; they are small.

use core::cell::Cell;
use core::future::{poll_fn, Future};
use core::pin::Pin;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;

/// Bytes left unpainted just below the stack pointer of [`repaint_below_sp`] itself.
const REPAINT_MARGIN: usize = 64;

/// The stack region: `[bottom, top)`.
#[allow(unsafe_code)]
fn bounds() -> (usize, usize) {
    extern "C" {
        // Linker-script symbols: only their addresses mean anything.
        static _stack_end: u32;
        static _stack_start: u32;
    }
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    (bottom, top)
}

/// The lowest address of the stack region that no longer holds the paint (`top` if none).
#[allow(unsafe_code)]
fn low_water() -> usize {
    let (bottom, top) = bounds();
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
    addr
}

/// Paints `[from, SP - REPAINT_MARGIN)` again. Everything below the stack pointer is dead:
/// an exception taken meanwhile pushes its frames there and pops them before this code
/// resumes, so at worst part of its use goes unmeasured.
#[allow(unsafe_code)]
#[inline(never)]
fn repaint_below_sp(from: usize) {
    let sp = cortex_m::register::msp::read() as usize;
    let end = sp.saturating_sub(REPAINT_MARGIN) & !3;
    let mut addr = from & !3;
    while addr < end {
        // SAFETY: `addr` lies in the stack region (from >= _stack_end) below this function's
        // frame: no live data is there (see above). Volatile: the stores must happen.
        unsafe { core::ptr::write_volatile(addr as *mut u32, cortex_m_rt::STACK_PAINT_VALUE) };
        addr += 4;
    }
}

/// Lowest dirty address ever seen (the overall high-water mark of the stack).
static DEEPEST: Mutex<CriticalSectionRawMutex, Cell<usize>> = Mutex::new(Cell::new(usize::MAX));

/// Finds the lowest dirty address and folds it into [`DEEPEST`].
fn scan() -> usize {
    let low = low_water();
    DEEPEST.lock(|d| d.set(d.get().min(low)));
    low
}

/// Peak stack depth reached while one task was being polled.
pub struct TaskStack {
    peak: Mutex<CriticalSectionRawMutex, Cell<usize>>,
}

impl TaskStack {
    pub const fn new() -> Self {
        Self {
            peak: Mutex::new(Cell::new(0)),
        }
    }

    /// Bytes from the top of the stack to the deepest word any poll of the task dirtied.
    /// Includes the frames above the task (`main`, the executor's loop: a few hundred bytes)
    /// and the task's own `TaskStorage::poll` frame (the inlined state machine).
    pub fn peak(&self) -> usize {
        self.peak.lock(|p| p.get())
    }
}

/// Runs `fut`, recording in `stats` how deep the stack goes while it is polled.
///
/// Before each poll, every dirty word below the current stack pointer is painted again, so
/// what the poll leaves dirty is its own (plus any exception taken meanwhile).
///
/// Takes the future pinned by the caller: an `async fn` keeps its arguments apart from its
/// locals, so taking `F` by value and pinning it here would store the future twice.
pub async fn measured<F: Future>(stats: &TaskStack, mut fut: Pin<&mut F>) -> F::Output {
    let (_, top) = bounds();
    poll_fn(|cx| {
        repaint_below_sp(scan());
        let r = fut.as_mut().poll(cx);
        let depth = top - scan();
        stats.peak.lock(|p| p.set(p.get().max(depth)));
        r
    })
    .await
}

/// `(peak bytes used overall, size of the stack region)`.
pub fn overall() -> (usize, usize) {
    let deepest = scan().min(DEEPEST.lock(|d| d.get()));
    let (bottom, top) = bounds();
    (top - deepest, top - bottom)
}
