"""What the workshop costs on Google Cloud: the published prices, and the arithmetic from a measured CPU time.

Step 7 (its page and its notebook) measures how much CPU one prediction takes on the learner's machine, then
turns it into dollars with these functions: 1,000 predictions, an idle service at ``--min-instances`` 0
and 1, and the whole class for one learner. The prices are list prices in USD for a Tier 1 region
(``europe-west1``, where the kit deploys) with Cloud Run's default request-based billing; each says where
it was read and when, because they change. Free tiers are left out of the sums on purpose (they belong to
the billing account, and other projects may use them up); :func:`within_free_tier` says whether a month of
a given use would fit in Cloud Run's.

Nothing here calls the cloud or the network: it only multiplies. Not imported by the core or the API.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "IMAGES_GB",
    "PRICES",
    "Instance",
    "Prices",
    "class_cost",
    "dollars",
    "idle_cost",
    "notebook_markdown",
    "predictions_cost",
    "prices_table",
    "summary",
    "table",
    "within_free_tier",
]

#: The two images as the kit measured them (README: backend runtime ~400 MB, frontend ~460 MB, unpacked);
#: the registry stores them compressed, so this is an upper bound of what Artifact Registry bills.
IMAGES_GB = 0.86


@dataclass(frozen=True)
class Prices:
    """List prices in USD: Cloud Run in a Tier 1 region with request-based billing, and what stays stored."""

    vcpu_second: float = 0.000024  # one vCPU of an instance, per second it handles requests (or starts)
    gib_second: float = 0.0000025  # one GiB of its memory, the same seconds
    idle_vcpu_second: float = 0.0000025  # an instance kept by --min-instances, per second it waits idle
    idle_gib_second: float = 0.0000025
    per_request: float = 0.40 / 1_000_000
    billing_step: float = 0.1  # an instance's billed time is rounded up to the next 100 ms
    free_vcpu_seconds: float = 180_000  # Cloud Run's free tier, per billing account and month
    free_gib_seconds: float = 360_000
    free_requests: float = 2_000_000
    registry_gb_month: float = 0.10  # Artifact Registry, stored images beyond 0.5 GB free per billing account
    bucket_gb_month: float = 0.026  # Cloud Storage Standard, US multi-region: Cloud Build's default bucket
    build_minute: float = 0.006  # Cloud Build, default e2-standard-2 machine, beyond 2,500 free minutes a month
    read_on: str = "2026-11-29"
    sources: tuple[str, ...] = (
        "https://cloud.google.com/run/pricing",
        "https://cloud.google.com/artifact-registry/pricing",
        "https://cloud.google.com/storage/pricing",
        "https://cloud.google.com/build/pricing",
    )


PRICES = Prices()


@dataclass(frozen=True)
class Instance:
    """The size of one Cloud Run instance: its ``--cpu`` and ``--memory``."""

    vcpus: float
    memory_gib: float

    @classmethod
    def of(cls, command: Sequence[str]) -> Instance:
        """The size a ``gcloud run deploy`` command asks for (``--cpu=2``, ``--memory=1Gi`` or ``512Mi``)."""
        flags = dict(arg.split("=", 1) for arg in command if arg.startswith("--") and "=" in arg)
        memory = flags["--memory"]
        gib = float(memory.removesuffix("Gi")) if memory.endswith("Gi") else float(memory.removesuffix("Mi")) / 1024
        return cls(float(flags["--cpu"]), gib)

    def per_second(self, prices: Prices = PRICES) -> float:
        """What the instance costs per second while it handles at least one request."""
        return self.vcpus * prices.vcpu_second + self.memory_gib * prices.gib_second

    def idle_per_second(self, prices: Prices = PRICES) -> float:
        """What it costs per second while ``--min-instances`` keeps it waiting with no request."""
        return self.vcpus * prices.idle_vcpu_second + self.memory_gib * prices.idle_gib_second


def predictions_cost(
    count: int, cpu_seconds: float, instance: Instance, prices: Prices = PRICES, *, alone: bool = False
) -> float:
    """The cost of ``count`` predictions that take ``cpu_seconds`` of CPU each.

    Busy (the default): requests keep every vCPU of the instance working, so each prediction holds the
    instance for ``cpu_seconds / vcpus``. Alone: one request now and then; each holds the whole instance
    for at least one billing step (100 ms), however little CPU it needs.
    """
    seconds = cpu_seconds / instance.vcpus
    if alone:
        seconds = max(1, math.ceil(seconds / prices.billing_step - 1e-9)) * prices.billing_step
    return count * (seconds * instance.per_second(prices) + prices.per_request)


def idle_cost(hours: float, instance: Instance, min_instances: int, prices: Prices = PRICES) -> float:
    """The cost of ``hours`` with no request: nothing at ``--min-instances=0``, the idle rate above it."""
    return min_instances * hours * 3600 * instance.idle_per_second(prices)


def class_cost(
    cpu_seconds: float,
    backend: Instance,
    frontend: Instance,
    prices: Prices = PRICES,
    *,
    predictions: int = 200,
    cold_starts: int = 5,
    start_seconds: float = 10.0,
    ui_hours: float = 1.0,
    stored_days: float = 1.0,
    build_minutes: float = 0.0,
) -> dict[str, float]:
    """One learner's class, item by item (USD, list prices, no free tier), from step 6's deploy to step 7's clean-up.

    Args:
        cpu_seconds: the measured CPU time of one prediction.
        backend, frontend: the two services' instance sizes.
        predictions: requests the learner sends to the backend, one at a time (the UI, the checks).
        cold_starts: times an instance starts (each deploy, each call after the service scaled to zero),
            ``start_seconds`` each (image pull and model load; the startup is billed).
        ui_hours: hours a browser keeps the deployed UI open: Streamlit's websocket is a request in
            progress, so the frontend's instance is billed all that time.
        stored_days: days the images stay in Artifact Registry before the clean-up.
        build_minutes: Cloud Build minutes, if the images were built there (0: built locally).
    """
    return {
        f"{predictions} predictions, one at a time": predictions_cost(
            predictions, cpu_seconds, backend, prices, alone=True
        ),
        f"{cold_starts} cold starts of {start_seconds:.0f} s": cold_starts * start_seconds * backend.per_second(prices),
        f"the deployed UI open for {ui_hours:g} h": ui_hours * 3600 * frontend.per_second(prices),
        f"{IMAGES_GB} GB of images stored {stored_days:g} day(s)": IMAGES_GB
        * prices.registry_gb_month
        * stored_days
        / 30,
        f"{build_minutes:g} minutes of Cloud Build": build_minutes * prices.build_minute,
    }


def within_free_tier(vcpu_seconds: float, gib_seconds: float, requests: float, prices: Prices = PRICES) -> bool:
    """True when a month of this use fits in Cloud Run's free tier (one billing account, nothing else on it)."""
    return (
        vcpu_seconds <= prices.free_vcpu_seconds
        and gib_seconds <= prices.free_gib_seconds
        and requests <= prices.free_requests
    )


