"""Report table: walking conditions (per condition, samples recognised as the person and as the condition)."""

from __future__ import annotations

from typing import Any

from dopplerdiff.evaluate.report_html import table


def conditions_section(m: dict[str, Any]) -> str:
    """HTML table of metrics.json ``conditions`` ('' for a run without walking conditions)."""
    rows = m.get("conditions")
    if not rows:
        return ""
    body = [[r["condition"], r["people"], r["real_test"], r["samples"], r["identity_accuracy"]["real_test"],
             r["identity_accuracy"]["generated"], r["condition_accuracy"]["real_test"],
             r["condition_accuracy"]["generated"], r["fd_gen_vs_test"]] for r in rows]
    note = ("<p class='note'>Samples are drawn in each condition for the people with real test windows in it "
            "(same seeds in every condition). Identity accuracy: the run's encoder. Condition accuracy: a "
            "judge-architecture classifier of the walking condition trained on real training windows only; a "
            "sample recognised as its condition carries the condition's signature. FD: encoder features, "
            "samples vs the condition's real test windows.</p>")
    header = ["condition", "people", "real test", "samples", "identity acc. real", "identity acc. samples",
              "condition acc. real", "condition acc. samples", "FD samples vs test"]
    return table(header, body) + note
