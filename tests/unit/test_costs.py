"""The cost lesson of step 7: the arithmetic, and the page's figures are the ones the code computes."""

from __future__ import annotations

import re

import pytest

from tests.helpers import ROOT
from yolo_service.workshop import costs, deploy

CONFIG = deploy.DeployConfig(project="p")
BACKEND = costs.Instance.of(deploy.deploy_backend_command(CONFIG))
FRONTEND = costs.Instance.of(deploy.deploy_frontend_command(CONFIG, "https://backend"))
PAGE = (ROOT / "workshop" / "07_going_further.md").read_text()


def test_instance_sizes_come_from_the_deploy_commands():
    assert (BACKEND.vcpus, BACKEND.memory_gib) == (2, 1)
    assert (FRONTEND.vcpus, FRONTEND.memory_gib) == (1, 0.5)


def test_busy_predictions_share_the_instance_and_lone_ones_pay_a_whole_billing_step():
    # 2 vCPUs at $0.000024 and 1 GiB at $0.0000025: $0.0000505 per instance-second, plus $0.40 per million requests.
    assert BACKEND.per_second() == pytest.approx(0.0000505)
    assert costs.predictions_cost(1000, 0.046, BACKEND) == pytest.approx(1000 * (0.023 * 0.0000505 + 0.0000004))
    assert costs.predictions_cost(1000, 0.046, BACKEND, alone=True) == pytest.approx(1000 * (0.1 * 0.0000505 + 4e-7))
    # 250 ms of CPU on 2 vCPUs holds the instance 125 ms: billed as 200 ms.
    assert costs.predictions_cost(1, 0.25, BACKEND, alone=True) == pytest.approx(0.2 * 0.0000505 + 4e-7)
    assert costs.predictions_cost(1, 0.2, BACKEND, alone=True) == pytest.approx(0.1 * 0.0000505 + 4e-7)


def test_an_idle_service_costs_nothing_at_min_instances_0_and_the_idle_rate_at_1():
    assert costs.idle_cost(730, BACKEND, 0) == 0
    assert costs.idle_cost(730, BACKEND, 1) == pytest.approx(730 * 3600 * 3 * 0.0000025)  # $19.71
    assert costs.dollars(costs.idle_cost(730, BACKEND, 1)) == "$19.71"
    assert costs.dollars(0.0015615) == "$0.0016" and costs.dollars(0) == "$0.00"


def test_a_class_within_the_free_tier():
    items = costs.class_cost(0.046, BACKEND, FRONTEND)
    assert items["the deployed UI open for 1 h"] == pytest.approx(3600 * (0.000024 + 0.5 * 0.0000025))
    assert costs.within_free_tier(vcpu_seconds=3600 * 3, gib_seconds=3600 * 2, requests=10_000)
    assert not costs.within_free_tier(vcpu_seconds=730 * 3600 * 2, gib_seconds=0, requests=0)


def test_the_page_quotes_the_prices_with_their_date_and_sources():
    assert costs.prices_table() in PAGE
    assert f"read on {costs.PRICES.read_on}" in PAGE
    assert all(f"]({source})" in PAGE for source in costs.PRICES.sources)


def test_the_page_figures_are_what_the_code_computes_from_the_measured_cpu_time():
    cpu_ms = int(re.search(r"(\d+) ms of CPU per prediction", PAGE)[1])
    assert costs.table(costs.summary(cpu_ms / 1000, BACKEND, FRONTEND)) in PAGE
    assert costs.table(costs.class_cost(cpu_ms / 1000, BACKEND, FRONTEND)) in PAGE


def test_the_notebook_measures_and_computes_with_the_same_code():
    import nbformat

    code = "\n".join(
        c.source for c in nbformat.read(ROOT / "notebooks" / "07_going_further.ipynb", 4).cells if c.cell_type == "code"
    )
    assert "bench.cpu_seconds(backend.pid)" in code
    assert "costs.summary(" in code and "costs.class_cost(" in code


def test_the_notebook_shows_the_dollar_amounts_as_text_not_as_latex_math():
    # Jupyter reads the text between two unescaped `$` as math: "| $0.0013 | ... | $0.0055 |" became a formula.
    import nbformat

    shown = costs.notebook_markdown(costs.table(costs.summary(0.046, BACKEND, FRONTEND)))
    assert re.findall(r"(?<!\\)\$", shown) == [] and r"\$0.0016" in shown
    assert re.findall(r"(?<!\\)\$", costs.notebook_markdown(costs.prices_table())) == []
    code = "\n".join(
        c.source for c in nbformat.read(ROOT / "notebooks" / "07_going_further.ipynb", 4).cells if c.cell_type == "code"
    )
    displayed = re.findall(r"display\(Markdown\((.*)\)\)", code)
    assert displayed and all(arg.startswith("costs.notebook_markdown(") for arg in displayed if "table(" in arg), (
        displayed
    )