def summary(cpu_seconds: float, backend: Instance, frontend: Instance, prices: Prices = PRICES) -> dict[str, float]:
    """The figures step 7 shows, from one measured CPU time per prediction (USD, list prices)."""
    return {
        "1,000 predictions, queued (every vCPU busy)": predictions_cost(1000, cpu_seconds, backend, prices),
        "1,000 predictions, one at a time": predictions_cost(1000, cpu_seconds, backend, prices, alone=True),
        "the backend idle for a day, --min-instances=0": idle_cost(24, backend, 0, prices),
        "the backend idle for a day, --min-instances=1": idle_cost(24, backend, 1, prices),
        "the backend idle for a month (730 h), --min-instances=1": idle_cost(730, backend, 1, prices),
        "one learner's class (the items below)": sum(class_cost(cpu_seconds, backend, frontend, prices).values()),
    }


def dollars(amount: float) -> str:
    """``$0.0016`` below a cent (four decimals: the order of magnitude is the lesson), else ``$19.71``."""
    return f"${amount:.4f}" if 0 < amount < 0.01 else f"${amount:,.2f}"


def table(figures: dict[str, float]) -> str:
    """A two-column Markdown table of ``figures``: what, and what it costs."""
    rows = [f"| {what} | {dollars(amount)} |" for what, amount in figures.items()]
    return "\n".join(["| what | costs |", "|---|---:|", *rows])


def prices_table(prices: Prices = PRICES) -> str:
    """The prices the sums use, as a Markdown table (what step 7 quotes, with its source and date)."""
    rows = [
        ("Cloud Run: one vCPU, per second it handles requests", prices.vcpu_second),
        ("Cloud Run: one GiB of memory, per second it handles requests", prices.gib_second),
        ("Cloud Run: one vCPU kept idle by `--min-instances`, per second", prices.idle_vcpu_second),
        ("Cloud Run: one GiB kept idle by `--min-instances`, per second", prices.idle_gib_second),
        ("Cloud Run: one million requests", prices.per_request * 1_000_000),
        ("Artifact Registry: one GB of images for a month (beyond 0.5 GB)", prices.registry_gb_month),
        ("Cloud Storage, Standard, US multi-region: one GB for a month", prices.bucket_gb_month),
        ("Cloud Build, e2-standard-2: one minute (beyond 2,500 a month)", prices.build_minute),
    ]
    lines = []
    for what, amount in rows:
        text = f"{amount:.7f}".rstrip("0")  # as published: $0.0000025, and at least cents: $0.40
        lines.append(f"| {what} | ${text.ljust(text.index('.') + 3, '0')} |")
    return "\n".join(["| price | USD |", "|---|---:|", *lines])


def notebook_markdown(markdown: str) -> str:
    """``markdown`` for a notebook's ``Markdown(...)``: each ``$`` escaped, so that it stays a dollar sign.

    JupyterLab (and VS Code) read the text between two ``$`` as LaTeX math: a row of two amounts would
    come out as one italic formula. The workshop's pages (MkDocs, no math extension) take the plain text.
    """
    return markdown.replace("$", r"\$")
