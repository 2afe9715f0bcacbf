"""One request core for /predict, the inbox job, batches and the CLI: parse, inputs, run, respond."""
