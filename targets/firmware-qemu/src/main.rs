//! QEMU (mps2-an386, Cortex-M4F) firmware running the real gate: the embassy adapter's
//! [`Driver`] (accessgate core + reqwless, plain HTTP) over an in-memory TCP stack
//! ([`net::MemNet`]) whose server end is a scripted backend ([`backend`], served by
//! [`responder`]). A scenario task ([`scenario`]) drives the gate through its [`Link`] and
//! asserts each state: grant, an outage shorter than the budget (access held), one longer
//! (fail closed at the deadline), recovery by probing, revocation, and a 401.
//!
//! Tasks on one thread-mode executor, all futures in static task storage:
//! - `driver_task`: `Driver::run()` (session loop + check lane + refresh lane);
//! - `responder_task`: the backend;
//! - `scenario_task`: the chapters; exits through semihosting, 0 only when all held;
//! - `watchdog_task`: exits non-zero if the scenario has not finished after [`WATCHDOG`].
//!
//! Timings are scaled down (200 ms per attempt, 1 s budget...) so the run takes seconds.
//! Stack use is measured by painting (see [`stack`]) and reported per task at the end.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod backend;
mod net;
mod responder;
mod scenario;
mod stack;
mod time_driver;

use core::net::{IpAddr, Ipv4Addr};
use core::pin::pin;

use accessgate::{Duration, Probing, Retries, SessionConfig};
use accessgate_embassy::{Driver, DriverConfig, Link, PlainCheckStorage, Seeds, Transport};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use cortex_m_semihosting::hprintln;
use embassy_executor::Spawner;
use panic_semihosting as _;
use static_cell::StaticCell;

use backend::{Backend, BackendScript};
use net::{FixedDns, MemNet};
use stack::TaskStack;

/// The link's mutex: tasks share it from one executor, but a `static` needs `Sync`.
pub type Mutex = embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
/// The app side of the gate (default token capacity: 1 KiB).
pub type GateLink = Link<'static, Mutex>;
/// 4 links of 512 bytes per direction: one live connection, others closing.
type Net = MemNet<512, 4>;
type GateDriver = Driver<'static, Mutex, Net, FixedDns>;

const URL: &str = "http://backend.local/api/code/invites/check-access/";
const PATH: &str = "/api/code/invites/check-access/";
const AUTHORIZATION: &str = "Bearer demo-access-token";
/// Where `FixedDns` sends every name; only shows up in `Incoming::local_addr`.
const BACKEND_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));

/// Fail-closed budget (default 120 s, scaled down).
pub const BUDGET: Duration = Duration::from_secs(1);
/// Token lifetime: long enough that no refresh falls due during the run.
pub const HOUR: Duration = Duration::from_secs(3600);
/// Least unused stack a passing run must leave.
const STACK_HEADROOM: usize = 4096;
/// The whole scenario must end within this much embassy time.
const WATCHDOG: embassy_time::Duration = embassy_time::Duration::from_secs(20);

/// behaviour.md's defaults, scaled down so a run takes a few seconds.
const fn session_config() -> SessionConfig {
    let mut s = SessionConfig::DEFAULT;
    s.gate.attempt_timeout = Duration::from_millis(200);
    s.gate.budget = BUDGET;
    s.gate.retry = Retries {
        spread: Duration::from_millis(500),
        final_window: Duration::from_millis(200),
    };
    s.gate.probe = Probing {
        period: Duration::from_millis(500),
        ramp: Duration::from_millis(200),
        ramp_probes: 1,
    };
    s.gate.min_recheck_interval = Duration::from_millis(100);
    s
}

static NET: Net = Net::new();
static DNS: FixedDns = FixedDns(BACKEND_ADDR);
static LINK: GateLink = Link::new();
static BACKEND: Backend = Backend::new(PATH, AUTHORIZATION);
static CHECK_BUFFERS: StaticCell<PlainCheckStorage> = StaticCell::new();

static DRIVER_STACK: TaskStack = TaskStack::new();
static RESPONDER_STACK: TaskStack = TaskStack::new();
static SCENARIO_STACK: TaskStack = TaskStack::new();

