//! `accessgate simulate --help` is read by operators (issue 12): no rustdoc link syntax, and
//! every policy named for what it is; the policy identifiers of earlier releases still parse.

mod common;

use std::time::Duration;

use accessgate_fleet::PolicyKind;
use common::*;

/// Every policy, the extra what-if included.
fn every_policy() -> Vec<PolicyKind> {
    let mut all = PolicyKind::ALL.to_vec();
    all.push(PolicyKind::Ours16);
    all
}

/// Whitespace collapsed, so a wrapped help line still matches.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn simulate_help_has_no_rustdoc_syntax_and_names_policies_for_what_they_are() {
    let out = accessgate(&["simulate", "--help"], Duration::from_secs(20)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let help = stdout(&out);
    for bad in ["[`", "`]", "`"] {
        assert!(!help.contains(bad), "help shows rustdoc syntax {bad:?}:\n{help}");
    }
    let help = flat(&help);
    for wording in [
        "ours: stratified retries + periodic probes (R6/R7)",
        "fixed schedule, no jitter (original PR)",
        "3 tries then keep (shipped fix)",
        "AWS SDK standard retry mode",
        "gRPC connection backoff",
        "LaunchDarkly SDK stream reconnect",
    ] {
        assert!(help.contains(wording), "{wording:?} missing:\n{help}");
    }
    for p in every_policy() {
        let line = format!("- {}: {}", p.id(), flat(p.describe()));
        assert!(help.contains(&line), "{line:?} missing:\n{help}");
    }
}

#[tokio::test]
async fn simulate_short_help_has_no_rustdoc_syntax_either() {
    let out = accessgate(&["simulate", "-h"], Duration::from_secs(20)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let help = stdout(&out);
    assert!(!help.contains('`'), "{help}");
    assert!(help.contains("--policies"), "{help}");
}

#[tokio::test]
async fn every_earlier_policy_identifier_is_still_accepted() {
    let ids: Vec<&str> = every_policy().iter().map(|p| p.id()).collect();
    assert_eq!(
        ids,
        [
            "ours",
            "ours-old",
            "pr-final",
            "pr-prime",
            "shipped-fix",
            "aws",
            "grpc",
            "launchdarkly",
            "ours16"
        ],
        "the identifiers scripts use"
    );
    let list = ids.join(",");
    let out = accessgate(
        &[
            "simulate",
            "boot-storm",
            "--quiet",
            "--devices",
            "40",
            "--capacity",
            "20",
            "--horizon",
            "2m",
            "--threads",
            "1",
            "--policies",
            &list,
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    for p in every_policy() {
        assert!(
            table.contains(&format!("| {} |", p.name())),
            "{} missing:\n{table}",
            p.name()
        );
    }
    let out = accessgate(
        &["simulate", "boot-storm", "--policies", "no-such-policy"],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(code(&out), 64, "a usage error for an unknown policy");
    assert!(
        stderr(&out).contains("pr-final"),
        "the error lists the valid identifiers"
    );
}
