//! Tests of the shared rendering (`report`): the `check` command's verdict and exit code and the
//! one-line JSON every front end prints (R13: what an operator reads), named after the behaviour
//! they pin.

use accessgate::*;

fn status(access: Access, cause: Option<Cause>, signed_in: bool) -> Status {
    Status {
        access,
        cause,
        signed_in,
        ..Status::default()
    }
}

#[test]
fn the_verdict_follows_access_and_cause_and_is_none_while_undecided() {
    use Access::*;
    let cases = [
        (
            status(Granted, Some(Cause::ServerGranted), true),
            Some(Verdict::Granted),
        ),
        (
            status(Granted, Some(Cause::Recovered), true),
            Some(Verdict::Granted),
        ),
        (
            status(Denied, Some(Cause::ServerDenied), true),
            Some(Verdict::Denied),
        ),
        // R5: failing closed is its own verdict, not a denial by the server.
        (
            status(Denied, Some(Cause::FailedClosed), true),
            Some(Verdict::FailedClosed),
        ),
        // R8: a 401 ended the session.
        (
            status(Unknown, Some(Cause::Unauthorized), false),
            Some(Verdict::Unauthorized),
        ),
        // Undecided: still checking, a logout, or a 401 cause while a new session runs.
        (status(Unknown, None, true), None),
        (status(Unknown, Some(Cause::LoggedOut), false), None),
        (status(Unknown, Some(Cause::Unauthorized), true), None),
    ];
    for (st, want) in cases {
        assert_eq!(Verdict::of(&st), want, "{st:?}");
    }
}

#[test]
fn each_verdict_has_its_exit_code_and_name() {
    let all = [
        (Verdict::Granted, 0, "granted"),
        (Verdict::Denied, 1, "denied"),
        (Verdict::FailedClosed, 2, "failed_closed"),
        (Verdict::Unauthorized, 3, "unauthorized"),
    ];
    for (v, code, name) in all {
        assert_eq!((v.exit_code(), v.name()), (code, name), "{v:?}");
    }
    assert_eq!(access_name(Access::Unknown), "unknown");
    assert_eq!(access_name(Access::Granted), "granted");
    assert_eq!(access_name(Access::Denied), "denied");
}

fn json(e: SessionEvent) -> String {
    let mut s = String::new();
    write_event_json(&mut s, &e, Instant::from_millis(2_500), Instant::from_millis(500)).unwrap();
    s
}

#[test]
fn every_event_is_one_line_of_json_with_its_fields() {
    let g = Generation(3);
    let at = |ms| Some(Instant::from_millis(ms));
    let cases = [
        (
            SessionEvent::Gate(Event::CheckStarted {
                generation: g,
                attempt: 2,
            }),
            r#"{"t_ms":2000,"event":"check_started","generation":3,"attempt":2}"#,
        ),
        (
            SessionEvent::Gate(Event::CheckFailed {
                generation: g,
                attempt: 1,
                class: TransientClass::ServerError,
                detail: FailureDetail::Status(503),
                next_attempt: at(4_500),
                deadline: None,
            }),
            r#"{"t_ms":2000,"event":"check_failed","generation":3,"attempt":1,"class":"server_error","detail":"HTTP 503","next_attempt_ms":4000,"deadline_ms":null}"#,
        ),
        (
            SessionEvent::Gate(Event::AccessChanged {
                from: Access::Granted,
                to: Access::Denied,
                cause: Cause::FailedClosed,
            }),
            r#"{"t_ms":2000,"event":"access_changed","from":"granted","to":"denied","cause":"failed_closed"}"#,
        ),
        (
            SessionEvent::Gate(Event::StaleResult {
                generation: g,
                attempt: 7,
            }),
            r#"{"t_ms":2000,"event":"stale_result","generation":3,"attempt":7}"#,
        ),
        (
            SessionEvent::Gate(Event::FirstCheckSettled { generation: g }),
            r#"{"t_ms":2000,"event":"first_check_settled","generation":3}"#,
        ),
        (
            SessionEvent::Gate(Event::SessionEnded {
                cause: Cause::Unauthorized,
            }),
            r#"{"t_ms":2000,"event":"session_ended","cause":"unauthorized"}"#,
        ),
        (
            SessionEvent::RefreshStarted {
                id: RefreshId(4),
                early: true,
            },
            r#"{"t_ms":2000,"event":"refresh_started","id":4,"early":true}"#,
        ),
        (
            SessionEvent::Refreshed {
                generation: g,
                expires_at: Instant::from_millis(60_500),
            },
            r#"{"t_ms":2000,"event":"refreshed","generation":3,"expires_at_ms":60000}"#,
        ),
        (
            SessionEvent::RefreshFailed {
                class: TransientClass::Connect,
                detail: FailureDetail::Status(502),
                next_attempt: Instant::from_millis(3_500),
            },
            r#"{"t_ms":2000,"event":"refresh_failed","class":"connect","detail":"HTTP 502","next_attempt_ms":3000}"#,
        ),
        (
            SessionEvent::RefreshRejected,
            r#"{"t_ms":2000,"event":"refresh_rejected"}"#,
        ),
        (
            SessionEvent::StaleRefresh { id: RefreshId(9) },
            r#"{"t_ms":2000,"event":"stale_refresh","id":9}"#,
        ),
    ];
    for (e, want) in cases {
        assert_eq!(json(e), want);
    }
}

#[test]
fn the_final_line_carries_verdict_exit_code_status_and_counters() {
    let c = Counters {
        attempts: 4,
        transient: {
            let mut t = [0; TransientClass::COUNT];
            t[TransientClass::Timeout.index()] = 2;
            t[TransientClass::Dns.index()] = 1;
            t
        },
        stale_dropped: 5,
        ..Counters::default()
    };
    let st = status(Access::Denied, Some(Cause::FailedClosed), true);
    let mut s = String::new();
    write_final_json(
        &mut s,
        Verdict::of(&st),
        &st,
        &c,
        Instant::from_millis(130_250),
        Instant::from_millis(250),
    )
    .unwrap();
    assert_eq!(
        s,
        r#"{"final":true,"verdict":"failed_closed","exit_code":2,"access":"denied","cause":"failed_closed","signed_in":true,"attempts":4,"transient_failures":3,"stale_dropped":5,"elapsed_ms":130000}"#
    );
    let st = status(Access::Unknown, None, true);
    let mut s = String::new();
    write_final_json(
        &mut s,
        None,
        &st,
        &Counters::default(),
        Instant::ZERO,
        Instant::ZERO,
    )
    .unwrap();
    assert_eq!(
        s,
        r#"{"final":true,"verdict":null,"exit_code":null,"access":"unknown","cause":null,"signed_in":true,"attempts":0,"transient_failures":0,"stale_dropped":0,"elapsed_ms":0}"#
    );
}
