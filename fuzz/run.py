#!/usr/bin/env python3
"""Runs every fuzz target for a fixed time, one after another, and rewrites
the fuzz section of RELIABILITY.md (between <!-- fuzz:begin --> and
<!-- fuzz:end -->) with executions, exec/s, corpus size and crashes per
target. Called by `make fuzz`; see README "Fuzzing".

Each target runs single-process (libFuzzer's default: one job, one worker)
under `nice -n 19`, since the machine's cores are shared. New corpus units
go to fuzz/corpus/<target>/ (not committed); fuzz/seeds/<target>/ is read
as a second, read-only corpus. A crash leaves its input in
fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/ once fixed
(tests/fuzz_regressions.rs replays it under `make test`).

Exit status: 1 when any target crashed or could not run, else 0.
"""

import argparse
import datetime
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REPORT = os.path.join(ROOT, "RELIABILITY.md")
BEGIN, END = "<!-- fuzz:begin -->", "<!-- fuzz:end -->"
TARGETS = ["config", "mask", "signature", "trace", "channel", "principal", "dedup", "headers"]
GOAL = 10_000_000

# What each target checks (kept in step with fuzz/src/<target>.rs).
WHAT = {
    "config": "`config::check` (every error) and `config::load` (the first) agree; no panic; no error echoes a secret; accepted policies within the documented bounds",
    "mask": "JSON masker vs serde_json: invalid refused, valid never refused, masked output same structure, differs only at masked positions (keys case-insensitive unless `case_sensitive`, HMAC `hash`, detected numbers); `Masker::applies` to any JSON object/array body",
    "signature": "all 7 schemes (8 configs): `Ok` only with the right MAC/ed25519 signature (computed in the harness) and a fresh timestamp; harness-signed requests verify",
    "trace": "`traceparent` parse/ensure vs the W3C format",
    "channel": "`Policy::route` vs a lenient service's readings of the path (decoded 0-3 times, `;`, `\\`, dot segments, slashes, case) and host: a reading in a signed channel is routed there or refused, none under the guard passes, no stray match",
    "principal": "`spiffe_id` vs the SPIFFE ID grammar; `Principal::parse` vs the pattern grammar; `matches` vs a reference glob matcher; admission admits only well-formed IDs",
    "dedup": "delivery-id extraction for every scheme's source and `id_header`; `DedupPolicy::delivery_key` (id alone only where signed, else id + body digest)",
    "headers": "ABI map decoding and property paths (`core::abi_map`), `Headers::single_token`/`get`",
}


