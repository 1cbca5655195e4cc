//! The floor's plan: which host calls to make per request, in which phase,
//! parsed from the plugin configuration. Plain Rust, no host calls, so it
//! is unit-tested natively (`cargo test` in bench/noop).
//!
//! The configuration is text: tokens separated by whitespace or commas,
//! each `hold=1` or `<phase>.<call>=<calls per request>`, for example
//! `hold=1 request_headers.get_header_map_pairs=1 request_body.get_buffer_bytes=1`.
//! A count may be fractional (up to 3 decimals, `0.13`): the calls are
//! spread over requests so that their average is the count (callback-guard
//! makes some calls on a fraction of the requests only, e.g. the routing
//! feedback it writes to shared data). An unknown phase, call or a bad
//! number refuses the configuration, so a typo cannot measure nothing.
//!
//! `route=r1:60/r2:35/r3:5` makes the first request-header write of each
//! request `x-callback-cluster: <cluster>` ([`ROUTE_HEADER`]), the clusters
//! taken in turn by weight, as callback-guard's routing writes it: the
//! request then takes the route that reads the cluster from that header.

use std::cell::Cell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    Log,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::RequestHeaders,
        Phase::RequestBody,
        Phase::ResponseHeaders,
        Phase::Log,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::RequestHeaders => "request_headers",
            Phase::RequestBody => "request_body",
            Phase::ResponseHeaders => "response_headers",
            Phase::Log => "log",
        }
    }
}

/// One kind of work per request, in the order a phase does them. Every
/// variant but `sha256` and `utf8_copy` is one proxy-wasm ABI import
/// (named after it, without `proxy_`); those two are the body work no verifier or rewriter can skip (the
/// body floor of bench/floor), done in the VM on the body that
/// `get_buffer_bytes` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    GetHeaderMapPairs,
    GetHeaderMapValue,
    ReplaceHeaderMapValue,
    GetCurrentTimeNanoseconds,
    GetProperty,
    SetProperty,
    GetSharedData,
    SetSharedData,
    IncrementMetric,
    RecordMetric,
    GetBufferBytes,
    Sha256,
    Utf8Copy,
    SetBufferBytes,
}

impl Call {
    pub const ALL: [Call; 14] = [
        Call::GetHeaderMapPairs,
        Call::GetHeaderMapValue,
        Call::ReplaceHeaderMapValue,
        Call::GetCurrentTimeNanoseconds,
        Call::GetProperty,
        Call::SetProperty,
        Call::GetSharedData,
        Call::SetSharedData,
        Call::IncrementMetric,
        Call::RecordMetric,
        Call::GetBufferBytes,
        Call::Sha256,
        Call::Utf8Copy,
        Call::SetBufferBytes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Call::GetHeaderMapPairs => "get_header_map_pairs",
            Call::GetHeaderMapValue => "get_header_map_value",
            Call::ReplaceHeaderMapValue => "replace_header_map_value",
            Call::GetCurrentTimeNanoseconds => "get_current_time_nanoseconds",
            Call::GetProperty => "get_property",
            Call::SetProperty => "set_property",
            Call::GetSharedData => "get_shared_data",
            Call::SetSharedData => "set_shared_data",
            Call::IncrementMetric => "increment_metric",
            Call::RecordMetric => "record_metric",
            Call::GetBufferBytes => "get_buffer_bytes",
            Call::SetBufferBytes => "set_buffer_bytes",
            Call::Sha256 => "sha256",
            Call::Utf8Copy => "utf8_copy",
        }
    }

    /// Only meaningful on the request body (they work on the body read).
    fn body_only(self) -> bool {
        matches!(
            self,
            Call::GetBufferBytes | Call::SetBufferBytes | Call::Sha256 | Call::Utf8Copy
        )
    }
}

/// Calls per request of one (phase, call), in thousandths, and the
/// remainder carried from request to request.
#[derive(Debug)]
pub struct Rate {
    pub phase: Phase,
    pub call: Call,
    milli: u32,
    carry: Cell<u32>,
}

