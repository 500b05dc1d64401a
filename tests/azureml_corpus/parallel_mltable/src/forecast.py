"""One forecast per store and brand (Azure ML's "many models"): each mini-batch is every row of
one partition, so the mean over it is that partition's own."""

import logging


def run(mini_batch):
    # A DataFrame where pandas is installed in the step's environment, else a list of dict rows.
    rows = mini_batch.to_dict("records") if hasattr(mini_batch, "to_dict") else mini_batch
    partitions = {(str(r["store"]), str(r["brand"])) for r in rows}
    if len(partitions) != 1:
        raise ValueError(f"a mini-batch mixes partitions: {sorted(partitions)}")
    ((store, brand),) = partitions
    forecast = sum(float(r["quantity"]) for r in rows) / len(rows)
    logging.getLogger("forecast").info("store %s brand %s: %d weeks", store, brand, len(rows))
    return [f"{store} {brand} week {r['week']} forecast {forecast:g}" for r in rows]
