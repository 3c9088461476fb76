"""torchrun entry for the two-process budget-stop test: ``python -m lora_forecast`` where rank 0's
prediction (hence its ledger reservation) covers only 2 training steps.

Only rank 0 is shortened: rank 1 keeps the full prediction and would go on training, so the run
ends at step 2 only if rank 0's budget verdict reaches it (else rank 1 waits in the next step's
allreduce and the launch hangs until the test's timeout). The planner is exact, so no honest
config makes a reservation run out; this fault injection is the test's, not the product's.
"""

from __future__ import annotations

import dataclasses
import os

from lora_forecast import task
from lora_forecast.__main__ import cli
from lora_forecast.planning import predict_cost

TRAIN_STEPS_RESERVED = 2


def short_prediction(settings, arch=None):
    full = predict_cost(settings, arch)
    return dataclasses.replace(full, training=TRAIN_STEPS_RESERVED * full.per_train_step)


if __name__ == "__main__":
    if os.environ.get("RANK") == "0":
        task.predict_cost = short_prediction
    cli()