def run_target(target, seconds, runs_goal, max_len, sanitizer, cargo_fuzz):
    corpus = os.path.join(HERE, "corpus", target)
    seeds = os.path.join(HERE, "seeds", target)
    os.makedirs(corpus, exist_ok=True)
    cmd = [
        "nice", "-n", "19", *cargo_fuzz.split(), "fuzz", "run", "--sanitizer", sanitizer, target,
        corpus, seeds, "--",
        f"-max_total_time={seconds}", f"-runs={runs_goal}", f"-max_len={max_len}", "-timeout=10",
        "-rss_limit_mb=2048", "-print_final_stats=1",
    ]
    print("==>", " ".join(cmd), flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace")
    elapsed = time.monotonic() - started
    out = proc.stdout
    log_dir = os.path.join(HERE, "artifacts", target)
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "last-run.log"), "w") as f:
        f.write(out)
    stat = lambda name: int(m.group(1)) if (m := re.search(rf"stat::{name}:\s+(\d+)", out)) else None
    runs = stat("number_of_executed_units")
    if runs is None:
        done = re.findall(r"^#(\d+)\s", out, re.M)
        runs = int(done[-1]) if done else 0
    m = re.search(r"^Done \d+ runs in (\d+) second", out, re.M)
    secs = max(1, int(m.group(1)) if m else int(elapsed))
    crashed = proc.returncode != 0
    artifact = None
    if crashed:
        m = re.search(r"Test unit written to (\S+)", out)
        artifact = os.path.relpath(m.group(1), ROOT) if m else None
        tail = "\n".join(out.splitlines()[-30:])
        print(tail, flush=True)
    files = [f for f in os.listdir(corpus) if os.path.isfile(os.path.join(corpus, f))]
    return {
        "target": target,
        "runs": runs,
        "seconds": secs,
        "exec_s": stat("average_exec_per_sec") or (runs // secs),
        "corpus": len(files),
        "crashed": crashed,
        "artifact": artifact,
        "rc": proc.returncode,
    }


def regressions(target):
    d = os.path.join(HERE, "regressions", target)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def render(results, args):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rustc = subprocess.run(["rustc", "+nightly", "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    lines = [
        BEGIN,
        f"Generated by `make fuzz FUZZ_SECONDS={args.seconds} FUZZ_RUNS={args.runs}` on {now} ({rustc}, cargo-fuzz/libFuzzer, "
        f"sanitizer `{args.sanitizer}`, debug assertions and overflow checks on, one process per target "
        f"under `nice -n 19` on a shared 2-core machine, `-max_len={args.max_len}`; each target stops "
        f"after FUZZ_RUNS executions or FUZZ_SECONDS, whichever comes first).",
        "",
        "| target | what is checked | executions | seconds | exec/s | corpus | crashes | regressions kept |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| `{r['target']}` | {WHAT.get(r['target'], '')} | {r['runs']:,} | {r['seconds']:,} | {r['exec_s']:,} | "
            f"{r['corpus']} | {1 if r['crashed'] else 0} | {len(regressions(r['target']))} |"
        )
    lines.append("")
    short = [r for r in results if r["runs"] < GOAL]
    crashes = [r for r in results if r["crashed"]]
    if crashes:
        lines.append("**Crashes in this run** (inputs under `fuzz/artifacts/`; fix, then move to `fuzz/regressions/<target>/`):")
        lines.append("")
        for r in crashes:
            lines.append(f"- `{r['target']}`: exit {r['rc']}, input `{r['artifact']}`")
        lines.append("")
    if short:
        need = ", ".join(
            f"`{r['target']}` ~{-(-(GOAL - r['runs']) // max(1, r['exec_s'])):,} s" for r in short if not r["crashed"]
        )
        lines.append(
            f"Goal: {GOAL:,} executions per target with 0 crashes. Below it in this run: "
            f"{', '.join('`' + r['target'] + '`' for r in short)}. At the measured rates the rest takes "
            f"about: {need}; run e.g. `make fuzz FUZZ_TARGETS=<target> FUZZ_SECONDS=<s>` "
            "(each row shows a target's last run; its corpus in `fuzz/corpus/` is kept between runs)."
        )
        lines.append("")
    findings = os.path.join(HERE, "FINDINGS.md")
    if os.path.exists(findings):
        lines.append("### Findings")
        lines.append("")
        lines.append(open(findings).read().rstrip("\n"))
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_report(section):
    if os.path.exists(REPORT):
        text = open(REPORT).read()
    else:
        text = "# Reliability\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Fuzzing\n\n" + section + "\n"
    with open(REPORT, "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=300)
    p.add_argument("--runs", type=int, default=GOAL)
    p.add_argument("--targets", default=" ".join(TARGETS))
    p.add_argument("--max-len", type=int, default=4096)
    p.add_argument("--sanitizer", default="none")
    p.add_argument("--cargo", default="cargo")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--report-only", action="store_true",
                   help="re-render RELIABILITY.md from its current rows and fuzz/FINDINGS.md")
    args = p.parse_args()
    if args.report_only:
        write_report(render(merge_previous([]), args))
        return
    targets = args.targets.split()
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        sys.exit(f"unknown targets {unknown}; known: {TARGETS}")
    build = [*args.cargo.split(), "fuzz", "build", "--sanitizer", args.sanitizer]
    subprocess.run(["nice", "-n", "19"] + build, cwd=HERE, check=True)
    results = [run_target(t, args.seconds, args.runs, args.max_len, args.sanitizer, args.cargo) for t in targets]
    for r in results:
        print(f"{r['target']:>10}: {r['runs']:>12,} runs  {r['exec_s']:>8,} exec/s  corpus {r['corpus']:>5}  "
              f"{'CRASH ' + str(r['artifact']) if r['crashed'] else 'ok'}")
    if not args.no_report:
        # Keep the rows of targets not run this time from the last report.
        write_report(render(merge_previous(results), args))
        print(f"wrote {os.path.relpath(REPORT, ROOT)}")
    sys.exit(1 if any(r["crashed"] for r in results) else 0)


def merge_previous(results):
    """Rows of targets not run now are kept from the current report."""
    ran = {r["target"] for r in results}
    old = {}
    if os.path.exists(REPORT):
        text = open(REPORT).read()
        row = r"^\| `(\w+)` \| .*? \| ([\d,]+) \|(?: ([\d,]+) \|)? ([\d,]+) \| (\d+) \| (\d+) \| \d+ \|$"
        for m in re.finditer(row, text, re.M):
            num = lambda g: int((m.group(g) or "0").replace(",", ""))
            old[m.group(1)] = {
                "target": m.group(1), "runs": num(2), "seconds": num(3), "exec_s": num(4),
                "corpus": num(5), "crashed": m.group(6) != "0", "artifact": None, "rc": 0,
            }
    for r in old.values():
        # Rows written before the seconds column: take it from the run's log.
        log = os.path.join(HERE, "artifacts", r["target"], "last-run.log")
        if not r["seconds"] and os.path.exists(log):
            m = re.search(r"^Done \d+ runs in (\d+) second", open(log, errors="replace").read(), re.M)
            r["seconds"] = int(m.group(1)) if m else 0
    merged = [r for r in results]
    merged += [old[t] for t in TARGETS if t not in ran and t in old]
    order = {t: i for i, t in enumerate(TARGETS)}
    return sorted(merged, key=lambda r: order[r["target"]])


if __name__ == "__main__":
    main()
