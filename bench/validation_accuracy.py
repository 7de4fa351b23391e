"""Validation accuracy (issue 7): recall, precision and false flags of the tiered validator on
the simulators' market with labelled faults, and what tier 1 costs per tick.

    .venv/bin/python bench/validation_accuracy.py [--ticks 1000000] [--fault-rate 0.01]
        [--seed 1] [--instruments 1800] [--quick] [--clean-only | --faults-only]

What runs, all in one process on a virtual clock (so a million ticks take minutes):

* the simulators' ``MarketModel`` over ~1,800 sample-master instruments carried by both
  providers (indices, equities, futures, options; ``_validation_sim.choose_universe``),
  stepped every 50 ms of virtual time until ``--ticks`` market ticks; each market tick goes to
  both providers, so the validator sees about twice as many ticks;
* the simulators' ``FaultInjector`` with labelled faults at ``--fault-rate`` of the provider
  ticks, 1/13 per kind: eleven per-tick kinds as rate rules, divergence and lag as windows of
  a few seconds on one provider and three instruments, renewed as time goes on;
* each emission through the provider's real server encoding and client decoding
  (``_validation_sim.FyersPipe`` / ``UpstoxPipe``: FYERS second-resolution times and int32
  fields, Upstox protobuf doubles), receipt time from the virtual clock (a lagged tick's is
  its release), the canonical key set as the client does;
* the validator (``validation.engine.Validator``) built as ``validation.runtime`` builds it
  (``--specs-via constructor`` passes the specs to ``Tier1`` instead of ``set_specs``), every
  symbol at the deep tier so all three tiers run: the inline hook per frame, the deferred
  stage after each step (as the worker's task would, never behind), sweeps every virtual
  second, ``flush()`` at the end. No REST re-check: it needs the L3 client, and it only adds
  a flag to ticks already flagged.

Then a clean run: the same market and seed without faults. A tick counts as flagged when its
final ``flags`` are non-zero, attributed to the lowest tier among its checks. Printed: per
fault kind injected / no visible change / not delivered / visible / detected, recall (per
provider too), detections by tier, the checks that caught it and the instrument types it was
missed on; per tier recall, precision and false-flag rate; false flags of both runs with their
top checks; time per tick of tier 1 (``stats.inline_ns / stats.inline``: tier 1 and tier 2's
inline marks), of the client decode in the same run (the baseline), and of the deferred stage.
Last line: one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _validation_score import (
    Ledger,
    false_flag_lines,
    fault_table,
    pct,
    tier_table,
)
from _validation_sim import (
    ALL_KINDS,
    MAX_LAG,
    WINDOW_KEYS,
    FaultPlan,
    Frames,
    FyersPipe,
    GcTimer,
    Pipe,
    UpstoxPipe,
    VirtualClock,
    choose_universe,
    describe_universe,
)
from tqdm import tqdm

from feeds.providers.simulation.faults import FaultInjector
from feeds.providers.simulation.market import MarketModel
from feeds.providers.simulation.universe import (
    INDEX_UNDERLYINGS,
    SimInstrument,
    underlying_key,
)
from validation.accuracy import AccuracyTracker
from validation.checks import ValidationTier
from validation.engine import Validator
from validation.sessions import SessionCalendar
from validation.tier1 import InstrumentSpec, Tier1
from validation.tier2 import Tier2, Tier2Config

# Monday 2026-11-23 09:30 IST: inside the session, whichever calendar the validator uses.
START_NS = int(datetime(2026, 11, 23, 4, 0, tzinfo=UTC).timestamp()) * 1_000_000_000
SWEEP_NS = 1_000_000_000  # the worker's sweep interval


@dataclass(slots=True)
class RunResult:
    faults: bool
    ledger: Ledger
    validator: Validator
    pipes: tuple[Pipe, ...]
    market_ticks: int
    virtual_seconds: float
    wall_seconds: float
    windows: int
    gc_timer: GcTimer
    inline_gc_ns: int  # garbage collections that ran inside the validator's inline hook
    deferred_gc_ns: int  # ... inside its deferred stage


def specs_for(universe: list[SimInstrument]) -> dict[str, InstrumentSpec]:
    index_keys = set(INDEX_UNDERLYINGS.values())
    return {
        inst.key: InstrumentSpec(
            key=inst.key,
            instrument_type=inst.instrument_type,
            exchange=inst.exchange,
            segment=inst.segment,
            tick_size=inst.tick_size,
            tier=ValidationTier.DEEP,
            underlying_is_index=underlying_key(inst) in index_keys,
        )
        for inst in universe
    }


def build_validator(
    specs: dict[str, InstrumentSpec], clock: VirtualClock, specs_via: str
) -> Validator:
    """As ``validation.runtime.validator_build`` with the default settings (market hours
    "always", as with the simulators), then the specs as ``runtime._load`` gives them."""
    tier1 = Tier1(
        calendar=SessionCalendar(always_open=True),
        specs=specs if specs_via == "constructor" else None,
    )
    validator = Validator(
        tier1=tier1,
        tier2=Tier2(config=Tier2Config(discrepancy_bps=100.0)),
        tracker=AccuracyTracker(quiet=5.0, target=0.995, min_comparisons=200),
        clock=clock.ns,
    )
    if specs_via == "set_specs":
        validator.set_specs(specs)
    return validator


def run(
    args: argparse.Namespace,
    universe: list[SimInstrument],
    rates: dict[str, float],
    *,
    faults: bool,
) -> RunResult:
    started = time.perf_counter()
    clock = VirtualClock(START_NS)
    model = MarketModel(universe, seed=args.seed, rates=rates, clock=clock)
    ledger = Ledger(ALL_KINDS, universe)
    injector = FaultInjector(seed=args.seed, log_limit=1, sink=ledger.injected, clock=clock)
    plan = FaultPlan(injector, universe, rates, args.fault_rate, args.seed) if faults else None
    validator = build_validator(specs_for(universe), clock, args.specs_via)
    gc_timer = GcTimer()
    pipes: tuple[Pipe, ...] = (
        FyersPipe(universe, clock.ns, gc_timer),
        UpstoxPipe(universe, clock.ns, gc_timer),
    )
    symbols = {pipe.provider: {i.key: pipe.symbol(i) for i in universe} for pipe in pipes}
    in_gc = {"inline": 0, "deferred": 0}

    def deliver(pipe: Pipe, frames: Frames) -> None:
        for frame, group in frames:
            pairs = ledger.match(pipe.decode(frame), group, symbols[pipe.provider])
            ledger.delivered(pairs)
            gc_before = gc_timer.ns
            validator([tick for tick, _ in pairs])  # the worker's hook: one call per frame
            in_gc["inline"] += gc_timer.ns - gc_before

    def process() -> None:
        gc_before = gc_timer.ns
        validator.process()
        in_gc["deferred"] += gc_timer.ns - gc_before

    def step(market: bool) -> int:
        clock.advance()
        now = clock()
        quotes = model.step(now) if market else []
        late = injector.due(now)
        if plan is not None:
            plan.offered += len(quotes) * len(pipes)
            plan.renew(now)
        now_ms = clock.now_ns // 1_000_000
        for pipe in pipes:  # FYERS first, as the hub steps its simulators
            name = str(pipe.provider)
            emissions = [e for quote in quotes for e in injector.apply(name, quote)]
            emissions += [e for e in late if e.label is not None and e.label.provider == name]
            deliver(pipe, pipe.encode(emissions, now_ms))
        process()
        ledger.settle()
        return len(quotes)

    for pipe in pipes:  # subscription snapshots
        deliver(pipe, pipe.snapshot(model, clock.now_ns // 1_000_000))
    process()
    next_sweep = clock.now_ns + SWEEP_NS
    title = "fault run" if faults else "clean run"
    with tqdm(total=args.ticks, desc=title, unit="tick", unit_scale=True, file=sys.stderr,
              mininterval=1.0, disable=args.no_progress) as bar:  # fmt: skip
        while model.ticks_total < args.ticks:
            bar.update(step(market=True))
            if clock.now_ns >= next_sweep:
                validator.sweep(now_ns=clock.now_ns)
                next_sweep += SWEEP_NS
    market_end = clock.now_ns
    drain_until = clock.now_ns + int((MAX_LAG + 1) * 1e9)  # lagged ticks still held back
    while clock.now_ns < drain_until:
        step(market=False)
    validator.flush()
    ledger.settle_all()
    gc_timer.close()
    return RunResult(
        faults=faults,
        ledger=ledger,
        validator=validator,
        pipes=pipes,
        market_ticks=model.ticks_total,
        virtual_seconds=(market_end - START_NS) / 1e9,
        wall_seconds=time.perf_counter() - started,
        windows=plan.windows if plan is not None else 0,
        gc_timer=gc_timer,
        inline_gc_ns=in_gc["inline"],
        deferred_gc_ns=in_gc["deferred"],
    )


# --- report -----------------------------------------------------------------------------------


def us(ns: float, count: int) -> float:
    return ns / count / 1000 if count else 0.0


def timing_lines(result: RunResult) -> tuple[list[str], dict[str, float]]:
    """Per-tick times without the garbage collections that ran inside each section (in
    parentheses: with them)."""
    stats = result.validator.stats
    inline, inline_gc = us(stats.inline_ns, stats.inline), us(result.inline_gc_ns, stats.inline)
    ticks = sum(p.ticks for p in result.pipes)
    decode = us(sum(p.decode_ns for p in result.pipes), ticks)
    decode_gc = us(sum(p.decode_gc_ns for p in result.pipes), ticks)
    deferred = us(stats.deferred_ns, stats.deferred)
    deferred_gc = us(result.deferred_gc_ns, stats.deferred)
    per_provider = ", ".join(
        f"{p.provider} {us(p.decode_ns - p.decode_gc_ns, p.ticks):.2f}" for p in result.pipes
    )
    gc_timer = result.gc_timer
    net_inline, net_decode = inline - inline_gc, decode - decode_gc
    net_deferred = deferred - deferred_gc
    lines = [
        f"tier 1 inline: {net_inline:.2f} µs/tick = {net_inline / net_decode:.2f} x the client "
        f"decode ({net_decode:.2f} µs/tick: {per_provider}), measured in the same run over "
        f"{stats.inline:,} ticks; it includes tier 2's inline marks and the hook's overhead",
        f"deferred stage (tier 2 comparison, tier 3 filters): {net_deferred:.2f} µs/tick, "
        f"{net_deferred:.1f} ms per batch of 1,000 ({net_deferred / 50:.0%} of tier 3's 50 ms "
        f"budget); {stats.late_verdicts:,} late verdicts, {stats.dropped} ticks dropped",
        f"with the garbage collections that ran inside them: tier 1 {inline:.2f}, decode "
        f"{decode:.2f}, deferred {deferred:.2f} µs/tick; the collector took "
        f"{gc_timer.ns / 1e9:.1f} s of the run's {result.wall_seconds:.0f} s wall "
        f"({'/'.join(map(str, gc_timer.collections))} collections of generations 0/1/2)",
    ]
    figures = {
        "tier1_us": round(net_inline, 3),
        "tier1_with_gc_us": round(inline, 3),
        "decode_us": round(net_decode, 3),
        "deferred_us": round(net_deferred, 3),
        "gc_share": round(gc_timer.ns / 1e9 / result.wall_seconds, 3),
    }
    return lines, figures


def run_lines(result: RunResult) -> str:
    delivered = sum(p.ticks for p in result.pipes)
    by_provider = ", ".join(f"{p.provider} {p.ticks:,}" for p in result.pipes)
    undeliverable = sum(p.undeliverable for p in result.pipes)
    return (
        f"{result.market_ticks:,} market ticks over {result.virtual_seconds:.0f} virtual s; "
        f"{delivered:,} ticks delivered ({by_provider}; snapshots included); "
        f"{undeliverable} emissions the FYERS encoding could not carry; "
        f"{len(result.validator.overrides)} symbols escalated; "
        f"wall {result.wall_seconds:.0f} s"
        + (f"; {result.windows} divergence/lag windows" if result.faults else "")
    )


def report(
    args: argparse.Namespace,
    universe: list[SimInstrument],
    rates: dict[str, float],
    fault: RunResult | None,
    clean: RunResult | None,
) -> None:
    out: list[str] = [
        f"Validation accuracy (issue 7): seed {args.seed}, {args.ticks:,} market ticks per run, "
        f"each delivered by both providers; fault rate {100 * args.fault_rate:.2f} % of provider "
        "ticks, "
        f"1/{len(ALL_KINDS)} per kind",
        "Universe: " + describe_universe(universe, rates),
        "Wire: every emission through the real server encoding and client decoding, in "
        "process: FYERS sf/if U packets (full mode, whole-second times) -> FyersDecoder; "
        "Upstox 'full' feeds in FeedResponse frames (a key at most once per frame) -> "
        "UpstoxDecoder",
        f"Validator: built as validation.runtime does (specs via {args.specs_via}), every symbol "
        "at tier DEEP (1-3), market hours 'always' (the simulators' setting), Tier2 threshold "
        "100 bps, no REST re-check",
        f"Faults: divergence and lag as windows of {WINDOW_KEYS} instruments on one provider "
        "(±2-5 % / 2-5 s, 5-15 s long); 'no change' = labelled but a client sees the clean "
        "tick (e.g. a spike that rounds back to the same price), 'not deliv.' = labelled but "
        "never delivered; both are left out of recall and precision",
        "",
    ]
    summary: dict[str, object] = {"seed": args.seed, "ticks_per_run": args.ticks,
                                  "fault_rate": args.fault_rate,
                                  "specs_via": args.specs_via}  # fmt: skip
    if fault is not None:
        ledger = fault.ledger
        tot = ledger.totals()
        flagged_labelled = tot["detected"]
        precision = flagged_labelled / (flagged_labelled + tot["false_flags"]) if (
            flagged_labelled + tot["false_flags"]) else 0.0  # fmt: skip
        out += [
            "Fault run: " + run_lines(fault),
            "",
            fault_table(ledger),
            "",
            f"Overall recall {pct(tot['detected'], tot['visible'])} ({tot['detected']:,} of "
            f"{tot['visible']:,} visible faults); precision {100 * precision:.2f} % (flagged "
            "labelled / "
            f"all flagged); {tot['flagged_invisible']} labelled ticks without a visible "
            "change were flagged (not counted either way)",
        ]
        out += false_flag_lines(ledger, "False flags, fault run")
        lines, figures = timing_lines(fault)
        summary.update(
            recall=round(tot["detected"] / tot["visible"], 5) if tot["visible"] else None,
            precision=round(precision, 5),
            false_flag_rate_fault_run=round(tot["false_flags"] / tot["clean"], 6),
            visible_faults=tot["visible"],
            detected=tot["detected"],
            recall_by_kind={
                str(k): round(sum(t.detected.values()) / sum(t.visible.values()), 4)
                if sum(t.visible.values())
                else None
                for k, t in zip(ledger.kinds, ledger.faults, strict=True)
            },
            delivered_fault_run=sum(p.ticks for p in fault.pipes),
            wall_s_fault_run=round(fault.wall_seconds, 1),
        )
    if clean is not None:
        out += ["", "Clean run: " + run_lines(clean)]
        out += false_flag_lines(clean.ledger, "False flags, clean run")
        tot = clean.ledger.totals()
        clean_lines, clean_figures = timing_lines(clean)
        summary.update(
            false_flag_rate_clean_run=round(tot["false_flags"] / tot["clean"], 6),
            delivered_clean_run=sum(p.ticks for p in clean.pipes),
            wall_s_clean_run=round(clean.wall_seconds, 1),
        )
        if fault is None:
            lines, figures = clean_lines, clean_figures
    out += [
        "",
        "Per tier (a tick counts for every tier with a check set on it):",
        tier_table(fault.ledger if fault else None, clean.ledger if clean else None),
    ]
    timed = "fault run" if fault is not None else "clean run"
    out += ["", f"Time per tick ({timed}):"] + ["  " + line for line in lines]
    summary.update(figures)
    summary["unmatched_ticks"] = sum(r.ledger.unmatched for r in (fault, clean) if r is not None)
    print("\n".join(out))
    print(json.dumps(summary, sort_keys=True))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=1_000_000, help="market ticks per run")
    parser.add_argument("--fault-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--instruments", type=int, default=1800, help="universe size")
    parser.add_argument("--quick", action="store_true", help="100k ticks: a smoke run")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--clean-only", action="store_true")
    which.add_argument("--faults-only", action="store_true")
    parser.add_argument("--specs-via", choices=("set_specs", "constructor"), default="set_specs",
                        help="how the validator gets its specs (runtime: set_specs)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.ticks = 100_000
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.getLogger("validation").setLevel(logging.ERROR)  # escalations are counted instead
    universe, rates = choose_universe(args.instruments, args.seed)
    fault = None if args.clean_only else run(args, universe, rates, faults=True)
    clean = None if args.faults_only else run(args, universe, rates, faults=False)
    report(args, universe, rates, fault, clean)


if __name__ == "__main__":
    main()