#[embassy_executor::task]
async fn driver_task(driver: GateDriver) -> ! {
    stack::measured(&DRIVER_STACK, pin!(driver.run())).await
}

#[embassy_executor::task]
async fn responder_task() -> ! {
    let mut script = BackendScript(&BACKEND);
    let serve = pin!(responder::serve(&NET, &mut script));
    stack::measured(&RESPONDER_STACK, serve).await
}

#[embassy_executor::task]
async fn scenario_task() {
    let started = embassy_time::Instant::now();
    let result = stack::measured(&SCENARIO_STACK, pin!(scenario::run(&LINK, &BACKEND))).await;
    let took = started.elapsed().as_millis();
    let (peak, size) = stack::overall();
    hprintln!("stack: peak {} of {} bytes overall (all tasks share the one stack)", peak, size);
    for (name, stats) in [
        ("driver", &DRIVER_STACK),
        ("responder", &RESPONDER_STACK),
        ("scenario", &SCENARIO_STACK),
    ] {
        hprintln!("stack: {} task peak {} bytes (from the top, executor frames included)", name, stats.peak());
    }
    // The stack grows down towards .bss: a peak this close to its end may already have
    // overwritten statics.
    let result = result.and_then(|()| {
        if peak + STACK_HEADROOM > size {
            Err(scenario::Fail::new(format_args!(
                "stack peak {peak} B leaves less than {STACK_HEADROOM} B of the {size} B stack"
            )))
        } else {
            Ok(())
        }
    });
    match result {
        Ok(()) => {
            hprintln!("PASS: all 6 chapters held, {} ms of embassy time", took);
            debug::exit(EXIT_SUCCESS);
        }
        Err(fail) => {
            fail.print();
            hprintln!("(after {} ms of embassy time)", took);
            debug::exit(EXIT_FAILURE);
        }
    }
}

#[embassy_executor::task]
async fn watchdog_task() {
    embassy_time::Timer::after(WATCHDOG).await;
    hprintln!("FAIL: watchdog: the scenario did not finish within {} s", WATCHDOG.as_secs());
    debug::exit(EXIT_FAILURE);
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let mut core = cortex_m::Peripherals::take().expect("core peripherals taken once");
    time_driver::start(&mut core.SYST);
    hprintln!(
        "accessgate on QEMU mps2-an386: attempt timeout {} ms, budget {} ms, retries over {} ms + final {} ms, probes every {} ms after {} in {} ms",
        session_config().gate.attempt_timeout.as_millis(),
        BUDGET.as_millis(),
        session_config().gate.retry.spread.as_millis(),
        session_config().gate.retry.final_window.as_millis(),
        session_config().gate.probe.period.as_millis(),
        session_config().gate.probe.ramp_probes,
        session_config().gate.probe.ramp.as_millis(),
    );

    let config = DriverConfig {
        session: session_config(),
        check_url: URL,
        transport: Transport::PlainHttp,
        refresh: None,
    };
    // A fixed seed: a reproducible run. A device draws it from a hardware RNG (R6). The
    // adapter is built without its `tls` feature, so there is no TLS seed (and no TLS code).
    let seeds = Seeds {
        jitter: 0x5eed_ac55_6a7e,
    };
    let buffers = CHECK_BUFFERS.init(PlainCheckStorage::new()).buffers();
    let driver = match GateDriver::new(&LINK, &NET, &DNS, config, buffers, None, seeds) {
        Ok(d) => d,
        Err(e) => {
            hprintln!("FAIL: driver configuration: {}", e);
            debug::exit(EXIT_FAILURE);
            return;
        }
    };
    hprintln!(
        "sizes: driver {} B, link {} B, check buffers {} B (the driver task's storage: see FIGURES.md)",
        core::mem::size_of::<GateDriver>(),
        core::mem::size_of::<GateLink>(),
        core::mem::size_of::<PlainCheckStorage>(),
    );
    spawner.spawn(responder_task().expect("responder task spawned once"));
    spawner.spawn(driver_task(driver).expect("driver task spawned once"));
    spawner.spawn(watchdog_task().expect("watchdog task spawned once"));
    spawner.spawn(scenario_task().expect("scenario task spawned once"));
}
