"""Grounded rationales: every reason is a fact of the data, this example's own purchase left out."""

from __future__ import annotations

import pandas as pd

from components.reasoning.rationales import NO_REASON, Evidence, build_rationales, coverage, grounded_rationale

CATALOG = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d", "e"],
        "title": ["Acme steel wrench", "Acme brass valve", "Omega thermal sensor", "Zed tape", "Zed glue"],
        "description": ["a wrench", "a valve", "a sensor for heat", "tape rolls", "glue for tape rolls"],
        "brand": ["Acme", "Acme", "Omega", "Zed", "Zed"],
        "categories": ["Tools", "Plumbing", "Sensors", "", ""],
    }
)


def _train(rows):
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(len(rows))],
            "history": [h for h, _ in rows],
            "target": [t for _, t in rows],
        }
    )


def test_a_co_purchase_counts_only_other_customers():
    alone = Evidence.from_data(CATALOG, _train([(["c"], "d")]))
    text, kinds = grounded_rationale(["c"], "d", alone)
    assert "co-purchase" not in kinds  # the only c -> d purchase is this one
    shared = Evidence.from_data(CATALOG, _train([(["c"], "d"), (["c"], "d"), (["c"], "d")]))
    text, kinds = grounded_rationale(["c"], "d", shared)
    assert kinds[0] == "co-purchase" and text.startswith("Because 2 other customers bought it after Omega thermal")


def test_brand_terms_and_category_are_cited_when_the_data_holds_them():
    evidence = Evidence.from_data(CATALOG, _train([(["a"], "b")]))
    text, kinds = grounded_rationale(["a"], "b", evidence)
    assert "brand" in kinds and "Acme" in text
    text, kinds = grounded_rationale(["d"], "e", evidence)
    assert "brand" in kinds and ("terms" in kinds or "description" in kinds)
    text, kinds = grounded_rationale(["a"], "c", evidence)
    assert kinds == [] and text == NO_REASON  # nothing links a wrench to a sensor here: said so, not invented


def test_coverage_counts_rationales_with_a_concrete_reason():
    train = _train([(["a"], "b"), (["a"], "c"), (["d"], "e")])
    frame = build_rationales(train, Evidence.from_data(CATALOG, train))
    report = coverage(frame)
    assert report["rationales"] == 3 and report["coverage"] == 2 / 3
    assert report["by_kind"]["brand"] == round(2 / 3, 3) and NO_REASON in report["samples"]
