//! The optional `serde` feature: config types round-trip, a partial config file takes the
//! defaults, and the status a driver reports serialises with its last failure (R13).
#![cfg(feature = "serde")]

use accessgate::{
    Access, Cause, ConfigError, Counters, Duration, FailureDetail, Gate, GateConfig, Generation, Instant,
    LastFailure, SessionConfig, Status, TlsFailure, TransientClass,
};

#[test]
fn gate_config_default_round_trips_through_json() {
    let text = serde_json::to_string(&GateConfig::DEFAULT).unwrap();
    let back: GateConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, GateConfig::DEFAULT);
    // Durations say their unit.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["budget"]["micros"], 120_000_000u64);
    assert_eq!(v["retry"]["spread"]["micros"], 70_000_000u64);
    assert_eq!(v["probe"]["period"]["micros"], 300_000_000u64);
}

#[test]
fn session_config_default_round_trips_through_json() {
    let text = serde_json::to_string(&SessionConfig::DEFAULT).unwrap();
    let back: SessionConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, SessionConfig::DEFAULT);
}

#[test]
fn partial_config_file_takes_the_defaults_for_missing_fields() {
    let c: SessionConfig =
        serde_json::from_str(r#"{"gate":{"budget":{"micros":60000000}},"refresh_skew":{"micros":30000000}}"#)
            .unwrap();
    assert_eq!(c.gate.budget, Duration::from_secs(60));
    assert_eq!(c.refresh_skew, Duration::from_secs(30));
    assert_eq!(c.gate.retry, GateConfig::DEFAULT.retry);
    assert_eq!(c.refresh_timeout, SessionConfig::DEFAULT.refresh_timeout);
}

#[test]
fn malformed_config_is_an_error_and_an_impossible_one_is_refused_by_the_gate() {
    for bad in [
        r#"{"budget":"120s"}"#,
        r#"{"budget":{"micros":-1}}"#,
        r#"{"retry":{"spread":{"micros":1}}}"#,
        "true",
        "",
    ] {
        assert!(serde_json::from_str::<GateConfig>(bad).is_err(), "{bad}");
    }
    // Well-formed but impossible: deserialises, then validation refuses it (never a panic).
    let c: GateConfig = serde_json::from_str(r#"{"budget":{"micros":0}}"#).unwrap();
    assert_eq!(Gate::<8>::new(c, 1).err(), Some(ConfigError::ZeroBudget));
}

#[test]
fn status_serialises_with_its_last_failure() {
    let status = Status {
        access: Access::Granted,
        cause: Some(Cause::ServerGranted),
        signed_in: true,
        generation: Generation(3),
        reverifying_until: Some(Instant::from_secs(130)),
        last_failure: Some(LastFailure {
            class: TransientClass::Tls,
            detail: FailureDetail::Tls(TlsFailure::Expired),
            at: Instant::from_secs(10),
        }),
        ..Status::default()
    };
    let v = serde_json::to_value(status).unwrap();
    assert_eq!(v["access"], "Granted");
    assert_eq!(v["cause"], "ServerGranted");
    assert_eq!(v["signed_in"], true);
    assert_eq!(v["generation"], 3);
    assert_eq!(v["reverifying_until"]["micros"], 130_000_000u64);
    assert_eq!(v["probing"], false);
    assert_eq!(v["last_failure"]["class"], "Tls");
    assert_eq!(v["last_failure"]["detail"]["Tls"], "Expired");
    assert_eq!(v["last_failure"]["at"]["micros"], 10_000_000u64);
}

#[test]
fn counters_serialise_every_field() {
    let mut c = Counters {
        attempts: 5,
        grants: 1,
        ..Counters::default()
    };
    c.transient[TransientClass::ServerError.index()] = 4;
    let v = serde_json::to_value(c).unwrap();
    assert_eq!(v["attempts"], 5);
    assert_eq!(v["grants"], 1);
    assert_eq!(v["transient"][TransientClass::ServerError.index()], 4);
    assert_eq!(v["transient"].as_array().unwrap().len(), TransientClass::COUNT);
}
