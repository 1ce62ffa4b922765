"""The project's errors: one base class, each kind carrying the exit code a stage uses.

Stage scripts and the CLI catch `EvolcoderError` once and turn it into one line on
stderr and a non-zero exit, so bad input never ends in a traceback or a half-written
output, and a wrapper script can tell "fix your params" (2) from "budget spent" (3).
"""

from __future__ import annotations


class EvolcoderError(Exception):
    """Base of every error the user can act on; `exit_code` is what a stage exits with."""

    exit_code = 1
    label = "error"


class ConfigError(EvolcoderError, ValueError):
    """A params value is missing, unknown or of the wrong type; the message names the key."""

    exit_code = 2


class DataError(EvolcoderError, ValueError):
    """Bad input data; the message starts with `file:line:`."""

    exit_code = 2


class ModelError(EvolcoderError, ValueError):
    """A model source that cannot be resolved or loaded; the message names it."""

    exit_code = 2


class TrainError(EvolcoderError, RuntimeError):
    """Fine-tuning cannot run as configured (e.g. dvclive without a git commit)."""

    exit_code = 2


class LLMError(EvolcoderError, RuntimeError):
    """A completion failed for good (after retries) or was rejected by the endpoint."""


class BudgetExhausted(EvolcoderError, RuntimeError):
    """`llm.max_calls` was reached; what was paid for is cached and a re-run continues."""

    exit_code = 3
    label = "stopped"


class DollarCapReached(BudgetExhausted):
    """`llm.budget_usd` would be crossed by the next request: a call-budget stop in dollars."""


class EndpointDown(EvolcoderError, RuntimeError):
    """The endpoint is unreachable or failing every request: the stage stops instead of grinding on.

    Everything answered so far is cached, so a re-run once the endpoint is back continues
    where this one stopped; exit code 4 tells a wrapper "transient, try again later".
    """

    exit_code = 4
    label = "stopped"


class RoundIncomplete(EvolcoderError, RuntimeError):
    """Items failed transiently: the round is not written, and a re-run retries only those."""

    exit_code = 4
    label = "incomplete"


class BatchesInFlight(EvolcoderError, RuntimeError):
    """`llm.batch_wait: false`: batches were submitted (or are still running) and nothing is written.

    Its own exit code (5) lets a wrapper tell "come back later" from a failure; DVC records
    nothing, so the next `dvc repro` consumes the finished batches from where this one left.
    """

    exit_code = 5
    label = "waiting"
