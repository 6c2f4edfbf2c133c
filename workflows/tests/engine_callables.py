"""Python callables that engine tests name in their DAGs."""


def produce_numbers():
    return [1, 2, 3]


def scale_numbers(produce, factor):
    return [n * factor for n in produce]


def noop():
    return None


def nap_once(marker: str, effects: str) -> str:
    """Sleeps through its first call (leaving `marker` behind); each call that returns
    appends a line to `effects`, its side effect."""
    import time
    from pathlib import Path

    if not Path(marker).exists():
        Path(marker).touch()
        time.sleep(60)
    with open(effects, "a") as log:
        log.write("napped\n")
    return "rested"


def unstorable():
    """Returns text PostgreSQL cannot store: a NUL, a lone surrogate."""
    return {"k\x00": ["a\x00b", "c\ud800"]}


def append_line(ledger: str) -> int:
    """One line added to the file `ledger` each time it runs: the count of runs."""
    with open(ledger, "a", encoding="utf-8") as out:
        out.write("line\n")
    return 1


def talk_then_wait() -> None:
    """Prints, then waits until stopped: its output must show while it runs."""
    import sys
    import time

    print("starting", flush=True)
    print("warming up", file=sys.stderr, flush=True)
    time.sleep(60)
