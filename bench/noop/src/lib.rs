//! The control filter of `make bench`, in two modes.
//!
//! - **No-op** (no plugin configuration): an HTTP context that does nothing,
//!   every callback keeps the default (`Action::Continue`). The control for
//!   "any wasm filter": V8, context creation, the host's callbacks.
//! - **Host-call floor** (a configuration, see [`plan`]): per request, the
//!   host calls a callback-guard scenario makes (counted by its
//!   `hostcall-count` build), in the phases where it makes them, holding the
//!   request like callback-guard does inside a channel (`hold=1`), plus the
//!   body work no verifier or rewriter can skip (`sha256`, `utf8_copy`) when
//!   asked, and nothing else. A scenario's CPU per request minus its floor's
//!   is callback-guard's own compute in the VM (issue #17).

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod plan;

#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
mod filter {
    use crate::host;
    use crate::plan::{Call, Phase, Plan, ROUTE_HEADER};
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType};
    use std::hint::black_box;
    use std::rc::Rc;

    /// Header names the floor writes (distinct names, as the filter adds
    /// distinct headers); a plan asks at most 64 per phase.
    const HEADERS: [&str; 8] = [
        "x-floor-0",
        "x-floor-1",
        "x-floor-2",
        "x-floor-3",
        "x-floor-4",
        "x-floor-5",
        "x-floor-6",
        "x-floor-7",
    ];
    /// As long as callback-guard's trace id.
    const HEADER_VALUE: &[u8] = b"0123456789abcdef0123456789abcdef";
    /// Roughly the size of callback-guard's decision record.
    const PROPERTY_VALUE: &[u8] = &[b'x'; 160];
    const SHARED_KEY: &str = "floor.bucket";

    struct Floor {
        plan: Plan,
        counter: Option<u32>,
        histogram: Option<u32>,
    }

    #[derive(Default)]
    struct Root {
        floor: Option<Rc<Floor>>,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, size: usize) -> bool {
            if size == 0 {
                return true; // no configuration: the no-op
            }
            let Some(bytes) = host::get_buffer(host::BUFFER_PLUGIN_CONFIGURATION, 0, size) else {
                return true;
            };
            let text = String::from_utf8_lossy(&bytes);
            match Plan::parse(&text) {
                Ok(plan) if plan.rates.is_empty() && !plan.hold && plan.route.is_none() => true,
                Ok(plan) => {
                    // Once, at configuration: the bench's probe sees from
                    // this gauge that the plan took (a plan may write no
                    // header the answer would show).
                    if let Some(id) = host::define_metric(host::METRIC_GAUGE, "floor_configured") {
                        host::record_metric(id, 1);
                    }
                    self.floor = Some(Rc::new(Floor {
                        plan,
                        counter: host::define_metric(host::METRIC_COUNTER, "floor_counter"),
                        histogram: host::define_metric(host::METRIC_HISTOGRAM, "floor_histogram"),
                    }));
                    true
                }
                Err(e) => {
                    host::log_error(&format!("host-call floor: configuration refused: {e}"));
                    false
                }
            }
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(match &self.floor {
                None => Box::new(Noop),
                Some(floor) => Box::new(FloorRequest {
                    floor: floor.clone(),
                    body: Vec::new(),
                    routed: false,
                }),
            })
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Noop;
    impl Context for Noop {}
    impl HttpContext for Noop {}

    struct FloorRequest {
        floor: Rc<Floor>,
        /// The request body as `get_buffer_bytes` read it (or its copy).
        body: Vec<u8>,
        /// The route header was written (`route=`: once per request).
        routed: bool,
    }

    impl FloorRequest {
        fn run(&mut self, phase: Phase, body_size: usize) {
            let floor = self.floor.clone();
            let map = match phase {
                Phase::RequestHeaders | Phase::RequestBody => host::MAP_HTTP_REQUEST_HEADERS,
                Phase::ResponseHeaders | Phase::Log => host::MAP_HTTP_RESPONSE_HEADERS,
            };
            for rate in floor.plan.in_phase(phase) {
                for i in 0..rate.take() as usize {
                    self.call(&floor, rate.call, map, i, body_size);
                }
            }
        }

        fn call(&mut self, floor: &Floor, call: Call, map: u32, i: usize, body_size: usize) {
            match call {
                Call::GetHeaderMapPairs => {
                    black_box(host::get_map_pairs(map));
                }
                Call::GetHeaderMapValue => {
                    let key = if map == host::MAP_HTTP_REQUEST_HEADERS {
                        ":path"
                    } else {
                        ":status"
                    };
                    black_box(host::get_map_value(map, key));
                }
                Call::ReplaceHeaderMapValue => match &floor.plan.route {
                    Some(route) if map == host::MAP_HTTP_REQUEST_HEADERS && !self.routed => {
                        self.routed = true;
                        host::replace_map_value(map, ROUTE_HEADER, route.pick().as_bytes())
                    }
                    _ => host::replace_map_value(map, HEADERS[i % HEADERS.len()], HEADER_VALUE),
                },
                Call::GetCurrentTimeNanoseconds => {
                    black_box(host::current_time_ns());
                }
                Call::GetProperty => {
                    black_box(host::get_property(b"request\0path"));
                }
                Call::SetProperty => host::set_property(b"cg_floor", PROPERTY_VALUE),
                Call::GetSharedData => {
                    black_box(host::get_shared_data(SHARED_KEY));
                }
                Call::SetSharedData => {
                    // Unconditional (cas 0): callback-guard's draw writes
                    // with the cas it read, which succeeds without contention.
                    host::set_shared_data(SHARED_KEY, &host::current_time_ns().to_le_bytes(), 0)
                }
                Call::IncrementMetric => {
                    if let Some(id) = floor.counter {
                        host::increment_metric(id, 1)
                    }
                }
                Call::RecordMetric => {
                    if let Some(id) = floor.histogram {
                        host::record_metric(id, 1)
                    }
                }
                Call::GetBufferBytes => {
                    self.body = host::get_buffer(host::BUFFER_HTTP_REQUEST_BODY, 0, body_size)
                        .unwrap_or_default();
                }
                Call::Sha256 => {
                    use sha2::Digest;
                    black_box(sha2::Sha256::digest(&self.body));
                }
                Call::Utf8Copy => {
                    if std::str::from_utf8(&self.body).is_ok() {
                        self.body = black_box(self.body.to_vec());
                    }
                }
                Call::SetBufferBytes => {
                    host::set_buffer(host::BUFFER_HTTP_REQUEST_BODY, 0, body_size, &self.body)
                }
            }
        }
    }

    impl Context for FloorRequest {}

    impl HttpContext for FloorRequest {
        fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
            self.run(Phase::RequestHeaders, 0);
            if self.floor.plan.hold && !end_of_stream {
                Action::Pause
            } else {
                Action::Continue
            }
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            if !end_of_stream {
                // Pause here is StopIterationAndBuffer: the body waits.
                return if self.floor.plan.hold {
                    Action::Pause
                } else {
                    Action::Continue
                };
            }
            self.run(Phase::RequestBody, body_size);
            self.body = Vec::new();
            Action::Continue
        }

        fn on_http_response_headers(
            &mut self,
            _num_headers: usize,
            _end_of_stream: bool,
        ) -> Action {
            self.run(Phase::ResponseHeaders, 0);
            Action::Continue
        }

        fn on_log(&mut self) {
            self.run(Phase::Log, 0);
        }
    }

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::<Root>::default());
    }}
}
