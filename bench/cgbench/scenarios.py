"""What the bench measures: proxies (one Envoy each) and scenarios (a proxy
loaded with one request shape), as named dataclasses.

A scenario's `expect` says what its probe (one request before any load)
must see, so a benchmark of 401s cannot pass for a fast filter.
"""

import json
from dataclasses import dataclass, field, replace

from .shapes import CHANNEL_PATH, SPIFFE_HEADER
from .signer import SECRET

ROUTE_CLUSTERS = ("r1", "r2", "r3")
SIGNATURE = {"scheme": "standard-webhooks", "secrets": [{"value": SECRET}], "tolerance_s": 3600}
MASK_FIELDS = ["email", "phone", "payment.card_number"]
MASK = {"fields": MASK_FIELDS, "detectors": ["email", "phone", "card", "cn_id"], "strategy": "redact"}
# The same fields, no detectors: what the Lua peer does with string patterns.
MASK_FIELDS_ONLY = {"fields": MASK_FIELDS, "strategy": "redact"}
ADMISSION = {
    # Far above anything one worker can do: it never sheds, it only costs.
    "capacity": {"rps": 1e7, "burst": 1e7},
    "limits": {p: {"rps": 1e7, "burst": 1e7} for p in ("high", "normal", "low")},
}
DEDUP = {"window_s": 3600}
# The fixed-rate series of the fleet-state store alone, without a proxy
# (bench/cgbench/fleet.py `dedup_begin_shape`), issue #15.
STORE_ALONE = "st"
# The fleet-state store's cluster (bench/cgbench/fleet.py starts it).
STATE = {"cluster": "fleet-state", "authority": "webdis", "timeout_ms": 100}
ROUTING = {"clusters": [{"name": c, "weight": w, "latency_sla_ms": 1000}
                        for c, w in zip(ROUTE_CLUSTERS, (60, 35, 5))]}

# The README's Rego policy (SPIFFE glob + priority + channel, `else` chain),
# with the bench's channel added to the set and the identity read from a
# header listed in `policy.headers` (wrk cannot present a client
# certificate; in a mesh the identity is `input.identity`, from mTLS).
REGO_POLICY = f"""package callback.admission

decision := {{"allow": false, "reason": "blocked_namespace"}} if {{
    startswith(input.headers["{SPIFFE_HEADER}"], "spiffe://cluster.local/ns/sandbox/")
}} else := {{"allow": true, "priority": "high", "reason": "webhook_processor"}} if {{
    input.priority == "high"
    input.channel in {{"payments", "refunds", "bench"}}
    glob.match("spiffe://cluster.local/ns/*/sa/webhook-*", ["/"], input.headers["{SPIFFE_HEADER}"])
}} else := {{"allow": true, "priority": "normal", "reason": "not_a_webhook"}}
"""
ADMISSION_REGO = {**ADMISSION, "policy": {
    "entrypoint": "data.callback.admission.decision",
    "reasons": ["blocked_namespace", "webhook_processor", "not_a_webhook"],
    "headers": [SPIFFE_HEADER],
    "modules": {"admission.rego": REGO_POLICY},
}}


def channel(**parts):
    return {"name": "bench", "match": {"path_prefix": CHANNEL_PATH}, **parts}


def plugin(channel_, admission=None):
    cfg = {"channels": [channel_], "routing": {"cluster_header": "x-callback-cluster"}}
    if admission:
        cfg["admission"] = admission
    return cfg


@dataclass(frozen=True)
class Proxy:
    """One proxy Envoy. `kind`: plain (no filter), noop (the no-op wasm
    control), floor (bench/noop as a host-call floor, its plan text in
    `config`, filled in by the run from the host-call counts), guard
    (callback-guard with `config`), lua (the Lua peer), ext_authz (the
    ext_authz peer, with its verifier process)."""
    name: str
    kind: str
    config: dict | str | None = None
    routed: bool = False  # the channel's route reads cluster_header
    fleet: bool = False  # needs the fleet-state store (redis-server + webdis)

    def config_json(self):
        if isinstance(self.config, str):
            return self.config
        return json.dumps(self.config) if self.config is not None else None


@dataclass(frozen=True)
class Expect:
    """What the probe of a scenario must see."""
    status: int = 200
    filter_ran: bool = True  # x-callback-trace-id on the answer
    counters_moved: tuple = ()  # substrings of callback-guard stats that must move
    counters_zero: tuple = ()  # ... and that must not
    verified: bool = False  # x-verified-signature: standard-webhooks
    masked: bool = False  # the forwarded body no longer holds the PII
    forged_status: int | None = None  # a forged signature gets this answer
    answer_header: str | None = None  # a header the answer must carry
    stats_set: tuple = ()  # substrings of stats that must have been set (any value)


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    proxy: str
    shape: str
    baseline: str  # body-size class: "1k" or "64k" (which plain / no-op to compare with)
    expect: Expect = field(default_factory=Expect)
    peer_of: str | None = None  # a peer: the key of our scenario doing the same work
    added_over: str | None = None  # report CPU added over this scenario
    hostcalls: bool = False  # count its host calls with the hostcall-count build
    floor_of: str | None = None  # a host-call floor: the key of the scenario it reproduces
    target: float | None = None  # issue #17's CPU/request target, × the no-op filter
    fixed_rate: bool = False  # also loaded at fixed offered rates (h2load), issue #15
    twin_of: str | None = None  # the same scenario run by the baseline build (`--baseline-wasm`)


