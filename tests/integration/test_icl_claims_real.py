"""N2 (context narrows) and N3 (function vectors) on the bundled SmolLM2-135M-Instruct, with the quick battery's
settings of probes/concept_space.toml: both analyses run through the runner beside one untrained twin and the
spectrum-matched twin, give one primary test each and a verdict; wall and CPU time are printed (the machine is
shared, so time is reported, not asserted).

The numbers are printed (``pytest -s``) so that a run can be reported; what they say about the claims is for the
report, not for this test, which checks that the measurement is sound: the model, unlike its twins, does the
bundled tasks in context, and the statistics are finite and keyed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace

from conceptspace.resources import probes_dir
from conceptspace.suite import load_suite, run_suite
from conceptspace.theory._verdicts import NOT_RUN, VERDICTS

CLAIMS = ("N2", "N3")


def test_n2_and_n3_quick_on_smollm2():
    suite = load_suite(probes_dir() / "concept_space.toml")
    suite = replace(suite, analyses=tuple(a for a in suite.analyses if a.claim in CLAIMS),
                    claims={k: v for k, v in suite.claims.items() if k in CLAIMS}).for_run(quick=True)
    cpu = time.process_time()
    outcome = run_suite(suite, quick=True, progress=False)
    cpu = time.process_time() - cpu  # the machine is shared: wall time is reported, not asserted
    report: dict[str, object] = {}
    missing: list[str] = []
    for record in outcome.records:
        primary = [r for r in record.results if r.extra.get("role") == "primary"]
        if record.status != "ok" or len(primary) != 1:
            missing.append(f"{record.spec.id}: status {record.status} ({record.reason}), {len(primary)} primary")
            continue
        p = primary[0]
        if not (math.isfinite(p.statistic) and math.isfinite(p.effect_size) and 0 < p.p_value <= 1):
            missing.append(f"{record.spec.id}: non-finite primary {p.statistic} {p.effect_size} {p.p_value}")
        controls = {r.control: r for r in record.results if r.key.detail == p.key.detail
                    and r.key.method == p.key.method and r.site == p.site and r.control is not None}
        expected = {"untrained"} | ({"spectrum_matched"} if any(c["control"] == "spectrum_matched"
                                                               for c in outcome.controls) else set())
        missing.extend(f"{record.spec.id}: {c}" for c in expected - set(controls))
        report[record.spec.id] = {
            "seconds": round(record.seconds, 1),
            "primary": {"id": p.test_id, "statistic": p.statistic, "effect": p.effect_size, "ci": [p.ci_low, p.ci_high],
                        "p": p.p_value, "n_permutations": p.extra.get("n_permutations"),
                        "not_testable": p.extra.get("not_testable")},
            "controls": {c: {"effect": r.effect_size, "ci": [r.ci_low, r.ci_high], "p": r.p_value}
                         for c, r in controls.items()},
            "extra": {k: p.extra.get(k) for k in ("mean_lift_nats", "mean_lift_ci", "by_task", "own_gain_nats",
                                                  "own_gain_ci", "gain_matrix", "own_top_task_share")
                      if k in p.extra},
        }
    verdicts = {v.claim: (v.verdict, v.reason) for v in outcome.verdicts}
    report["verdicts"] = verdicts
    report["process_cpu_s_including_model_and_twins"] = round(cpu, 1)
    report["timings"] = outcome.timings
    print(json.dumps(report, indent=1, default=str))
    assert not missing, missing  # each analysis ran, one finite primary test, a counterpart on every control
    assert set(verdicts) == set(CLAIMS)
    assert all(v in VERDICTS and v != NOT_RUN for v, _ in verdicts.values())
    n2 = next(r for r in outcome.records if r.spec.claim == "N2")
    by_task = next(r for r in n2.results if r.extra.get("role") == "primary").extra["by_task"]
    assert "arbitrary" in by_task and all(t["n"] > 0 for t in by_task.values())
    # the model does the bundled tasks better with demonstrations than without (a sanity check of the prompts)
    tasks = [t for name, t in by_task.items() if name != "arbitrary"]
    assert sum(t["k_shot_top1"] for t in tasks) > sum(t["zero_shot_top1"] for t in tasks)
