"""A flow made of tasks, as Prefect users write them: run it directly, or deploy it to a pool.

    python docs/examples/tasks_flow.py            # runs here, prints the total
    pushpool deployment run tasks-demo/local --watch   # after deploying (see docs/flows.md)
"""

from __future__ import annotations

from pushpool import INPUTS, ThreadPoolTaskRunner, flow, get_run_logger, task

attempts: dict[int, int] = {}


@task(retries=3, retry_delay_seconds=[0.1, 0.5, 1])
def fetch(page: int) -> list[int]:
    """A flaky source: each odd page fails once, and is retried."""
    attempts[page] = attempts.get(page, 0) + 1
    if page % 2 and attempts[page] == 1:
        raise ConnectionError(f"page {page}: connection reset")
    return list(range(page * 10, page * 10 + 10))


@task(cache_policy=INPUTS, result_storage=".pushpool-results")
def weight(name: str) -> int:
    """Expensive to compute: a second run with the same input reads the cached result."""
    return len(name) * 3


@task(log_prints=True)
def total(rows: list[list[int]], factor: int) -> int:
    value = sum(sum(r) for r in rows) * factor
    print(f"total of {len(rows)} pages: {value}")
    return value


@flow(name="tasks-demo", task_runner=ThreadPoolTaskRunner(max_workers=4), persist_result=True)
def tasks_demo(pages: int = 5, name: str = "pushpool") -> int:
    logger = get_run_logger()
    logger.info("fetching %d pages", pages)
    rows = fetch.map(range(pages))
    factor = weight(name)
    return total([r.result() for r in rows], factor)


if __name__ == "__main__":
    print(tasks_demo())
