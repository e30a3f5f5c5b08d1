//! The `/_control/` HTTP surface: the same operations as [`Control`], driven by query strings.

use std::sync::Arc;
use std::time::Duration;

use crate::http::{parse_form, Request, Response};
use crate::state::{Capacity, Control, Endpoint, Fault, Shared};

const HELP: &str = "accessgate backend control surface (GET or POST, parameters in the query \
string or a form body; answers are JSON)
/_control/fault?endpoint=check|token|all&fault=NAME[&code=503][&retry_after=5][&for_ms=2000]
    NAME: none refused status hang html_portal wrong_type null_value missing_field
          duplicate_key trailing_garbage truncated oversized broken_chunked
/_control/clear                         clear all faults, latencies and capacity limits
/_control/access?user=U&has_access=true|false
/_control/token?user=U[&expires_in=3600] -> {access_token, refresh_token, expires_in}
/_control/expire?access_token=T
/_control/revoke?refresh_token=T
/_control/latency?endpoint=check|token|all&ms=500
/_control/capacity?endpoint=check|token|all&per_second=N[&retry_after=true]   (N=0: no limit)
/_control/counts                        request counters
/_control/reset_counts
";

struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn req(&self, k: &str) -> Result<&str, String> {
        self.get(k).ok_or_else(|| format!("missing parameter {k}"))
    }

    fn num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, String> {
        self.get(k)
            .map(|v| v.parse::<T>().map_err(|_| format!("bad number {k}={v}")))
            .transpose()
    }

    fn flag(&self, k: &str) -> Result<Option<bool>, String> {
        self.get(k)
            .map(|v| match v {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(format!("bad boolean {k}={v}")),
            })
            .transpose()
    }

    fn endpoints(&self) -> Result<Vec<Endpoint>, String> {
        match self.req("endpoint")? {
            "all" => Ok(Endpoint::ALL.to_vec()),
            e => Ok(vec![e.parse()?]),
        }
    }
}

pub(crate) fn handle(shared: &Arc<Shared>, req: &Request) -> Response {
    let mut raw = req.query.as_bytes().to_vec();
    if !req.body.is_empty() {
        if !raw.is_empty() {
            raw.push(b'&');
        }
        raw.extend_from_slice(&req.body);
    }
    let Some(params) = parse_form(&raw) else {
        return error("malformed parameters".into());
    };
    let op = req.path.trim_start_matches("/_control").trim_matches('/');
    if op.is_empty() || op == "help" {
        return Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            extra_headers: Vec::new(),
            body: HELP.as_bytes().to_vec(),
        };
    }
    match run(shared, op, &Params(params)) {
        Ok(Some(v)) => Response::json(200, v.to_string()),
        Ok(None) => Response::json(200, r#"{"ok":true}"#),
        Err(e) => error(e),
    }
}

fn error(msg: String) -> Response {
    Response::json(400, serde_json::json!({ "error": msg }).to_string())
}

fn run(shared: &Arc<Shared>, op: &str, p: &Params) -> Result<Option<serde_json::Value>, String> {
    let control = Control {
        shared: shared.clone(),
    };
    match op {
        "fault" => {
            let name = p.req("fault")?;
            let fault = match name {
                "none" => None,
                n => Some(Fault::from_name(n, p.num("code")?, p.num("retry_after")?)?),
            };
            let for_ms: Option<u64> = p.num("for_ms")?;
            for ep in p.endpoints()? {
                let is_refused = fault == Some(Fault::Refused);
                let gen = shared.set_fault(ep, fault.clone());
                if let (Some(ms), Some(_)) = (for_ms, &fault) {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        shared.clear_fault_if(ep, is_refused, gen);
                    });
                }
                if is_refused {
                    break; // global: once is enough
                }
            }
            Ok(None)
        }
        "clear" => {
            control.clear_all();
            Ok(None)
        }
        "access" => {
            let has = p.flag("has_access")?.ok_or("missing parameter has_access")?;
            control.set_access(p.req("user")?, has);
            Ok(None)
        }
        "token" => {
            let secs: u64 = p.num("expires_in")?.unwrap_or(3600);
            let t = control.issue_token(p.req("user")?, Duration::from_secs(secs));
            Ok(Some(serde_json::json!({
                "access_token": t.access_token,
                "refresh_token": t.refresh_token,
                "expires_in": t.expires_in_secs,
            })))
        }
        "expire" => {
            control.expire_token(p.req("access_token")?);
            Ok(None)
        }
        "revoke" => {
            control.revoke_refresh(p.req("refresh_token")?);
            Ok(None)
        }
        "latency" => {
            let ms: u64 = p.num("ms")?.ok_or("missing parameter ms")?;
            for ep in p.endpoints()? {
                control.set_latency(ep, Duration::from_millis(ms));
            }
            Ok(None)
        }
        "capacity" => {
            let n: u32 = p.num("per_second")?.unwrap_or(0);
            let retry_after = p.flag("retry_after")?.unwrap_or(false);
            let cap = (n > 0).then_some(Capacity {
                per_second: n,
                retry_after,
            });
            for ep in p.endpoints()? {
                control.set_capacity(ep, cap);
            }
            Ok(None)
        }
        "counts" => Ok(Some(control.counts().to_json())),
        "reset_counts" => {
            control.reset_counts();
            Ok(None)
        }
        other => Err(format!("unknown control operation {other:?}; see /_control/help")),
    }
}
