//! QEMU (mps2-an386, Cortex-M4F) firmware proving the embedded plumbing the gate will use:
//! embassy executor + embassy-time on SysTick, reqwless over an in-memory TCP stack
//! ([`net::MemNet`]) whose server end is a scripted HTTP responder ([`responder`]).
//!
//! The client task walks [`SCRIPT`]: for every step it makes one GET bounded by
//! [`REQUEST_TIMEOUT`] and checks the outcome against what the step implies. The run ends
//! with the semihosting exit code: 0 when every step matched, 1 otherwise (also on panic).

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod net;
mod responder;
mod stack;

use core::net::{IpAddr, Ipv4Addr};

use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use cortex_m_semihosting::hprintln;
use embassy_executor::Spawner;
use embassy_time::{Duration, Instant};
use panic_semihosting as _;
use reqwless::client::HttpClient;
use reqwless::request::{Method, RequestBuilder};
use systick_timer::SystickDriver;

use net::{FixedDns, MemNet};
use responder::{Step, StepScript};

/// MPS2 AN386 runs the core (and so SysTick's processor clock) at 25 MHz.
const CORE_HZ: u64 = 25_000_000;
/// One SysTick interrupt per millisecond: the granularity of timer wake-ups.
const SYSTICK_RELOAD: u32 = (CORE_HZ / 1_000) as u32 - 1;

// Wake-up slots: each `with_timeout` that finishes early leaves its slot taken until the
// deadline passes (systick-timer panics when all are taken), so keep headroom over the
// number of requests issued within one REQUEST_TIMEOUT.
embassy_time_driver::time_driver_impl!(static TIME: SystickDriver<16> = SystickDriver::new(CORE_HZ, SYSTICK_RELOAD));

#[cortex_m_rt::exception]
fn SysTick() {
    TIME.systick_interrupt();
}

const URL: &str = "http://backend.local/api/code/invites/check-access/";
const PATH: &str = "/api/code/invites/check-access/";
const AUTHORIZATION: &str = "Bearer demo-token";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Where `FixedDns` sends every name; only shows up in `Incoming::local_addr`.
const BACKEND_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));

/// One step per connection the client makes, in order.
static SCRIPT: &[Step] = &[
    Step::Respond(200, r#"{"access":"granted"}"#),
    Step::Respond(503, ""),
    Step::Refuse,
    Step::Respond(401, ""),
    Step::Hang,
    Step::Respond(200, r#"{"access":"denied"}"#),
];

/// 2 links of 512 bytes per direction: one live connection plus one being torn down.
type Net = MemNet<512, 2>;
static NET: Net = Net::new();

#[embassy_executor::task]
async fn responder_task() -> ! {
    let mut script = StepScript::new(SCRIPT)
        .expect_path(PATH)
        .expect_authorization(AUTHORIZATION);
    responder::serve(&NET, &mut script).await
}

/// What one GET came to.
#[derive(Debug)]
enum Outcome<'a> {
    Response(u16, &'a [u8]),
    Refused,
    TimedOut,
    Failed(reqwless::Error),
}

impl<'a> Outcome<'a> {
    fn body_text(&self) -> &'a str {
        match self {
            Outcome::Response(_, body) => core::str::from_utf8(body).unwrap_or("<non-utf8>"),
            _ => "",
        }
    }

    fn name(&self) -> heapless::String<48> {
        use core::fmt::Write as _;
        let mut s = heapless::String::new();
        // Truncation of a long error name is harmless in a log line.
        let _ = match self {
            Outcome::Response(status, _) => write!(s, "{status}"),
            Outcome::Refused => write!(s, "refused"),
            Outcome::TimedOut => write!(s, "timeout"),
            Outcome::Failed(e) => write!(s, "error {e:?}"),
        };
        s
    }

    fn matches(&self, step: &Step) -> bool {
        match (self, step) {
            (Outcome::Response(got, body), Step::Respond(want, want_body)) => {
                got == want && *body == want_body.as_bytes()
            }
            (Outcome::Refused, Step::Refuse) | (Outcome::TimedOut, Step::Hang) => true,
            _ => false,
        }
    }
}

async fn get<'b>(
    client: &mut HttpClient<'_, Net, FixedDns>,
    rx_buf: &'b mut [u8],
) -> Result<(u16, &'b [u8]), reqwless::Error> {
    static HEADERS: [(&str, &str); 1] = [("Authorization", AUTHORIZATION)];
    let mut request = client.request(Method::GET, URL).await?.headers(&HEADERS);
    let response = request.send(rx_buf).await?;
    let status = response.status.0;
    let body = response.body().read_to_end().await?;
    Ok((status, body))
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let mut core = cortex_m::Peripherals::take().expect("core peripherals taken once");
    TIME.start(&mut core.SYST);
    spawner.spawn(responder_task().expect("responder task spawned once"));

    let dns = FixedDns(BACKEND_ADDR);
    let mut client = HttpClient::new(&NET, &dns);
    // Holds the whole response: headers and body.
    let mut rx_buf = [0u8; 1024];
    let started = Instant::now();
    let mut mismatches = 0u32;

    for (i, step) in SCRIPT.iter().enumerate() {
        let t0 = Instant::now();
        let outcome = match embassy_time::with_timeout(REQUEST_TIMEOUT, get(&mut client, &mut rx_buf)).await {
            Err(_) => Outcome::TimedOut,
            Ok(Ok((status, body))) => Outcome::Response(status, body),
            Ok(Err(reqwless::Error::Network(embedded_io_async::ErrorKind::ConnectionRefused))) => {
                Outcome::Refused
            }
            Ok(Err(e)) => Outcome::Failed(e),
        };
        let took = t0.elapsed();
        let mut ok = outcome.matches(step);
        // A hang must cost the full timeout, no more than a tick or two beyond it.
        if *step == Step::Hang
            && !(REQUEST_TIMEOUT..REQUEST_TIMEOUT + Duration::from_millis(100)).contains(&took)
        {
            ok = false;
        }
        hprintln!(
            "step {}: script {:?} -> got {} {} in {} ms: {}",
            i,
            step,
            outcome.name(),
            outcome.body_text(),
            took.as_millis(),
            if ok { "ok" } else { "MISMATCH" }
        );
        if !ok {
            mismatches += 1;
        }
    }

    let (peak, size) = stack::peak_and_size();
    hprintln!("stack: peak {} of {} bytes", peak, size);
    hprintln!(
        "{} steps, {} mismatches, {} ms",
        SCRIPT.len(),
        mismatches,
        started.elapsed().as_millis()
    );
    debug::exit(if mismatches == 0 {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    });
}