PROXIES = {p.name: p for p in (
    Proxy("plain", "plain"),
    Proxy("noop", "noop"),
    # Outside its channel only the header rules run; admission and routing
    # are there so the request is checked against a realistic policy.
    Proxy("guard-pass", "guard", plugin(channel(routing=ROUTING), ADMISSION), routed=True),
    Proxy("guard-empty", "guard", plugin(channel())),
    Proxy("guard-sig1k", "guard", plugin(channel(signature=SIGNATURE, mask=MASK))),
    Proxy("guard-sig64k", "guard", plugin(channel(signature=SIGNATURE, mask=MASK))),
    Proxy("guard-sig-only", "guard", plugin(channel(signature=SIGNATURE))),
    Proxy("guard-mask-fields", "guard", plugin(channel(mask=MASK_FIELDS_ONLY))),
    Proxy("guard-admission", "guard", plugin(channel(), ADMISSION)),
    Proxy("guard-rego", "guard", plugin(channel(), ADMISSION_REGO)),
    Proxy("guard-routing", "guard", plugin(channel(routing=ROUTING)), routed=True),
    Proxy("guard-full", "guard", plugin(channel(signature=SIGNATURE, mask=MASK, routing=ROUTING),
                                        ADMISSION), routed=True),
    # (g) plus dedup: every request after the first repeats the delivery id,
    # so it is a duplicate: answered after the dedup check, not forwarded.
    Proxy("guard-full-dedup", "guard", plugin(channel(signature=SIGNATURE, mask=MASK, routing=ROUTING,
                                                      dedup=DEDUP), ADMISSION), routed=True),
    Proxy("guard-full-fleet", "guard", {**plugin(channel(signature=SIGNATURE, mask=MASK, routing=ROUTING,
                                                         dedup=DEDUP), ADMISSION), "state": STATE},
          routed=True, fleet=True),
    Proxy("lua", "lua"),
    # One host-call floor per scenario it reproduces (bench/cgbench/floor.py).
    # The floors of routed scenarios write x-callback-cluster like the
    # filter does (`route=` in their plan), on the same route and clusters.
    *(Proxy(f"floor-{k}", "floor", routed=k in ("f", "g")) for k in ("a", "c", "e", "f", "g", "d")),
    Proxy("ext-authz", "ext_authz"),
)}

BASELINE = {"1k": ("plain", "noop"), "64k": ("plain64", "noop64")}
NO_FILTER = Expect(filter_ran=False)
SIGNED_MASKED = Expect(verified=True, masked=True, forged_status=401,
                       counters_moved=("callback_masked_fields_total",))