impl Rate {
    /// How many calls this request makes: the whole part, plus one more
    /// each time the fractions add up to a whole call.
    pub fn take(&self) -> u32 {
        let sum = self.carry.get() + self.milli % 1000;
        self.carry.set(sum % 1000);
        self.milli / 1000 + sum / 1000
    }
}

/// The header a routed floor writes its cluster to (the bench's
/// `routing.cluster_header`).
pub const ROUTE_HEADER: &str = "x-callback-cluster";

/// Clusters by weight, taken in turn: of every `total` requests, each
/// cluster gets its weight's share, in a fixed order.
#[derive(Debug)]
pub struct Route {
    clusters: Vec<(String, u32)>,
    total: u32,
    next: Cell<u32>,
}

impl Route {
    fn parse(value: &str) -> Result<Route, String> {
        let mut clusters = Vec::new();
        for part in value.split('/') {
            let (name, weight) = part
                .split_once(':')
                .ok_or_else(|| format!("route `{part}`: expected <cluster>:<weight>"))?;
            let weight: u32 = weight
                .parse()
                .ok()
                .filter(|w| (1..=1000).contains(w))
                .ok_or_else(|| format!("route `{part}`: the weight is 1..=1000"))?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!("route `{part}`: a cluster name is [A-Za-z0-9-]+"));
            }
            clusters.push((name.to_string(), weight));
        }
        let total = clusters.iter().map(|(_, w)| w).sum();
        Ok(Route {
            clusters,
            total,
            next: Cell::new(0),
        })
    }

    /// The cluster of the next request.
    pub fn pick(&self) -> &str {
        let n = self.next.get();
        self.next.set((n + 1) % self.total.max(1));
        let mut at = n;
        for (name, weight) in &self.clusters {
            if at < *weight {
                return name;
            }
            at -= weight;
        }
        ""
    }
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Write the route header (`route=`), see [`Route`].
    pub route: Option<Route>,
    /// Hold the request like callback-guard inside a channel: the headers
    /// phase pauses, the body is buffered (`StopIterationAndBuffer`) and the
    /// request goes on when the last body callback returns `Continue`.
    pub hold: bool,
    /// In `Call::ALL` order (the body is read before it is hashed, copied
    /// and written back); at most one per (phase, call).
    pub rates: Vec<Rate>,
}

/// The most calls of one kind per request a plan may ask (a typo like
/// `1000` instead of `1.000` should not hang a worker).
const MAX_PER_REQUEST: u32 = 64;

impl Plan {
    pub fn parse(text: &str) -> Result<Plan, String> {
        let mut plan = Plan::default();
        for token in text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
        {
            let (key, value) = token
                .split_once('=')
                .ok_or_else(|| format!("`{token}`: expected key=value"))?;
            if key == "hold" {
                plan.hold = match value {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(format!("`{token}`: hold is 0 or 1")),
                };
                continue;
            }
            if key == "route" {
                plan.route = Some(Route::parse(value)?);
                continue;
            }
            let (phase, call) = key
                .split_once('.')
                .ok_or_else(|| format!("`{token}`: expected <phase>.<call>=<count>"))?;
            let phase = Phase::ALL
                .into_iter()
                .find(|p| p.name() == phase)
                .ok_or_else(|| format!("`{token}`: unknown phase `{phase}`"))?;
            let call = Call::ALL
                .into_iter()
                .find(|c| c.name() == call)
                .ok_or_else(|| format!("`{token}`: unknown call `{call}`"))?;
            if call.body_only() && phase != Phase::RequestBody {
                return Err(format!("`{token}`: {} is a request_body call", call.name()));
            }
            if plan
                .rates
                .iter()
                .any(|r| r.phase == phase && r.call == call)
            {
                return Err(format!("`{token}`: given twice"));
            }
            let milli = milli(value).ok_or_else(|| {
                format!(
                    "`{token}`: the count is a number 0..={MAX_PER_REQUEST} (3 decimals at most)"
                )
            })?;
            if milli > 0 {
                plan.rates.push(Rate {
                    phase,
                    call,
                    milli,
                    carry: Cell::new(0),
                });
            }
        }
        plan.rates.sort_by_key(|r| r.call as usize);
        Ok(plan)
    }

