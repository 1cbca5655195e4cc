"""The Envoy benchmark of callback-guard (`make bench`, bench/run.py).

Modules, in the order a run uses them:
  common     paths, errors, the loopback HTTP client
  signer     Standard Webhooks signing (envoy/sign.py's, the one Python signer)
  shapes     the request shapes (bodies, headers) and their wrk Lua scripts
  scenarios  proxies and scenarios as named dataclasses, and what each probe expects
  envoy      Envoy bootstraps (plain / wasm / Lua / ext_authz proxies) and the Envoy process
  upstream   the fast direct_response upstream, the probe echo server, the ext_authz verifier
  load       wrk runs (saturation), h2load runs (fixed rate), the CPU accounting around them
  hostcalls  host calls per request, from the `hostcall-count` build
  floor      host-call floors: bench/noop's plan for a scenario, from its host-call counts
  system     machine description and CPU pinning
  report     the BENCHMARKS.md writer
  main       the run itself
Standard library only.
"""
