//! NUCLEO-F767ZI firmware: brings up the on-board Ethernet (LAN8742A PHY, RMII) with
//! embassy-net, then GETs [`config::URL`] every [`config::POLL_PERIOD`] with reqwless over
//! embassy-net's `TcpClient` + `DnsSocket`, logging the status with defmt (RTT).
//!
//! LEDs: LD1 (green, PB0) toggles after every check; LD3 (red, PB14) is lit while the last
//! check failed (transport error, timeout or non-2xx status).
//!
//! This is the plumbing the access gate's embassy adapter will plug into; the gate itself
//! is not wired in yet.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod config;

use defmt::{info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_net::dns::DnsSocket;
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::{Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::gpio::{Level, Output, Speed};
use embassy_stm32::peripherals::{ETH, ETH_SMA};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, eth, peripherals, rng};
use embassy_time::{Instant, Timer};
use reqwless::client::{HttpClient, TlsConfig, TlsVerify};
use reqwless::request::{Method, RequestBuilder};
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<peripherals::RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// One connection at a time; TCP buffers sized for a TLS record's worth of flight.
const TCP_SOCKETS: usize = 1;
const TCP_TX: usize = 4096;
const TCP_RX: usize = 4096;
type Tcp = TcpClient<'static, TCP_SOCKETS, TCP_TX, TCP_RX>;

/// A full TLS 1.3 record (16 KiB plaintext + overhead) must fit in the read buffer.
const TLS_READ: usize = 16_640;
const TLS_WRITE: usize = 4096;
/// Holds all response headers and the body.
const RESPONSE_BUF: usize = 2048;

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

fn clocks() -> embassy_stm32::Config {
    use embassy_stm32::rcc::*;
    let mut config = embassy_stm32::Config::default();
    // 8 MHz HSE from the ST-LINK's MCO (bypass) -> 216 MHz SYSCLK, 48 MHz for the RNG.
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL216,
        divp: Some(PllPDiv::DIV2), // 8 / 4 * 216 / 2 = 216 MHz
        divq: Some(PllQDiv::DIV9), // 8 / 4 * 216 / 9 = 48 MHz
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config.rcc.mux.clk48sel = mux::Clk48sel::PLL1_Q;
    config
}

fn net_config() -> embassy_net::Config {
    match &config::STATIC_IPV4 {
        None => embassy_net::Config::dhcpv4(Default::default()),
        Some(ip) => {
            let [a, b, c, d] = ip.address.0;
            let mut dns_servers = heapless::Vec::new();
            let [e, f, g, h] = ip.dns;
            let _ = dns_servers.push(Ipv4Address::new(e, f, g, h));
            let [i, j, k, l] = ip.gateway;
            embassy_net::Config::ipv4_static(StaticConfigV4 {
                address: Ipv4Cidr::new(Ipv4Address::new(a, b, c, d), ip.address.1),
                gateway: Some(Ipv4Address::new(i, j, k, l)),
                dns_servers,
            })
        }
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let p = embassy_stm32::init(clocks());
    info!("accessgate nucleo firmware, polling {}", config::URL);

    let mut green = Output::new(p.PB0, Level::Low, Speed::Low);
    let mut red = Output::new(p.PB14, Level::Low, Speed::Low);

    let mut rng = Rng::new(p.RNG, Irqs);
    let net_seed = rng.next_u64();
    let tls_seed = rng.next_u64();

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    // NUCLEO-F767ZI RMII pins (UM1974): REF_CLK PA1, CRS_DV PA7, RXD0 PC4, RXD1 PC5,
    // TXD0 PG13, TXD1 PB13, TX_EN PG11; MDIO PA2, MDC PC1.
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::<4, 4>::new()),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        config::MAC_ADDR,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );

    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        net_config(),
        RESOURCES.init(StackResources::new()),
        net_seed,
    );
    spawner.spawn(unwrap!(net_task(runner)));

    info!("waiting for the network configuration");
    stack.wait_config_up().await;
    if let Some(v4) = stack.config_v4() {
        info!("network up: {}", v4.address);
    }

    static TCP_STATE: StaticCell<TcpClientState<TCP_SOCKETS, TCP_TX, TCP_RX>> = StaticCell::new();
    static TLS_READ_BUF: StaticCell<[u8; TLS_READ]> = StaticCell::new();
    static TLS_WRITE_BUF: StaticCell<[u8; TLS_WRITE]> = StaticCell::new();
    static RESPONSE: StaticCell<[u8; RESPONSE_BUF]> = StaticCell::new();
    let tcp = TcpClient::new(stack, TCP_STATE.init(TcpClientState::new()));
    let dns = DnsSocket::new(stack);
    let verify = match config::TLS_CA_DER {
        Some(ca) => TlsVerify::Certificate {
            ca,
            cert: None,
            key: None,
        },
        None => {
            warn!("TLS_CA_DER is None: server certificates are NOT verified");
            TlsVerify::None
        }
    };
    let tls = TlsConfig::new(
        tls_seed,
        TLS_READ_BUF.init([0; TLS_READ]),
        TLS_WRITE_BUF.init([0; TLS_WRITE]),
        verify,
    );
    let mut client = HttpClient::new_with_tls(&tcp, &dns, tls);
    let response = RESPONSE.init([0; RESPONSE_BUF]);

    loop {
        let started = Instant::now();
        let ok = match embassy_time::with_timeout(config::REQUEST_TIMEOUT, check(&mut client, response)).await
        {
            Ok(Ok(status)) => {
                info!("GET -> {} in {} ms", status, started.elapsed().as_millis());
                (200..300).contains(&status)
            }
            Ok(Err(e)) => {
                warn!("GET failed: {}", e);
                false
            }
            Err(_) => {
                warn!("GET timed out after {} ms", config::REQUEST_TIMEOUT.as_millis());
                false
            }
        };
        green.toggle();
        red.set_level(if ok { Level::Low } else { Level::High });
        Timer::at(started + config::POLL_PERIOD).await;
    }
}

/// One GET of the configured URL; returns the status after reading the whole body.
async fn check(
    client: &mut HttpClient<'_, Tcp, DnsSocket<'static>>,
    rx: &mut [u8],
) -> Result<u16, reqwless::Error> {
    static HEADERS: [(&str, &str); 1] = [("Authorization", config::AUTHORIZATION)];
    let mut request = client.request(Method::GET, config::URL).await?.headers(&HEADERS);
    let response = request.send(rx).await?;
    let status = response.status.0;
    let body = response.body().read_to_end().await?;
    info!("body: {=[u8]:a}", body);
    Ok(status)
}