    pub fn in_phase(&self, phase: Phase) -> impl Iterator<Item = &Rate> {
        self.rates.iter().filter(move |r| r.phase == phase)
    }
}

/// `"1.13"` -> 1130; `None` past 3 decimals or above the bound.
fn milli(value: &str) -> Option<u32> {
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    if whole.is_empty()
        || frac.len() > 3
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().ok()? * 10u32.pow(3 - frac.len() as u32)
    };
    let milli = whole.checked_mul(1000)?.checked_add(frac)?;
    (milli <= MAX_PER_REQUEST * 1000).then_some(milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_phases_calls_and_fractions() {
        let plan = Plan::parse(
            "hold=1 request_headers.get_header_map_pairs=1,\n request_body.sha256=1 log.increment_metric=2.5",
        )
        .unwrap();
        assert!(plan.hold);
        let got: Vec<_> = plan
            .rates
            .iter()
            .map(|r| (r.phase, r.call, r.milli))
            .collect();
        assert_eq!(
            got,
            [
                (Phase::RequestHeaders, Call::GetHeaderMapPairs, 1000),
                (Phase::Log, Call::IncrementMetric, 2500),
                (Phase::RequestBody, Call::Sha256, 1000),
            ]
        );
    }

    #[test]
    fn the_body_is_read_before_it_is_hashed_and_written() {
        let plan = Plan::parse(
            "request_body.set_buffer_bytes=1 request_body.sha256=1 request_body.get_buffer_bytes=1",
        )
        .unwrap();
        let calls: Vec<_> = plan.in_phase(Phase::RequestBody).map(|r| r.call).collect();
        assert_eq!(
            calls,
            [Call::GetBufferBytes, Call::Sha256, Call::SetBufferBytes]
        );
    }

    #[test]
    fn a_route_takes_the_clusters_in_turn_by_weight() {
        let plan =
            Plan::parse("route=r1:3/r2:2/r3:1 request_body.replace_header_map_value=2").unwrap();
        let route = plan.route.unwrap();
        let got: Vec<_> = (0..12).map(|_| route.pick().to_string()).collect();
        assert_eq!(
            got,
            [
                "r1", "r1", "r1", "r2", "r2", "r3", "r1", "r1", "r1", "r2", "r2", "r3"
            ]
        );
        for bad in [
            "route=r1",
            "route=r1:0",
            "route=r1:x",
            "route=:5",
            "route=r 1:5",
        ] {
            assert!(Plan::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_configuration_is_no_work() {
        let plan = Plan::parse(" \n").unwrap();
        assert!(!plan.hold && plan.rates.is_empty() && plan.route.is_none());
    }

    #[test]
    fn fractional_counts_average_out() {
        let plan = Plan::parse("request_headers.get_shared_data=1.13").unwrap();
        let total: u32 = (0..1000).map(|_| plan.rates[0].take()).sum();
        assert_eq!(total, 1130);
        let plan = Plan::parse("log.record_metric=0.005").unwrap();
        let total: u32 = (0..1000).map(|_| plan.rates[0].take()).sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        for bad in [
            "request_headers.get_header_map_pairs",
            "request_headers.frobnicate=1",
            "response_trailers.get_header_map_pairs=1",
            "request_headers.sha256=1",
            "request_headers.get_property=1.2345",
            "request_headers.get_property=65",
            "request_headers.get_property=-1",
            "request_headers.get_property=1 request_headers.get_property=2",
            "hold=yes",
        ] {
            assert!(Plan::parse(bad).is_err(), "{bad}");
        }
    }
}
