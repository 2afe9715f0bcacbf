"""A burst of drops boots ComfyUI a handful of times, not once per drop."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.inbox_pipeline import InboxPipeline


@pytest.mark.slow
def test_burst_of_30_drops_with_two_executions_boots_comfyui_twice_and_runs_each_item_once(pipeline):
    line: InboxPipeline = pipeline(max_executions=2)

    names = [line.drop(index) for index in range(30)]
    results = line.wait_results(names, timeout=150)
    executions = line.wait_idle(timeout=60)

    assert len(executions) <= 2, [e.name for e in executions]
    assert line.task_log.boots() <= 2
    assert all(e.exit_codes == {0: 0} for e in executions), [e.exit_codes for e in executions]
    for name, result in results.items():
        assert result["status"] == "success", result
        assert result["source"].startswith(f"gs://{line.inbox.name}/{name}#")
        assert len(line.outputs(name)) == 1, line.outputs(name)  # a second run would have added a file
    ran_by = Counter(result["execution"]["name"] for result in results.values())
    started = {e.name.rsplit("/", 1)[-1] for e in executions}
    assert set(ran_by) <= started
    drained = [result for result in results.values() if result["execution"].get("drained")]
    assert len(drained) == 30 - len(executions)  # each execution's own item, and the rest drained
    written = Counter(
        entry.split("result.json written at ")[1]
        for execution in started
        for entry in line.task_log.of(execution)
        if "result.json written at " in entry
    )
    assert len(written) == 30 and set(written.values()) == {1}
    for name in names:  # started by the trigger for its execution's own item, or done by a draining task
        claim = line.claim(name)
        assert claim is not None and claim["state"] in ("started", "done"), claim
    assert all(delivery.ok for delivery in line.notifier.deliveries)