SCENARIOS = (
    Scenario("plain", "plain Envoy, no filter (1 KiB POST)", "plain", "1k", "1k", NO_FILTER),
    Scenario("noop", "no-op wasm filter (1 KiB POST)", "noop", "1k", "1k", NO_FILTER),
    # Outside every channel the filter writes nothing (no trace id on the answer).
    Scenario("a", "(a) pass-through, outside any channel (1 KiB POST)", "guard-pass", "passthrough",
             "1k", Expect(filter_ran=False, counters_zero=("callback_requests_total",)), hostcalls=True,
             target=1.03),
    Scenario("b", "(b) empty callback `{}`, answered 204 by the filter", "guard-empty", "empty", "1k",
             Expect(status=204, counters_moved=("callback_empty_total",)), hostcalls=True),
    Scenario("c", "(c) 1 KiB JSON, standard-webhooks verified + masked", "guard-sig1k", "1k", "1k",
             SIGNED_MASKED, hostcalls=True, target=1.15),
    Scenario("s", "(s) 1 KiB JSON, standard-webhooks verified only", "guard-sig-only", "1k", "1k",
             Expect(verified=True, forged_status=401), hostcalls=True),
    Scenario("m", "(m) 1 KiB JSON, 3 fields masked (no detectors, no signature)", "guard-mask-fields",
             "1k", "1k", Expect(masked=True, counters_moved=("callback_masked_fields_total",)),
             hostcalls=True),
    Scenario("e", "(e) admission, limits never shed (1 KiB)", "guard-admission", "1k", "1k",
             Expect(counters_moved=("decision=.=admitted",)), hostcalls=True, target=1.05),
    Scenario("eh", "(eh) as (e), asking `high` (no rule: demoted)", "guard-admission", "1k-high",
             "1k", Expect(counters_moved=("decision=.=demoted",)), hostcalls=True),
    Scenario("r", "(r) as (eh) plus the README's Rego policy (glob → `high`)", "guard-rego",
             "1k-high", "1k",
             Expect(counters_moved=("callback_admission_policy_total_decision=.=admitted",)),
             added_over="eh", hostcalls=True),
    Scenario("f", "(f) routing over 3 clusters, cluster_header (1 KiB)", "guard-routing", "1k", "1k",
             Expect(counters_moved=("callback_routed_total",)), hostcalls=True, target=1.05),
    Scenario("g", "(g) full pipeline: verify + mask + admission + routing (1 KiB)", "guard-full",
             "1k", "1k", Expect(verified=True, masked=True, forged_status=401, counters_moved=(
                 "callback_masked_fields_total", "decision=.=admitted", "callback_routed_total")),
             hostcalls=True, target=1.25),
    Scenario("gd", "(gd) as (g) plus dedup, local state: a repeated delivery answered duplicate",
             "guard-full-dedup", "1k", "1k", Expect(verified=True), fixed_rate=True),
    Scenario("gs", "(gs) as (gd) with fleet state: each dedup check one round trip to Redis via webdis",
             "guard-full-fleet", "1k", "1k", Expect(verified=True), added_over="gd", fixed_rate=True),
    Scenario("p1e", "(p1) Lua filter: empty callback `{}` counted, answered 204", "lua", "empty",
             "1k", Expect(status=204, filter_ran=False, answer_header="x-empty-callbacks"),
             peer_of="b"),
    Scenario("p1m", "(p1) Lua filter: 3 fields masked with string patterns (1 KiB)", "lua", "1k",
             "1k", Expect(filter_ran=False, masked=True), peer_of="m"),
    Scenario("p2", "(p2) ext_authz → Rust verifier on loopback (1 KiB)", "ext-authz", "1k", "1k",
             Expect(filter_ran=False, forged_status=401), peer_of="s"),
    Scenario("plain64", "plain Envoy, no filter (64 KiB POST)", "plain", "64k", "64k", NO_FILTER),
    Scenario("noop64", "no-op wasm filter (64 KiB POST)", "noop", "64k", "64k", NO_FILTER),
    Scenario("d", "(d) 64 KiB JSON, standard-webhooks verified + masked", "guard-sig64k", "64k",
             "64k", SIGNED_MASKED, hostcalls=True, target=3.5),
    # Host-call floors (issue #17): bench/noop making the host calls the
    # scenario made per request in this run's count, plus the body work no
    # verifier or rewriter can skip (floor.py). The probe sees the floor's
    # `floor_configured` gauge, set once when its plan took (a floor whose
    # plan did not take is the no-op, and would measure nothing).
    *(Scenario(f"f{k}", f"({k}) host-call floor", f"floor-{k}", shape, base,
               Expect(filter_ran=False, stats_set=("floor_configured",)), floor_of=k)
      for k, shape, base in (("a", "passthrough", "1k"), ("c", "1k", "1k"), ("e", "1k", "1k"),
                             ("f", "1k", "1k"), ("g", "1k", "1k"), ("d", "64k", "64k"))),
)
FULL_PIPELINE = "g"


def select(only):
    """The scenarios named in `only` (all when empty), and the proxies they use."""
    known = {s.key for s in SCENARIOS}
    unknown = set(only) - known
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(s.key for s in SCENARIOS)}")
    scenarios = tuple(s for s in SCENARIOS if not only or s.key in only)
    used = {s.proxy for s in scenarios}
    return scenarios, {n: p for n, p in PROXIES.items() if n in used}


# The scenarios a baseline build (`--baseline-wasm`, another commit's
# callback_guard.wasm) is run on, next to ours in the same run: the ones
# issue #17 sets a target for, and the empty callback.
TWINNED = ("a", "b", "c", "e", "f", "g", "d")
TWIN_PREFIX = "base-"


def with_twins(chosen, proxies):
    """`chosen` plus a baseline twin of each TWINNED scenario in it, and the
    proxies they use (kind `baseline`: the same configuration, the other
    build). A twin's probe checks the answer, the signature and the
    masking, not the stats or headers an older build may name otherwise."""
    out = []
    proxies = dict(proxies)
    for s in chosen:
        out.append(s)
        if s.key not in TWINNED:
            continue
        p = PROXIES[s.proxy]
        proxies[TWIN_PREFIX + p.name] = replace(p, name=TWIN_PREFIX + p.name, kind="baseline")
        # Right after ours: in every round the two runs are back to back.
        out.append(replace(s, key=TWIN_PREFIX + s.key, label=f"{s.label}, baseline build",
                           proxy=TWIN_PREFIX + p.name, hostcalls=False, target=None, twin_of=s.key,
                           expect=replace(s.expect, filter_ran=False, counters_moved=(),
                                          counters_zero=(), stats_set=())))
    return tuple(out), proxies


def scenario(key):
    return next(s for s in SCENARIOS if s.key == key)
