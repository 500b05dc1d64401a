"""Counts each mini-batch's rows: a DataFrame where pandas is installed, else a list of dict rows."""


def run(mini_batch):
    rows = mini_batch.to_dict("records") if hasattr(mini_batch, "to_dict") else mini_batch
    return [f"store {r['store']} week {r['week']} in a batch of {len(rows)}" for r in rows]
